r"""The iterative part of an AutoIterative guide (Marino et al. 2018): per group of the
:class:`~faithful_guides.autoguides.structure.GuideStructure`, the input layout and masks of
one update network (and of the optional encoder). Both backends build their networks from it.

Each latent :math:`v` is mean-field Gaussian in unconstrained space with parameters
:math:`\lambda_v = (\mu_v, \log\sigma_v)` per grid cell, refined ``T`` times:

.. math::
    \lambda^{(t+1)}_v = \lambda^{(t)}_v + (1 - g_v) \odot \Delta_v, \qquad
    (\Delta_v, g_v) = \big(f_v(\cdot),\ \mathrm{sigmoid}(\gamma_v(\cdot))\big),

the gated update :math:`\lambda \leftarrow g \lambda + (1 - g) f` of the paper with
:math:`f = \lambda + \Delta` (the network predicts the step, so that a zero-initialized
output layer makes every refinement the identity and the guide starts at
``N(init_loc, init_scale)``). The update of :math:`v` reads, per cell:

* ``inputs="gradient"``: the location (in units of the site's input statistics), the
  log-scale, the preprocessed gradients of a one-draw ELBO estimate :math:`L` and the
  diagonal Newton steps :math:`\sigma^2 \nabla_\mu L`, :math:`\nabla_{\log\sigma} L / 2`
  (:func:`gradient_features`) of :math:`v` and of its neighbours :math:`u` in the faithful
  inverse :math:`H` (parents and children);
* ``inputs="error"``: :math:`[\tilde\mu_u, \log\sigma_u, \tilde u_u - \widetilde{E_p[u \mid
  \mathrm{pa}]}]` of the same latents, and the errors
  :math:`(x - E[x \mid z]) / s_x` of the observed sites among :math:`v`'s inverse parents;
* with ``observed_inputs``: the observed features, covariates and summaries that
  AutoFaithfulMADE's conditional of :math:`v` reads.

A neighbour in a coarser plate group is broadcast to the cells, one in a finer group is
averaged over the axes the group lacks, one in side-by-side plates is left out (its own
gradient already carries it); the gradient of each latent is the per-cell one (divided by
the plate subsampling scale). Latents longer than
:data:`~faithful_guides.autoguides.defaults.MAX_INPUT` features are refined element by
element by one small shared network reading only their own element's features, so cost is
linear in their length.

Example:
    >>> from faithful_guides import ModelGraph
    >>> from faithful_guides.autoguides.layout import SiteLayout
    >>> from faithful_guides.autoguides.structure import build_structure
    >>> g = ModelGraph.from_edges([("z", "y"), ("y", "x")], observed={"x"})
    >>> lays = {n: SiteLayout(n, (), 0, (), ()) for n in g.sites}
    >>> plan = build_iterative_plan(build_structure(g, lays), lays, hidden=(16,))
    >>> [(b.name, b.kind, b.size) for b in plan.groups[0].inputs]
    [('x', 'data', 1), ('z', 'state', 8), ('y', 'state', 8)]
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faithful_guides.autoguides.defaults import MAX_INPUT, default_hidden_for
from faithful_guides.autoguides.layout import SiteLayout
from faithful_guides.autoguides.structure import Block, Group, GuideStructure
from faithful_guides.graph.masks import made_masks

__all__ = [
    "GRADIENT_PREPROCESS",
    "INITS",
    "INPUT_KINDS",
    "STATE_WIDTH",
    "IterativeGroup",
    "IterativePlan",
    "build_iterative_plan",
    "gradient_features",
    "preprocess_gradient",
    "train_iterates",
    "training_iterates",
]

INPUT_KINDS = ("gradient", "error")
INITS = ("prior", "encoder")
STATE_WIDTH = {"gradient": 8, "error": 3}
"""Input features per latent feature (:func:`gradient_features`, or ``[loc, log_scale,
error]``)."""
NEWTON_BOUND = 10.0
"""Soft bound of the Newton-step inputs (:func:`gradient_features`)."""
GRADIENT_PREPROCESS = 10.0
"""``p`` of the gradient preprocessing :math:`\\pi` (Andrychowicz et al. 2016)."""


@dataclass(frozen=True)
class IterativeGroup:
    r"""One group's update network, reading the blocks ``inputs`` (``kind`` ``"data"``: an
    observed site, covariate or summary from the guide's features; ``"state"``: a latent's
    :math:`\lambda` and gradient or error features; ``"error"``: an observed site's error;
    ``reduce``: grid axes averaged over, for a finer site read by a coarser group), with
    ``masks`` ( last layer ``4 * out_size`` rows: the steps
    of the locations, of the log-scales, then the gates of each) and optional encoder
    (``encoder_masks``, last layer ``2 * out_size`` rows, reading the ``data`` prefix of the
    inputs; ``encoder_skip`` its direct connections). ``outputs`` are the latents the
    network refines (``dense``), ``elementwise`` the long ones refined element by element."""

    group: Group
    inputs: tuple[Block, ...]
    outputs: tuple[Block, ...]
    masks: tuple[np.ndarray, ...] | None
    encoder_masks: tuple[np.ndarray, ...] | None
    encoder_skip: np.ndarray | None
    elementwise: tuple[str, ...]

    @property
    def in_size(self) -> int:
        return sum(b.size for b in self.inputs)

    @property
    def data_size(self) -> int:
        """Width of the inputs' ``data`` prefix (what the encoder reads)."""
        return sum(b.size for b in self.inputs if b.kind == "data")

    @property
    def out_size(self) -> int:
        return sum(b.size for b in self.outputs)


