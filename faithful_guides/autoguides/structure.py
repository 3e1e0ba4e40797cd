r"""The family-neutral structure of a faithful guide: which latents are sampled together,
in what order, and which input features each latent's conditional may read.

Every guide family factorizes over the faithful inverse :math:`H` of the model,

.. math:: q(z \mid x) = \prod_v q\big(z_v \mid \mathrm{Pa}_H(z_v)\big),

and is evaluated on the model's plate grid (:mod:`faithful_guides.autoguides.layout`).
Latents that sit in the same plates form a *group*: one row-wise network per group, shared
by all grid cells, so cost grows linearly with the rows. Groups run coarse to fine (globals,
then per-group, then per-row latents): the plate-aware inversion never lets a coarser latent
condition on a finer one. A latent reads, per inverse parent :math:`u`:

* the features of :math:`u` itself when :math:`u` sits in a subset of the latent's plates
  (a global broadcast to every row, or the same row of the same plate);
* a *summary* when :math:`u` is observed in plates the latent is not in: the mean over
  those plate axes of ``[x, \phi(x)]`` (the raw rows next to a learned embedding, with
  the row-aligned covariates joined to ``x``) and the log row count relative to set-up;
* nothing when :math:`u` is larger than :data:`~faithful_guides.autoguides.defaults.MAX_INPUT`
  features (a long vector site); the latent's own free parameters then carry it.

Plate rows whose observations cannot be aligned with the latent's row (side-by-side
plates, such as subjects and the observations indexed by subject) and globals whose
summary would cross a subsampled plate are not amortized along those axes: they get free
per-row (resp. per-site) location and scale parameters, as ``AutoNormal`` has, fitted by
SVI on the whole data set. The summaries of a subsampled plate would see only the
minibatch, and a guide that conditions on a minibatch is as wide as that minibatch's
posterior.

Model arguments that are arrays aligned with a plate (their leading axis has the plate's
size), or small global arrays, are *covariates*: guide inputs of every latent in their
plates and joined to the rows of their plate's summaries, so that an amortized guide reused
on new ``(X, y)`` is right.

Example:
    >>> from faithful_guides import ModelGraph
    >>> from faithful_guides.autoguides.layout import SiteLayout
    >>> g = ModelGraph.from_edges([("z", "y"), ("y", "x")], observed={"x"})
    >>> lays = {n: SiteLayout(n, (), 0, (), ()) for n in g.sites}
    >>> s = build_structure(g, lays)
    >>> [grp.generations for grp in s.groups]
    [(('y',), ('z',))]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import networkx as nx

from faithful_guides.autoguides.defaults import MAX_INPUT
from faithful_guides.autoguides.errors import structure_cycle_error, unknown_structure_error
from faithful_guides.autoguides.layout import SiteLayout
from faithful_guides.graph.model_graph import ModelGraph, PlateInfo

__all__ = ["STRUCTURES", "Block", "Covariate", "Group", "GuideStructure", "Summary"]

STRUCTURES = ("nami", "heuristic", "full")


@dataclass(frozen=True)
class Covariate:
    """A model argument used as a guide input: ``key`` is ``("arg", i)`` or
    ``("kwarg", name)``; ``in_plate`` its grid membership (its leading axis is that
    plate's rows); ``features`` per grid cell."""

    name: str
    key: tuple[str, int | str]
    in_plate: tuple[bool, ...]
    features: int


@dataclass(frozen=True)
class Summary:
    r"""The mean over the grid axes ``reduce`` of the rows of the observed site ``site``
    (with the covariates ``covariates`` joined): ``[\bar r;\ \overline{\phi(r)};\
    \log(n / n_0)]``, ``in_size + dim + 1`` features (``n_0``: the rows at set-up)."""

    name: str
    site: str
    covariates: tuple[str, ...]
    reduce: tuple[int, ...]
    in_size: int
    dim: int
    setup_count: int

    @property
    def size(self) -> int:
        return self.in_size + self.dim + 1


@dataclass(frozen=True)
class Block:
    """A contiguous run of a group's input features. ``kind``: ``"observed"``,
    ``"covariate"``, ``"latent"`` or ``"summary"``; ``reduce``: grid axes a latent input
    of a finer group is averaged over (empty otherwise)."""

    name: str
    kind: str
    size: int
    offset: int
    reduce: tuple[int, ...] = ()

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.size)


