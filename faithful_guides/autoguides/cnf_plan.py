r"""The flow part of an AutoFaithfulCNF guide (Weilbach et al. 2020, "Structured conditional
continuous normalizing flows"): per group of the
:class:`~faithful_guides.autoguides.structure.GuideStructure`, the input layout and masks
of one vector field, and the ODE solver options. Both backends build their fields from it.

A group's latents :math:`z` (per plate cell, in unconstrained space) follow

.. math::
    \frac{dz}{dt} = f(z, t, c), \qquad
    \frac{d \log q}{dt} = -\operatorname{tr} \frac{\partial f}{\partial z},
    \qquad t \in [0, 1],

from :math:`z(0) \sim N(0, I)`, with :math:`c` the conditioning features (observations,
covariates, summaries, latents of earlier groups). The velocity of latent :math:`i` reads
only :math:`z_i`, the latents among :math:`\mathrm{Pa}_H(i)` and the conditioning features
its faithful conditional reads: the masks of
:func:`~faithful_guides.graph.masks.made_masks` over ``allowed[i] = Pa_H(i) ∪ {i}`` give
exactly that support at any depth (hidden units carry their sets, so stacked layers
cannot leak multi-hop neighbours), and :func:`~faithful_guides.graph.masks.connectivity`
is the oracle. Time enters through a per-unit gate, never through the masks, so
:math:`\partial f / \partial z` keeps the mask's support.

A latent longer than :data:`~faithful_guides.autoguides.defaults.MAX_INPUT` features
reads its parents and only its own element (a diagonal field inside the site), so its cost
stays linear in its length.

Example:
    >>> from faithful_guides import ModelGraph
    >>> from faithful_guides.autoguides.layout import SiteLayout
    >>> from faithful_guides.autoguides.structure import build_structure
    >>> g = ModelGraph.from_edges([("z", "y"), ("y", "x")], observed={"x"})
    >>> lays = {n: SiteLayout(n, (), 0, (), ()) for n in g.sites}
    >>> plan = build_cnf_plan(build_structure(g, lays), hidden=(8,))
    >>> grp = plan.groups[0]
    >>> [(b.name, b.size) for b in grp.known], [(b.name, b.size) for b in grp.state]
    ([('x', 1)], [('z', 1), ('y', 1)])
    >>> [sorted(a) for a in grp.allowed]  # [x, z, y]: z reads y and itself, y x and itself
    [[1, 2], [0, 2]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faithful_guides.autoguides.defaults import MAX_INPUT, default_hidden_for
from faithful_guides.autoguides.structure import Block, Group, GuideStructure
from faithful_guides.graph.masks import made_masks

__all__ = [
    "EXACT_TRACE_MAX",
    "SOLVERS",
    "TRACES",
    "CnfGroup",
    "CnfPlan",
    "OdeOptions",
    "build_cnf_plan",
]

TRACES = ("auto", "exact", "hutchinson")
EXACT_TRACE_MAX = 32
"""``trace="auto"`` computes the divergence exactly up to this many latent features per
cell (one vector-Jacobian product each), by Hutchinson's estimator above."""
SOLVERS = ("dopri5", "dopri8", "bosh3", "euler", "midpoint")
"""Solver names both hosts know (torchdiffeq's ``method``, diffrax's solver classes)."""
FIXED_STEP = ("euler", "midpoint")