@dataclass(frozen=True)
class IterativePlan:
    """Everything a backend needs to build and run an AutoIterative guide."""

    structure: GuideStructure
    groups: tuple[IterativeGroup, ...]
    inputs: str
    elementwise_masks: tuple[np.ndarray, ...]

    @property
    def latents(self) -> tuple[str, ...]:
        return self.structure.latents

    def effective_params(self) -> int:
        """Weights the masks let through, plus hidden biases, over all networks."""

        def count(masks: Sequence[np.ndarray] | None) -> int:
            if masks is None:
                return 0
            return sum(int(m.sum()) for m in masks) + sum(m.shape[0] for m in masks[:-1])

        total = sum(count(g.masks) + count(g.encoder_masks) for g in self.groups)
        total += sum(int(g.encoder_skip.sum()) for g in self.groups if g.encoder_skip is not None)
        if any(g.elementwise for g in self.groups):
            total += count(self.elementwise_masks)
        return total


def build_iterative_plan(
    structure: GuideStructure,
    layouts: Mapping[str, SiteLayout],
    *,
    inputs: str = "gradient",
    observed_inputs: bool = True,
    encoder: bool = False,
    hidden: Sequence[int] | None = None,
) -> IterativePlan:
    """One :class:`IterativeGroup` per group of ``structure`` (see the module docstring).

    Args:
        structure: the guide structure (its inverse gives the neighbours).
        layouts: every site's layout (feature counts of observed sites).
        inputs: ``"gradient"`` or ``"error"``.
        observed_inputs: whether the updates also read the observations.
        encoder: whether the initial :math:`\\lambda` comes from an encoder of the data.
        hidden: hidden widths (default:
            :func:`~faithful_guides.autoguides.defaults.default_hidden_for` the rows).
    """
    width = STATE_WIDTH[inputs]
    specs = [
        _group_inputs(g, structure, layouts, inputs, observed_inputs, encoder)
        for g in structure.groups
    ]
    summaries = {s.name: s for s in structure.summaries}
    groups = []
    for g, (blocks, outputs, allowed, long_sites) in zip(structure.groups, specs, strict=True):
        in_size = sum(b.size for b in blocks)
        rows = [a for a, _ in allowed]
        hid = tuple(hidden) if hidden else default_hidden_for(rows)
        masks = tuple(made_masks(in_size, rows * 4, hid)) if outputs else None
        enc_masks, enc_skip = None, None
        data_size = sum(b.size for b in blocks if b.kind == "data")
        data_rows = [d for _, d in allowed]
        if encoder and outputs and any(data_rows):
            enc_hidden = tuple(hidden) if hidden else default_hidden_for(data_rows)
            enc_masks = tuple(made_masks(data_size, data_rows * 2, enc_hidden))
            embedded = set()  # a summary's embedding reaches the outputs through hidden layers
            for b in blocks:
                if b.kind == "data" and b.name in summaries:
                    s = summaries[b.name]
                    embedded.update(range(b.offset + s.in_size, b.offset + s.in_size + s.dim))
            enc_skip = np.zeros((2 * len(data_rows), data_size), dtype=bool)
            for j, cols in enumerate(data_rows * 2):
                enc_skip[j, sorted(cols - embedded)] = True
        groups.append(
            IterativeGroup(g, blocks, outputs, masks, enc_masks, enc_skip, tuple(long_sites))
        )
    ew = tuple(made_masks(width, [frozenset(range(width))] * 4, (32, 32)))
    return IterativePlan(structure, tuple(groups), inputs, ew)


