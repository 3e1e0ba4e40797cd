r"""Torch parts of a structured continuous normalizing flow (Weilbach et al. 2020): the
masked, time-gated vector field, its divergence, and one augmented solve (torchdiffeq).

The field of :class:`~faithful_guides.autoguides.cnf_plan.CnfGroup` ``g`` reads ``[c, z]``
(conditioning features, then the group's latents) and returns :math:`dz/dt`:

.. math::
    h_0 = [c, z], \qquad
    h_k = \tanh\big((W_k \odot M_k) h_{k-1} + b_k\big) \odot \sigma(a_k t + e_k) + d_k t,
    \qquad f = (W_L \odot M_L) h_{L-1},

with the masks :math:`M_k` of the plan (so :math:`\partial f_i / \partial [c, z]` is
nonzero only on ``g.allowed[i]``) and a per-unit time gate that no mask cuts. The output
layer starts at zero: the flow starts as the identity.

Example:
    >>> import numpy as np, torch
    >>> from faithful_guides.graph.masks import made_masks
    >>> field = VectorField(made_masks(3, [{0, 1}, {0, 2}], [8]))
    >>> z, c = torch.zeros(4, 2), torch.ones(4, 1)
    >>> z1, delta = solve_flow(field, z, c, exact=True)
    >>> bool((z1 == z).all()), float(delta.abs().max().detach())  # the identity at initialization
    (True, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pyro.nn import PyroModule
from torch import nn

from faithful_guides.autoguides.cnf_plan import OdeOptions
from faithful_guides.backends.pyro.nets import MaskedLinear

__all__ = ["TimeGate", "VectorField", "divergence", "solve_flow"]


class TimeGate(PyroModule):
    r"""The time dependence of one hidden layer: :math:`h \odot \sigma(a t + e) + d t`,
    per unit (gate open at one half, no time bias at initialization)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(width))
        self.e = nn.Parameter(torch.zeros(width))
        self.d = nn.Parameter(torch.zeros(width))

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return h * torch.sigmoid(self.a * t + self.e) + self.d * t


class VectorField(PyroModule):
    """The masked field :math:`f(t, [c, z])` (see module docs); ``masks`` from
    :func:`~faithful_guides.graph.masks.made_masks`, the last one with a row per latent
    feature."""

    def __init__(self, masks: Sequence[np.ndarray]) -> None:
        super().__init__()
        *hidden, last = masks
        self.layers = PyroModule[nn.ModuleList]([MaskedLinear(m) for m in hidden])
        self.gates = PyroModule[nn.ModuleList]([TimeGate(m.shape[0]) for m in hidden])
        self.out = MaskedLinear(last, kind="output", bias=False)
        self.state_size = int(last.shape[0])

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer, gate in zip(self.layers, self.gates, strict=True):
            h = gate(torch.tanh(layer(h)), t)
        return self.out(h)


def divergence(
    field: VectorField,
    t: torch.Tensor,
    c: torch.Tensor | None,
    z: torch.Tensor,
    *,
    probe: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(f, tr ∂f/∂z)`` per cell, shapes ``(..., D)`` and ``(...)``: exact (``D``
    vector-Jacobian products, one per latent feature) when ``probe`` is None, else
    Hutchinson's unbiased :math:`\epsilon^\top (\partial f / \partial z)\, \epsilon` with
    the given probe (Rademacher or standard normal, one per solve). Differentiable (the
    products keep their graph), so a loss can train through it."""
    with torch.enable_grad():
        if not z.requires_grad:  # a copy: the caller's tensor keeps its flag
            z = z.detach().requires_grad_()
        x = z if c is None else torch.cat([c.expand(*z.shape[:-1], c.shape[-1]), z], -1)
        f = field(t, x)
        if probe is not None:
            (v,) = torch.autograd.grad(f, z, probe, create_graph=True)
            return f, (v * probe).sum(-1)
        div = torch.zeros(f.shape[:-1], dtype=f.dtype)
        for i in range(f.shape[-1]):
            (g,) = torch.autograd.grad(f[..., i].sum(), z, create_graph=True)
            div = div + g[..., i]
        return f, div


class _Augmented(nn.Module):
    """The ODE of ``(z, log q)`` that torchdiffeq integrates (an ``nn.Module`` so that the
    adjoint sees the field's parameters)."""

    def __init__(self, field: VectorField, c: torch.Tensor | None, probe: torch.Tensor | None):
        super().__init__()
        self.field, self.c, self.probe = field, c, probe

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        f, div = divergence(self.field, t, self.c, state[0], probe=self.probe)
        return f, -div


def solve_flow(
    field: VectorField,
    z0: torch.Tensor,
    c: torch.Tensor | None,
    *,
    exact: bool,
    ode: OdeOptions | None = None,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Solve the flow from ``z0`` over :math:`t \in [0, 1]` (``reverse``: from 1 back to 0)
    with the log-density in the same solve: ``(z1, delta)`` with
    :math:`\log q(z_1) = \log q_0(z_0) + \delta`, :math:`\delta = -\int \operatorname{tr}
    \partial f / \partial z \, dt` (``reverse``: :math:`\log q(z_1) = \log q_0(z_0) -
    \delta` for the returned base point). ``exact=False`` draws one Rademacher probe per
    solve."""
    try:
        import torchdiffeq  # lazily: only flows need it
    except ImportError as e:
        raise ImportError(
            "Continuous flows on Pyro solve their ODEs with torchdiffeq: "
            "pip install torchdiffeq (or faithful-guides[pyro])."
        ) from e

    ode = ode or OdeOptions()
    probe = None if exact else torch.randint(0, 2, z0.shape, dtype=z0.dtype) * 2 - 1
    func = _Augmented(field, c, probe)
    times = torch.tensor([1.0, 0.0] if reverse else [0.0, 1.0], dtype=z0.dtype)
    state = (z0, torch.zeros(z0.shape[:-1], dtype=z0.dtype))
    kwargs = {"method": ode.method, "rtol": ode.rtol, "atol": ode.atol}
    if ode.step_size is not None or ode.method in ("euler", "midpoint"):
        kwargs["options"] = {"step_size": ode.step_size}
    else:
        kwargs["options"] = {"max_num_steps": ode.max_steps}
    try:
        if ode.adjoint:
            params = tuple(field.parameters()) + (() if c is None or not c.requires_grad else (c,))
            zs, lps = torchdiffeq.odeint_adjoint(
                func, state, times, adjoint_params=params, **kwargs
            )
        else:
            zs, lps = torchdiffeq.odeint(func, state, times, **kwargs)
    except AssertionError as e:  # torchdiffeq's way of saying it ran out of steps
        if "max_num_steps" not in str(e):
            raise
        raise RuntimeError(
            f"The flow's ODE solve needed more than max_steps={ode.max_steps} steps "
            f"({ode.method}, rtol={ode.rtol}, atol={ode.atol}): raise max_steps, loosen "
            "the tolerances, or shorten training steps (a stiff field)."
        ) from None
    return zs[-1], lps[-1]
