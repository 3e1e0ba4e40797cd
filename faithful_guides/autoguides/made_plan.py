r"""The MADE part of an AutoFaithfulMADE guide: per group of the
:class:`~faithful_guides.autoguides.structure.GuideStructure`, the masks of one DAG-masked
MADE and the order of its passes. Both backends build their networks from it.

.. math:: q(z_v \mid \mathrm{Pa}_H) = \mathcal{N}\big(m_v + \mu_v(\mathrm{Pa}_H),\
          C_v\,\mathrm{diag}\,\sigma_v (C_v\,\mathrm{diag}\,\sigma_v)^\top\big),\qquad
          \log\sigma_v = s_v + b\tanh(\rho_v(\mathrm{Pa}_H)/b)

in unconstrained space: :math:`m_v, s_v` are the site's free location and log-scale (as in
``AutoNormal``), :math:`\mu_v, \rho_v` the outputs of one MADE whose masks let the
outputs of :math:`v` see exactly the features of :math:`\mathrm{Pa}_H(v)` (with direct,
masked input-to-output connections, Germain et al. 2015), and :math:`C_v` a learned unit
lower-triangular coupling inside short vector sites. The output layer and the direct
connections start at zero, so the guide starts at ``N(init_loc, init_scale)`` exactly.

Example:
    >>> from faithful_guides import ModelGraph
    >>> from faithful_guides.autoguides.layout import SiteLayout
    >>> from faithful_guides.autoguides.structure import build_structure
    >>> g = ModelGraph.from_edges([("z", "y"), ("y", "x")], observed={"x"})
    >>> s = build_structure(g, {n: SiteLayout(n, (), 0, (), ()) for n in g.sites})
    >>> plan = build_made_plan(s, hidden=(8,))
    >>> plan.groups[0].group.generations
    (('y',), ('z',))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from faithful_guides.autoguides.defaults import default_hidden
from faithful_guides.autoguides.structure import Block, Group, GuideStructure
from faithful_guides.graph.masks import made_masks

__all__ = [
    "MadeGroup",
    "MadePlan",
    "PassSchedule",
    "build_made_plan",
    "row_multipliers",
    "widest_input",
]


def row_multipliers(mask: np.ndarray, *, kind: str = "hidden") -> np.ndarray:
    r"""The float mask of a masked layer: ``mask`` times each row's multiplier.

    * ``"hidden"``: :math:`1/\sqrt{n_j}` (``n_j``: the inputs row ``j`` may see, at least 1):
      with raw weights of unit scale the layer starts fan-in scaled;
    * ``"output"``: :math:`1/n_j`: one optimizer step of size ``lr`` on the raw weights moves
      an output by about ``lr`` times a typical hidden unit;
    * ``"direct"``: :math:`\min(1, 2/\sqrt{n_j})`: up to four inputs, a direct weight is the
      coefficient of a standardized parent, learned at the optimizer's pace (as the
      entries of ``AutoMultivariateNormal``'s Cholesky factor are); a wider row (a long
      observed vector) is fan-in scaled, so that one step cannot move its output by
      ``lr`` times every input at once.
    """
    mask = np.asarray(mask, dtype=bool)
    n = np.maximum(mask.sum(axis=1, keepdims=True), 1).astype(np.float64)
    direct = np.maximum(np.sqrt(n) / 2, 1.0)
    scale = {"hidden": np.sqrt(n), "output": n, "direct": direct}[kind]
    return (mask / scale).astype(np.float32)


@dataclass(frozen=True)
class MadeGroup:
    """One group's MADE. ``masks[-1]`` has ``2 * out_size`` rows (the location outputs,
    then the scale outputs, both seeing the same features); ``skip``, shaped
    ``(2 * out_size, in_size)``, masks the direct connections (output ``j`` sees input
    ``i`` directly iff it may see it at all)."""

    group: Group
    masks: tuple[np.ndarray, ...]
    skip: np.ndarray

    @property
    def inputs(self) -> tuple[Block, ...]:
        return self.group.inputs

    @property
    def outputs(self) -> tuple[Block, ...]:
        return self.group.outputs

    @property
    def generations(self) -> tuple[tuple[str, ...], ...]:
        return self.group.generations

    @property
    def in_size(self) -> int:
        return self.group.in_size

    @property
    def out_size(self) -> int:
        return self.group.out_size

    def block(self, name: str) -> Block:
        return self.group.block(name)

    def output(self, name: str) -> Block:
        return self.group.output(name)

    @property
    def has_net(self) -> bool:
        """Whether any output sees any input (else the group is its free parameters)."""
        return bool(self.skip.any())

    @cached_property
    def schedule(self) -> PassSchedule:
        """The generation-by-generation evaluation order (see :class:`PassSchedule`)."""
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
      generation's ``k_g`` features (generation order, as ``rows``); ``feeds`` the sites
      of the generation that later generations read (their columns, in this order, are
      the generation's run of ``columns``; a long vector site nobody reads is not there).
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
    feeds: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class MadePlan:
    """Everything a backend needs to build and run an AutoFaithfulMADE guide."""

    structure: GuideStructure
    groups: tuple[MadeGroup, ...]

    @property
    def latents(self) -> tuple[str, ...]:
        return self.structure.latents

    def effective_params(self) -> int:
        """Weights the masks let through, plus biases (what a MADE of this plan learns)."""
        total = 0
        for g in self.groups:
            if g.has_net:
                total += sum(int(m.sum()) + m.shape[0] for m in g.masks[:-1])
                total += int(g.masks[-1].sum()) + int(g.skip.sum())
        return total


def widest_input(structure: GuideStructure) -> int:
    """The most input features any one output of a group sees."""
    return max((len(a) for g in structure.groups for a in g.allowed), default=0)


def build_made_plan(structure: GuideStructure, *, hidden: Sequence[int] | None = None) -> MadePlan:
    """One :class:`MadeGroup` per group of ``structure``, hidden widths ``hidden``
    (default :func:`~faithful_guides.autoguides.defaults.default_hidden`)."""
    hidden = tuple(hidden) if hidden else default_hidden(widest_input(structure))
    groups = []
    summaries = {s.name: s for s in structure.summaries}
    for g in structure.groups:
        allowed = list(g.allowed) + list(g.allowed)
        masks = made_masks(g.in_size, allowed, hidden)
        own = {i for b in g.inputs if b.name in set(g.latents) for i in range(*_span(b))}
        embedded = set()  # a summary's learned embedding reaches outputs through hidden layers
        for b in g.inputs:
            if b.kind == "summary":
                s = summaries[b.name]
                embedded.update(range(b.offset + s.in_size, b.offset + s.in_size + s.dim))
        skip = np.zeros((2 * g.out_size, g.in_size), dtype=bool)
        for j, seen in enumerate(allowed):
            # the log-scales read the group's own latents only through the hidden layers:
            # a direct link would make every scale log-linear in its parents' draws, which
            # no Gaussian posterior needs and which makes the gradients noisy
            cols = (seen - own if j >= g.out_size else seen) - embedded
            skip[j, sorted(cols)] = True
        groups.append(MadeGroup(g, tuple(masks), skip))
    return MadePlan(structure, tuple(groups))


def _schedule(group: MadeGroup) -> PassSchedule:
    """The :class:`PassSchedule` of ``group``."""
    outs = {b.name for b in group.outputs}
    known = tuple(b for b in group.inputs if b.name not in outs)
    columns = [i for b in known for i in range(b.offset, b.offset + b.size)]
    column_splits, rows, row_splits, sites, feeds = [len(columns)], [], [], [], []
    for gen in group.generations:
        blocks = [group.output(n) for n in gen]
        fed = [group.block(n) for n in gen if group.group.feeds(n)]
        columns += [i for b in fed for i in range(*_span(b))]
        feeds.append(tuple(b.name for b in fed))
        loc_rows = [j for b in blocks for j in range(*_span(b))]
        rows += loc_rows + [j + group.out_size for j in loc_rows]
        k = len(loc_rows)
        column_splits.append(sum(b.size for b in fed))
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
        tuple(feeds),
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