def _relation(site: tuple[bool, ...], group: tuple[bool, ...]) -> tuple[int, ...] | None:
    """The grid axes to average ``site``'s features over for ``group`` (empty: same or
    coarser, broadcast), or None when the two sit in side-by-side plates."""
    extra = tuple(i for i, (a, b) in enumerate(zip(site, group, strict=True)) if a and not b)
    missing = any(b and not a for a, b in zip(site, group, strict=True))
    return None if extra and missing else extra


def _group_inputs(
    g: Group,
    structure: GuideStructure,
    layouts: Mapping[str, SiteLayout],
    kind: str,
    observed_inputs: bool,
    encoder: bool,
) -> tuple[tuple[Block, ...], tuple[Block, ...], list[tuple[frozenset, frozenset]], list[str]]:
    """The input blocks, refined outputs, per-feature allowed columns ``(all, data)`` and
    element-wise latents of one group."""
    width = STATE_WIDTH[kind]
    graph, inverse = structure.graph, structure.inverse
    member = {n: layouts[n].in_plate for n in graph.sites}
    blocks: dict[str, Block] = {}
    offset = 0

    def add(name: str, block_kind: str, size: int, reduce: tuple[int, ...] = ()) -> Block:
        nonlocal offset
        if name not in blocks:
            blocks[name] = Block(name, block_kind, size, offset, reduce)
            offset += size
        return blocks[name]

    data_of: dict[int, str] = {}  # the group's MADE input columns that are data
    if observed_inputs or encoder:
        for b in g.inputs:
            if b.kind != "latent":
                add(b.name, "data", b.size)
                data_of.update({i: b.name for i in range(b.offset, b.offset + b.size)})
    long_sites = [v for v in g.latents if layouts[v].features > MAX_INPUT]
    dense = [v for v in g.latents if v not in long_sites]
    outputs, out_off, allowed = [], 0, []
    for v in dense:
        cols: set[int] = set()
        for u in [v, *sorted(set(inverse.predecessors(v)) | set(inverse.successors(v)))]:
            if u not in graph.sites or layouts[u].features > MAX_INPUT:
                continue
            reduce = _relation(member[u], g.in_plate)
            if reduce is None or layouts[u].features == 0:
                continue
            if u in graph.observed:
                if kind != "error" or not inverse.has_edge(u, v):
                    continue
                b = add(u, "error", layouts[u].features, reduce)
            else:
                b = add(u, "state", width * layouts[u].features, reduce)
            cols.update(range(b.offset, b.offset + b.size))
        seen = g.allowed[g.output(v).offset]
        names = {data_of[i] for i in seen if i in data_of}
        data_cols = {
            i for n in names for i in range(blocks[n].offset, blocks[n].offset + blocks[n].size)
        }
        size = layouts[v].features
        outputs.append(Block(v, "latent", size, out_off))
        out_off += size
        full = frozenset(cols | data_cols) if observed_inputs else frozenset(cols)
        allowed.extend([(full, frozenset(data_cols) if encoder else frozenset())] * size)
    # data first (the encoder reads that prefix), in the order they were added
    ordered = [b for b in blocks.values() if b.kind == "data"]
    ordered += [b for b in blocks.values() if b.kind != "data"]
    moved, off, remap = [], 0, {}
    for b in ordered:
        remap.update({b.offset + i: off + i for i in range(b.size)})
        moved.append(Block(b.name, b.kind, b.size, off, b.reduce))
        off += b.size
    allowed = [(frozenset(remap[i] for i in a), frozenset(remap[i] for i in d)) for a, d in allowed]
    return tuple(moved), tuple(outputs), allowed, long_sites