@dataclass(frozen=True)
class OdeOptions:
    """How each flow is solved, the same names on both hosts.

    Attributes:
        method: one of :data:`SOLVERS`.
        rtol, atol: tolerances of the adaptive methods.
        max_steps: the most solver steps per solve (an error beyond).
        step_size: the step of the fixed-step methods (``euler``, ``midpoint``).
        adjoint: backpropagate by solving the adjoint ODE backwards (memory constant in
            the number of steps, gradients approximate up to the tolerances) instead of
            through the solver's operations (exact, the default).
    """

    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    max_steps: int = 1000
    step_size: float | None = None
    adjoint: bool = False

    def __post_init__(self) -> None:
        if self.method not in SOLVERS:
            raise ValueError(
                f"Unknown ODE method {self.method!r}: expected one of {', '.join(SOLVERS)}."
            )
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise ValueError(f"ODE option {name} must be a positive number, found {v!r}.")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int):
            raise TypeError(f"ODE option max_steps must be an int, found {self.max_steps!r}.")
        if self.max_steps < 1:
            raise ValueError(f"ODE option max_steps must be positive, found {self.max_steps}.")
        if self.method in FIXED_STEP:
            s = self.step_size
            if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 1:
                raise ValueError(
                    f"ODE method {self.method!r} takes fixed steps: give step_size in (0, 1] "
                    f"(e.g. step_size=0.1), found {s!r}."
                )
        if not isinstance(self.adjoint, bool):
            raise TypeError(f"ODE option adjoint must be True or False, found {self.adjoint!r}.")


@dataclass(frozen=True)
class CnfGroup:
    r"""One group's vector field :math:`f(z, t, c)`. Its input is ``[c, z]``: the
    conditioning blocks ``known`` (offsets from 0, the group's known inputs) followed by the
    state blocks ``state`` (the group's latents, offsets from 0 in :math:`z`); ``allowed[j]``
    the input features the velocity of state feature ``j`` may read; ``masks`` the field's
    (last layer ``state_size`` rows); ``trace`` how the divergence is computed."""

    group: Group
    known: tuple[Block, ...]
    state: tuple[Block, ...]
    allowed: tuple[frozenset[int], ...]
    masks: tuple[np.ndarray, ...]
    trace: str

    @property
    def known_size(self) -> int:
        return sum(b.size for b in self.known)

    @property
    def state_size(self) -> int:
        return sum(b.size for b in self.state)


@dataclass(frozen=True)
class CnfPlan:
    """Everything flow-specific a backend needs (see module docs)."""

    structure: GuideStructure
    groups: tuple[CnfGroup, ...]
    ode: OdeOptions


def build_cnf_plan(
    structure: GuideStructure,
    *,
    hidden: Sequence[int] | None = None,
    trace: str = "auto",
    ode: OdeOptions | None = None,
) -> CnfPlan:
    """One :class:`CnfGroup` per group of ``structure`` with hidden widths ``hidden``
    (default :func:`~faithful_guides.autoguides.defaults.default_hidden_for`)."""
    if trace not in TRACES:
        raise ValueError(f"Unknown trace {trace!r}: expected one of {', '.join(TRACES)}.")
    groups = []
    for g in structure.groups:
        own = set(g.latents)
        known = tuple(b for b in g.inputs if b.name not in own)
        k = sum(b.size for b in known)
        state, offset = [], 0
        for b in g.outputs:
            state.append(Block(b.name, "latent", b.size, offset))
            offset += b.size
        where = {b.name: k + b.offset for b in state}  # a latent's columns in [c, z]

        column = np.arange(g.in_size)  # the structure's input columns, in [c, z]
        for b in g.inputs:
            if b.name in own:
                column[b.slice] = where[b.name] + np.arange(b.size)
        allowed = []
        for b in state:
            for f in range(b.size):
                cols = {int(column[i]) for i in g.allowed[g.output(b.name).offset + f]}
                own_cols = range(b.size) if b.size <= MAX_INPUT else (f,)
                cols.update(where[b.name] + c for c in own_cols)
                allowed.append(frozenset(cols))
        hid = tuple(hidden) if hidden else default_hidden_for(allowed)
        masks = tuple(made_masks(k + offset, allowed, hid))
        mode = (
            trace if trace != "auto" else ("exact" if offset <= EXACT_TRACE_MAX else "hutchinson")
        )
        groups.append(CnfGroup(g, known, tuple(state), tuple(allowed), masks, mode))
    return CnfPlan(structure, tuple(groups), ode or OdeOptions())