@dataclass(frozen=True)
class Group:
    """The latents of one plate combination and what their conditionals read.

    ``inputs`` are the known blocks (observations, covariates, summaries, latents of
    earlier groups) followed by the group's own latents; ``outputs`` the latents, each
    ``allowed[j]`` the input features output feature ``j`` may see; ``generations`` the
    topological generations of :math:`H` inside the group (one pass each); ``free_rows``
    the latents whose free parameters are per grid cell rather than shared by the rows.
    """

    in_plate: tuple[bool, ...]
    inputs: tuple[Block, ...]
    outputs: tuple[Block, ...]
    allowed: tuple[frozenset[int], ...]
    generations: tuple[tuple[str, ...], ...]
    free_rows: frozenset[str] = field(default_factory=frozenset)

    @property
    def in_size(self) -> int:
        return sum(b.size for b in self.inputs)

    @property
    def out_size(self) -> int:
        return sum(b.size for b in self.outputs)

    @property
    def latents(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.outputs)

    def feeds(self, name: str) -> bool:
        """Whether the group's latent ``name`` is an input of the group (another latent of
        the group reads it)."""
        return any(b.name == name for b in self.inputs)

    def block(self, name: str) -> Block:
        return next(b for b in self.inputs if b.name == name)

    def output(self, name: str) -> Block:
        return next(b for b in self.outputs if b.name == name)


@dataclass(frozen=True)
class GuideStructure:
    """Everything family-neutral a backend needs to build a guide (see module docs)."""

    graph: ModelGraph
    inverse: nx.DiGraph
    plates: tuple[PlateInfo, ...]
    groups: tuple[Group, ...]
    summaries: tuple[Summary, ...]
    covariates: tuple[Covariate, ...]

    @property
    def latents(self) -> tuple[str, ...]:
        """Latent sites in sampling order."""
        return tuple(n for g in self.groups for gen in g.generations for n in gen)

    def roots(self) -> frozenset[str]:
        """Latents with no latent inverse parents: given the observations their guide
        conditional is their marginal, so their quantiles are exact."""
        latent = set(self.latents)
        return frozenset(
            v for v in latent if not any(u in latent for u in self.inverse.predecessors(v))
        )


def model_plates(graph: ModelGraph) -> tuple[PlateInfo, ...]:
    """The model's plates, outermost (most negative dim) first, one per name."""
    found: dict[str, PlateInfo] = {}
    for s in graph.sites.values():
        for p in s.plates:
            found.setdefault(p.name, p)
    return tuple(sorted(found.values(), key=lambda p: (p.dim if p.dim is not None else 0, p.name)))


def build_structure(
    graph: ModelGraph,
    layouts: Mapping[str, SiteLayout],
    *,
    structure: str = "nami",
    summary_dim: int = 16,
    covariates: tuple[Covariate, ...] = (),
    amortize_subsampled: bool = False,
    guide_name: str = "AutoFaithfulMADE",
) -> GuideStructure:
    """Group, order and wire the latents of ``graph`` (see the module docstring).

    Args:
        graph: the traced model.
        layouts: every site's :class:`SiteLayout` (latents unconstrained).
        structure: ``"nami"``, ``"heuristic"`` or ``"full"`` (:func:`~faithful_guides.invert`).
        summary_dim: width of each summary's learned embedding.
        covariates: the model arguments used as inputs.
        amortize_subsampled: whether globals read summaries of subsampled plates too. Off
            for fitting one data set by minibatches (a minibatch summary would make the
            global's posterior the minibatch's); on for amortized training across data
            sets (``ForwardKL``, banks of simulations), where each minibatch is data.
        guide_name: named in errors.
    """
    if structure not in STRUCTURES:
        raise unknown_structure_error(structure, STRUCTURES)
    plates = model_plates(graph)
    inverse = graph.invert(method=structure)
    order = {n: s.order for n, s in graph.sites.items()}
    member = {n: layouts[n].in_plate for n in graph.sites}
    subsampled = tuple(p.subsampled and not amortize_subsampled for p in plates)
    by_group: dict[tuple[bool, ...], list[str]] = {}
    for v in graph.latent:
        by_group.setdefault(member[v], []).append(v)
    group_order = _group_order(by_group, inverse, member, structure, guide_name)
    summaries: dict[tuple[str, tuple[int, ...]], Summary] = {}
    groups = []
    for key in group_order:
        groups.append(
            _group(
                key, by_group[key], graph, inverse, layouts, member, subsampled, covariates,
                summaries, summary_dim, order,
            )
        )  # fmt: skip
    return GuideStructure(
        graph, inverse, plates, tuple(groups), tuple(summaries.values()), covariates
    )


def _subset(a: tuple[bool, ...], b: tuple[bool, ...]) -> bool:
    return all(y or not x for x, y in zip(a, b, strict=True))


def _group_order(
    by_group: Mapping[tuple[bool, ...], list[str]],
    inverse: nx.DiGraph,
    member: Mapping[str, tuple[bool, ...]],
    structure: str,
    guide_name: str,
) -> list[tuple[bool, ...]]:
    """Groups in an order where every latent's latent parents come first (coarse first)."""
    dag = nx.DiGraph()
    dag.add_nodes_from(by_group)
    for key, latents in by_group.items():
        for v in latents:
            for u in inverse.predecessors(v):
                if u in member and member[u] != key and member[u] in by_group:
                    if u not in by_group[member[u]]:
                        continue
                    dag.add_edge(member[u], key)
    try:
        return list(nx.lexicographical_topological_sort(dag, key=lambda k: (sum(k), k)))
    except nx.NetworkXUnfeasible:
        raise structure_cycle_error(structure, guide_name) from None