_TRAIN_ITERATES: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "faithful_train_iterates", default=False
)


@contextlib.contextmanager
def train_iterates() -> Iterator[None]:
    """While active, AutoIterative guides add the ELBO of every intermediate iterate to
    what the loss differentiates (the ``IterativeELBO`` losses of both hosts use it)."""
    token = _TRAIN_ITERATES.set(True)
    try:
        yield
    finally:
        _TRAIN_ITERATES.reset(token)


def training_iterates() -> bool:
    """Whether :func:`train_iterates` is active."""
    return _TRAIN_ITERATES.get()


def preprocess_gradient(g: Any, xp: Any) -> tuple[Any, Any]:
    r""":math:`\pi(g) = (\max(\log|g| / p, -1),\ \mathrm{clip}(e^p g, -1, 1))`, coordinate-wise,
    for a torch tensor (``xp=torch``) or a jax array (``xp=jax.numpy``): the log-magnitude
    and the sign for :math:`|g| \ge e^{-p}`, a scaled value below (Andrychowicz et al. 2016).

    Example:
        >>> import numpy as np
        >>> [np.round(a, 3).tolist() for a in preprocess_gradient(np.array([-100.0, 1e-9]), np)]
        [[0.461, -1.0], [-1.0, 0.0]]
    """
    p = GRADIENT_PREPROCESS
    magnitude = xp.clip(xp.log(xp.abs(g) + 1e-30) / p, -1.0, None)
    return magnitude, xp.clip(g * float(np.exp(p)), -1.0, 1.0)


def gradient_features(
    loc: Any, log_scale: Any, g_loc: Any, g_log_scale: Any, site_scale: Any, xp: Any
) -> list[Any]:
    r"""The update network's inputs for one latent's feature block (``inputs="gradient"``):

    .. math:: [\tilde\mu,\ \log\sigma,\ \pi(g_\mu),\ \pi(g_{\log\sigma}),\
              b\tanh(\sigma^2 g_\mu / (s\, b)),\ b\tanh(g_{\log\sigma} / (2b))]

    with :math:`\tilde\mu = \mu` in units of the site's statistics (``loc`` is given
    standardized, ``site_scale`` is :math:`s`), :math:`\pi` :func:`preprocess_gradient` and
    :math:`b` :data:`NEWTON_BOUND`. The last two are the steps of diagonal Newton VI (for a
    Gaussian posterior :math:`\sigma^2 \nabla_\mu L` is the distance to the mean once
    :math:`\sigma` is right, whatever the data set's size), so that a plain gradient step
    is one linear map away; :math:`\pi` keeps the magnitudes of the raw gradients.
    """
    b = NEWTON_BOUND
    newton_loc = b * xp.tanh(xp.exp(2 * log_scale) * g_loc / (site_scale * b))
    newton_scale = b * xp.tanh(g_log_scale / (2 * b))
    return [
        loc,
        log_scale,
        *preprocess_gradient(g_loc, xp),
        *preprocess_gradient(g_log_scale, xp),
        newton_loc,
        newton_scale,
    ]
