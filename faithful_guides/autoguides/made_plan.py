r"""The neutral plan of a DAG-masked MADE guide: which features feed which network, the
masks, and the order of the passes. Both backends build their networks from it.

The guide factorizes over the inverse graph :math:`H` of the model:

.. math:: q(z \mid x) = \prod_{v} q(z_v \mid \mathrm{Pa}_H(z_v)),\qquad
          q(z_v \mid \cdot) = \mathcal{N}\big(\mu_v(\mathrm{Pa}_H), C_v\,\mathrm{diag}\,
          \sigma_v(\mathrm{Pa}_H)\,(C_v\,\mathrm{diag}\,\sigma_v)^\top\big)

in unconstrained space, where :math:`C_v` is a learned unit lower-triangular matrix that
couples the elements of a vector site (full dependence inside a site) and
:math:`\mu_v, \sigma_v` come from one MADE whose masks let the outputs of :math:`v` see
exactly the features of :math:`\mathrm{Pa}_H(v)`.

Plates. Sites sit either outside every plate (the *global* group) or in one plate (the
*local* group, one row per plate element; absent when the plate holds no latent). The
local network is shared by all rows: its inputs are the row's own features and the
global features, broadcast, so its cost grows linearly with the plate. A global latent
whose inverse parents are observed sites in the plate sees them through a
permutation-invariant *summary*: the rows' mean next to a learned per-row embedding
averaged over the rows, :math:`[\bar x;\ \overline{\phi(x)}]` (under subsampling the
minibatch averages are unbiased estimates of the full ones). The raw mean is there for
the direct connections: a global latent whose posterior mean is linear in a sufficient
statistic, as in a Gaussian hierarchy, reads it without training the embedding.
The plate-aware inversion puts global latents before local ones, so global latents
never condition on local latents.

Example:
    >>> from faithful_guides import ModelGraph
    >>> g = ModelGraph.from_edges([("z", "y"), ("y", "x")], observed={"x"})
    >>> plan = build_made_plan(g, sizes={"z": 1, "y": 1, "x": 1}, hidden=(8,))
    >>> plan.global_.generations
    (('y',), ('z',))
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np

from faithful_guides.graph.masks import made_masks
from faithful_guides.graph.model_graph import ModelGraph, PlateInfo

STRUCTURES = ("nami", "heuristic", "full")


@dataclass(frozen=True)
class Block:
    """A contiguous run of features: one site's flattened value (per row for local
    sites), or one summary. ``kind`` is ``"observed"``, ``"latent"`` or ``"summary"``."""

    name: str
    kind: str
    size: int
    offset: int

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.size)


@dataclass(frozen=True)
class Summary:
    """Means over the plate rows of the observed sites ``sites`` (``in_size`` features per
    row) and of a learned ``dim``-wide embedding of them: ``in_size + dim`` features."""

    name: str
    sites: tuple[str, ...]
    in_size: int
    dim: int

    @property
    def size(self) -> int:
        return self.in_size + self.dim


@dataclass(frozen=True)
class GroupPlan:
    """One MADE: its input blocks, its latent outputs, masks and sampling passes.

    ``masks[-1]`` has ``2 * out_size`` rows: the location outputs, then the scale outputs
    (both see the same features). ``skip`` (shaped like the product of the masks,
    ``(2 * out_size, in_size)``) masks the direct input-to-output connections of the MADE
    (Germain et al. 2015): output ``j`` sees input ``i`` directly iff it may see it at all,
    so a conditional that is linear in its parents is exactly a linear layer.
    ``generations`` are the topological generations of ``H`` restricted to this group:
    one network pass samples a whole generation.
    """

    plate: PlateInfo | None
    inputs: tuple[Block, ...]
    outputs: tuple[Block, ...]
    masks: tuple[np.ndarray, ...]
    skip: np.ndarray
    generations: tuple[tuple[str, ...], ...]

    @property
    def in_size(self) -> int:
        return sum(b.size for b in self.inputs)

    @property
    def out_size(self) -> int:
        return sum(b.size for b in self.outputs)

    def block(self, name: str) -> Block:
        return next(b for b in self.inputs if b.name == name)

    def output(self, name: str) -> Block:
        return next(b for b in self.outputs if b.name == name)

    @cached_property
    def schedule(self) -> PassSchedule:
        """The generation-by-generation evaluation order of this MADE (see
        :class:`PassSchedule`)."""
        return _schedule(self)


@dataclass(frozen=True)
class PassSchedule:
    r"""How to run a group's MADE one generation at a time without recomputing what is known.

    The first layer and the skip connection are linear in the inputs, so the guide keeps
    :math:`z = [W_1 x + b_1;\ S x]` and, once a generation is sampled, adds only its
    latents' contribution :math:`[W_1; S]_{:, \mathrm{cols}_g}\, u_g` (the latents of later
    generations are zero until then). A generation's pass needs only its own output rows.
    Both are contiguous slices once the backend permutes the weights once per call:

    * ``columns`` orders the input features: the ``known`` blocks (inputs that are not
      latents of this group: observed sites, summaries, global sites of a local group),
      then the latents of each generation in generation order; ``column_splits`` gives the
      sizes of those runs (the known run first, then one per generation).
    * ``rows`` orders the ``2 * out_size`` output rows (and the skip rows): per generation
      its location rows, then its scale rows; ``row_splits`` is ``2 * k_g`` per generation.
    * ``sites`` gives, per generation, ``(name, offset, size)`` of each site inside the
      generation's ``k_g`` features (generation order, as ``columns`` and ``rows``).
    * ``changed[l][g]``: the units of hidden layer ``l`` (all but the last hidden layer)
      whose value depends on the latents of generation ``g``. Only they change when that
      generation is sampled, so the pre-activations of layer ``l + 1`` can be updated by
      ``W_{l+1}[:, changed] (h_new - h_old)[changed]`` rather than recomputed (in a chain,
      a generation typically changes a couple of units out of hundreds). The units are
      counted in the order ``unit_order[l]`` (a permutation of the layer, which changes
      nothing in the function the network computes), chosen so that each generation's
      units are contiguous where possible: then ``changed[l][g]`` is a ``slice``, else
      an array of positions (None: the generation changes no unit of the layer). A
      backend may ignore ``changed`` and recompute those layers.
    """

    known: tuple[Block, ...]
    columns: np.ndarray
    column_splits: tuple[int, ...]
    rows: np.ndarray
    row_splits: tuple[int, ...]
    sites: tuple[tuple[tuple[str, int, int], ...], ...]
    changed: tuple[tuple[slice | np.ndarray | None, ...], ...]
    unit_order: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class MadePlan:
    """Everything a backend needs to build and run an AutoFaithfulMADE guide."""

    graph: ModelGraph
    inverse: nx.DiGraph
    global_: GroupPlan
    local: GroupPlan | None
    summaries: tuple[Summary, ...]

    @property
    def latents(self) -> tuple[str, ...]:
        """Latent sites in sampling order (global group first)."""
        groups = [self.global_] + ([self.local] if self.local else [])
        return tuple(n for g in groups for gen in g.generations for n in gen)


def build_made_plan(
    graph: ModelGraph,
    *,
    sizes: Mapping[str, int],
    hidden: Sequence[int],
    structure: str = "nami",
    summary_dim: int = 16,
) -> MadePlan:
    """Plan a DAG-masked MADE guide for ``graph``.

    Args:
        graph: the traced model.
        sizes: features per row of each site: unconstrained size for latents, flattened
            value size for observed sites (plate dimensions excluded).
        hidden: hidden layer widths of each MADE.
        structure: ``"nami"``, ``"heuristic"`` or ``"full"`` (see :func:`~faithful_guides.invert`).
        summary_dim: embedding width of each plate summary (which also carries the
            rows' mean).

    Raises:
        ValueError: unknown structure, sites in more than one plate, or a structure in
            which a global latent would condition on a local latent.
    """
    if structure not in STRUCTURES:
        raise ValueError(
            f"Unknown structure {structure!r}: expected one of {', '.join(STRUCTURES)}."
        )
    plate = _the_plate(graph)
    inverse = graph.invert(method=structure)
    local = {n for n, s in graph.sites.items() if s.plates}
    for v in graph.latent:
        bad = [u for u in inverse.predecessors(v) if u in local and u not in graph.observed]
        if v not in local and bad:
            raise ValueError(
                f"With structure={structure!r}, global latent {v!r} would condition on the "
                f"local latents {sorted(bad)} of plate {plate.name!r}; amortized plate guides "
                "sample global latents first. Use structure='nami'."
            )
    summaries = _summaries(graph, inverse, local, sizes, summary_dim)
    glob = _group(graph, inverse, None, sizes, hidden, summaries)
    has_local_latent = any(n in local for n in graph.latent)
    loc = _group(graph, inverse, plate, sizes, hidden, ()) if has_local_latent else None
    return MadePlan(graph, inverse, glob, loc, summaries)


def default_hidden(
    graph: ModelGraph, *, sizes: Mapping[str, int], structure: str = "nami", summary_dim: int = 16
) -> tuple[int, int]:
    """The guides' default ``hidden_dims``: two layers of ``max(32, 2 F)``, where ``F`` is
    the number of distinct input features that the outputs of one MADE see together (the
    widest group), so that every hidden layer can carry each output's parents."""
    with warnings.catch_warnings():  # hidden=(1,) is a probe: its masks are not used
        warnings.simplefilter("ignore")
        plan = build_made_plan(
            graph, sizes=sizes, hidden=(1,), structure=structure, summary_dim=summary_dim
        )
    seen = max((int(g.skip.any(0).sum()) for g in (plan.global_, plan.local) if g), default=0)
    return (max(32, 2 * seen),) * 2


def _the_plate(graph: ModelGraph) -> PlateInfo | None:
    """The one plate of the model's local sites (None when no site is in a plate)."""
    plate_sets = {s.plates for s in graph.sites.values() if s.plates}
    if not plate_sets:
        return None
    if len(plate_sets) > 1 or len(next(iter(plate_sets))) > 1:
        shown = sorted(tuple(p.name for p in ps) for ps in plate_sets)
        raise ValueError(
            "AutoFaithfulMADE supports sites outside plates and sites in one plate; this "
            f"model has sites in the plate combinations {shown}. Put the sites of a row in "
            "one plate, or hide the others with poutine.block and guide them separately "
            "(AutoGuideList)."
        )
    return next(iter(plate_sets))[0]


def _summaries(
    graph: ModelGraph,
    inverse: nx.DiGraph,
    local: set[str],
    sizes: Mapping[str, int],
    dim: int,
) -> tuple[Summary, ...]:
    """One summary per distinct set of in-plate observed parents of a global latent."""
    found: dict[tuple[str, ...], Summary] = {}
    for v in graph.latent:
        if v in local:
            continue
        sites = tuple(sorted((u for u in inverse.predecessors(v) if u in local), key=_order(graph)))
        if sites and sites not in found:
            name = f"summary[{','.join(sites)}]"
            found[sites] = Summary(name, sites, sum(sizes[u] for u in sites), dim)
    return tuple(found.values())


def _order(graph: ModelGraph):
    return lambda n: graph.sites[n].order


def _group(
    graph: ModelGraph,
    inverse: nx.DiGraph,
    plate: PlateInfo | None,
    sizes: Mapping[str, int],
    hidden: Sequence[int],
    summaries: Sequence[Summary],
) -> GroupPlan:
    """Inputs: observed then latent sites of the group, then (for the local group) the
    global sites, broadcast; the global group also reads the summaries."""
    key = _order(graph)
    in_group = [n for n in graph.sites if bool(graph.sites[n].plates) == (plate is not None)]
    latents = [n for n in in_group if n not in graph.observed]
    names = [n for n in in_group if n in graph.observed] + latents
    if plate is not None:
        names += [n for n in graph.sites if not graph.sites[n].plates]
    inputs, offset = [], 0
    for n in names:
        kind = "observed" if n in graph.observed else "latent"
        inputs.append(Block(n, kind, sizes[n], offset))
        offset += sizes[n]
    for s in summaries:
        inputs.append(Block(s.name, "summary", s.size, offset))
        offset += s.size
    by_name = {b.name: b for b in inputs}
    outputs, allowed, out_off = [], [], 0
    for v in latents:
        outputs.append(Block(v, "latent", sizes[v], out_off))
        out_off += sizes[v]
        seen = set()
        for u in inverse.predecessors(v):
            if u in by_name:
                seen.update(range(by_name[u].offset, by_name[u].offset + by_name[u].size))
        for s in summaries:
            if set(s.sites) <= set(inverse.predecessors(v)):
                b = by_name[s.name]
                seen.update(range(b.offset, b.offset + b.size))
        allowed.extend([seen] * sizes[v])
    masks = made_masks(offset, allowed + allowed, hidden) if latents else []
    skip = np.zeros((2 * out_off, offset), dtype=bool)
    for j, seen in enumerate(allowed + allowed):
        skip[j, sorted(seen)] = True
    sub = inverse.subgraph(latents)
    generations = tuple(tuple(sorted(gen, key=key)) for gen in nx.topological_generations(sub))
    return GroupPlan(plate, tuple(inputs), tuple(outputs), tuple(masks), skip, generations)


def _schedule(group: GroupPlan) -> PassSchedule:
    """The :class:`PassSchedule` of ``group``."""
    outs = {b.name for b in group.outputs}
    known = tuple(b for b in group.inputs if b.name not in outs)
    columns = [i for b in known for i in range(b.offset, b.offset + b.size)]
    column_splits, rows, row_splits, sites = [len(columns)], [], [], []
    for gen in group.generations:
        blocks = [group.output(n) for n in gen]
        columns += [i for b in blocks for i in range(*_span(group.block(b.name)))]
        loc_rows = [j for b in blocks for j in range(*_span(b))]
        rows += loc_rows + [j + group.out_size for j in loc_rows]
        k = len(loc_rows)
        column_splits.append(k)
        row_splits.append(2 * k)
        offsets = np.cumsum([0] + [b.size for b in blocks])[:-1]
        sites.append(tuple((b.name, int(o), b.size) for b, o in zip(blocks, offsets, strict=True)))
    columns = np.asarray(columns, dtype=np.int64)
    gen_columns = np.split(columns, np.cumsum(column_splits)[:-1])[1:]
    changed, orders = [], []
    reach = group.masks[0].astype(np.int64) if group.masks else None
    for m in group.masks[1:-1]:  # the hidden layers but the last
        units, order = _changed_units([reach[:, c].any(1) for c in gen_columns])
        changed.append(units)
        orders.append(order)
        reach = np.minimum(m.astype(np.int64) @ reach, 1)
    return PassSchedule(
        known,
        columns,
        tuple(column_splits),
        np.asarray(rows, dtype=np.int64),
        tuple(row_splits),
        tuple(sites),
        tuple(changed),
        tuple(orders),
    )


def _changed_units(
    by_gen: Sequence[np.ndarray],
) -> tuple[tuple[slice | np.ndarray | None, ...], np.ndarray]:
    """Order a layer's units by the generations that change them (``by_gen[g]``: a bool
    mask over the units) and give each generation's units in that order, as a slice
    where they are contiguous (None where there are none)."""
    width = len(by_gen[0]) if by_gen else 0
    gens = [tuple(g for g, m in enumerate(by_gen) if m[u]) or (len(by_gen),) for u in range(width)]
    order = np.array(sorted(range(width), key=lambda u: gens[u]), dtype=np.int64)
    position = np.argsort(order)
    units = []
    for m in by_gen:
        p = np.sort(position[np.flatnonzero(m)])
        if not len(p):
            units.append(None)
        elif p[-1] - p[0] + 1 == len(p):
            units.append(slice(int(p[0]), int(p[-1]) + 1))
        else:
            units.append(p)
    return tuple(units), order


def _span(b: Block) -> tuple[int, int]:
    return b.offset, b.offset + b.size