def _group(
    key: tuple[bool, ...],
    latents: list[str],
    graph: ModelGraph,
    inverse: nx.DiGraph,
    layouts: Mapping[str, SiteLayout],
    member: Mapping[str, tuple[bool, ...]],
    subsampled: tuple[bool, ...],
    covariates: tuple[Covariate, ...],
    summaries: dict[tuple[str, tuple[int, ...]], Summary],
    summary_dim: int,
    order: Mapping[str, int],
) -> Group:
    own = set(latents)
    inputs: dict[str, Block] = {}
    offset = 0

    def add(name: str, kind: str, size: int, reduce: tuple[int, ...] = ()) -> Block:
        nonlocal offset
        if name not in inputs:
            inputs[name] = Block(name, kind, size, offset, reduce)
            offset += size
        return inputs[name]

    aligned_covs = [c for c in covariates if _subset(c.in_plate, key) and c.features <= MAX_INPUT]
    cov_blocks = [add(c.name, "covariate", c.features) for c in aligned_covs]
    seen: dict[str, set[int]] = {}
    free_rows = set()
    for v in latents:
        cols: set[int] = set()
        for b in cov_blocks:
            cols.update(range(b.offset, b.offset + b.size))
        for u in sorted(inverse.predecessors(v), key=order.__getitem__):
            if u in own:
                continue
            m = member[u]
            extra = tuple(i for i, (a, b) in enumerate(zip(m, key, strict=True)) if a and not b)
            missing = any(b and not a for a, b in zip(m, key, strict=True))
            if u in graph.observed:
                if missing and extra:
                    free_rows.add(v)  # side-by-side plates: rows cannot be aligned
                if any(subsampled[i] for i in extra):
                    continue  # a minibatch summary: the free parameters carry it
                if not extra:
                    if layouts[u].features > MAX_INPUT or layouts[u].features == 0:
                        continue
                    b = add(u, "observed", layouts[u].features)
                else:
                    s = _summary(u, extra, layouts, covariates, summaries, summary_dim)
                    if s is None:
                        continue
                    b = add(s.name, "summary", s.size)
            else:
                if layouts[u].features > MAX_INPUT:
                    continue
                b = add(u, "latent", layouts[u].features, extra)
            cols.update(range(b.offset, b.offset + b.size))
        seen[v] = cols
    outputs, allowed, out_off = [], [], 0
    read = {u for v in latents for u in inverse.predecessors(v) if u in own}
    for v in latents:  # own latents that another one reads are inputs too
        if v in read and layouts[v].features <= MAX_INPUT:
            add(v, "latent", layouts[v].features)
    for v in latents:
        size = layouts[v].features
        outputs.append(Block(v, "latent", size, out_off))
        out_off += size
        cols = set(seen[v])
        for u in inverse.predecessors(v):
            if u in own and u in inputs:
                cols.update(range(inputs[u].offset, inputs[u].offset + inputs[u].size))
        allowed.extend([frozenset(cols)] * size)
    sub = inverse.subgraph(latents)
    generations = tuple(
        tuple(sorted(gen, key=order.__getitem__)) for gen in nx.topological_generations(sub)
    )
    return Group(
        key, tuple(inputs.values()), tuple(outputs), tuple(allowed), generations,
        frozenset(free_rows),
    )  # fmt: skip


def _summary(
    site: str,
    reduce: tuple[int, ...],
    layouts: Mapping[str, SiteLayout],
    covariates: tuple[Covariate, ...],
    summaries: dict[tuple[str, tuple[int, ...]], Summary],
    dim: int,
) -> Summary | None:
    """The summary of ``site``'s rows over the grid axes ``reduce`` (shared by groups)."""
    if (site, reduce) in summaries:
        return summaries[(site, reduce)]
    lay = layouts[site]
    if lay.features > MAX_INPUT or lay.features == 0:
        return None
    covs = tuple(c for c in covariates if c.in_plate == lay.in_plate and c.features <= MAX_INPUT)
    rows = lay.setup_rows()
    in_plates = [i for i, inside in enumerate(lay.in_plate) if inside]
    count = 1
    for i in reduce:
        count *= rows[in_plates.index(i)]
    in_size = lay.features + sum(c.features for c in covs)
    axes = ",".join(str(i) for i in reduce)
    name = f"summary[{site}|{axes}]"
    s = Summary(name, site, tuple(c.name for c in covs), reduce, in_size, dim, count)
    summaries[(site, reduce)] = s
    return s
