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
permutation-invariant *summary*: a learned per-row embedding averaged over the rows
(under subsampling the minibatch average is an unbiased estimate of the full one).
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    """Mean over the plate rows of an embedding of the observed sites ``sites``."""

    name: str
    sites: tuple[str, ...]
    in_size: int


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
        summary_dim: embedding width of each plate summary.

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
    summaries = _summaries(graph, inverse, local, sizes)
    glob = _group(graph, inverse, None, sizes, hidden, summaries, summary_dim)
    has_local_latent = any(n in local for n in graph.latent)
    loc = _group(graph, inverse, plate, sizes, hidden, (), 0) if has_local_latent else None
    return MadePlan(graph, inverse, glob, loc, summaries)


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
    graph: ModelGraph, inverse: nx.DiGraph, local: set[str], sizes: Mapping[str, int]
) -> tuple[Summary, ...]:
    """One summary per distinct set of in-plate observed parents of a global latent."""
    found: dict[tuple[str, ...], Summary] = {}
    for v in graph.latent:
        if v in local:
            continue
        sites = tuple(sorted((u for u in inverse.predecessors(v) if u in local), key=_order(graph)))
        if sites and sites not in found:
            name = f"summary[{','.join(sites)}]"
            found[sites] = Summary(name, sites, sum(sizes[u] for u in sites))
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
    summary_dim: int,
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
        inputs.append(Block(s.name, "summary", summary_dim, offset))
        offset += summary_dim
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
