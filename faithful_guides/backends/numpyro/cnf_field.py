r"""Plain-jax parts of a structured continuous normalizing flow (Weilbach et al. 2020): the
masked, time-gated vector field, its divergence, and one augmented solve (diffrax).

The same field as the Pyro host's (:mod:`faithful_guides.backends.pyro.cnf_field`):

.. math::
    h_0 = [c, z], \qquad
    h_k = \tanh\big((W_k \odot M_k) h_{k-1} + b_k\big) \odot \sigma(a_k t + e_k) + d_k t,
    \qquad f = (W_L \odot M_L) h_{L-1},

parameters in a dict of arrays (registered by the guide with ``numpyro.param``) that
travels to the solver as its ``args``, so that every adjoint of diffrax differentiates it.

Example:
    >>> import jax.numpy as jnp
    >>> from jax import random
    >>> from faithful_guides.graph.masks import made_masks
    >>> masks = made_masks(3, [{0, 1}, {0, 2}], [8])
    >>> params = init_field(random.PRNGKey(0), masks)
    >>> z, c = jnp.zeros((4, 2)), jnp.ones((4, 1))
    >>> z1, delta = solve_flow(params, masks, z, c, exact=True)
    >>> bool((z1 == z).all()), float(jnp.abs(delta).max())  # the identity at initialization
    (True, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from faithful_guides.autoguides.cnf_plan import OdeOptions
from faithful_guides.autoguides.defaults import OUTPUT_INIT
from faithful_guides.autoguides.made_plan import row_multipliers

__all__ = ["divergence", "field_forward", "init_field", "solve_flow"]

Params = dict[str, jax.Array]
_SOLVERS = {"dopri5": "Dopri5", "dopri8": "Dopri8", "bosh3": "Bosh3", "euler": "Euler",
            "midpoint": "Midpoint"}  # fmt: skip


def init_field(key: jax.Array, masks: Sequence[np.ndarray]) -> Params:
    """Raw parameters of the field: hidden weights standard normal (scaled by the masks'
    row multipliers when applied), output weights ``OUTPUT_INIT`` times that (zero: the
    identity flow), biases and time gates zero."""
    params: Params = {}
    keys = jax.random.split(key, len(masks))
    for i, (k, m) in enumerate(zip(keys, masks, strict=True)):
        last = i == len(masks) - 1
        params[f"W{i}"] = jax.random.normal(k, m.shape) * (OUTPUT_INIT if last else 1.0)
        if not last:
            for name in ("b", "a", "e", "d"):
                params[f"{name}{i}"] = jnp.zeros(m.shape[0])
    return params


def field_forward(
    params: Params, masks: Sequence[np.ndarray], t: jax.Array, x: jax.Array
) -> jax.Array:
    """:math:`f(t, x)` for inputs ``x = [c, z]`` shaped ``(..., in)``."""
    *hidden, last = masks
    h = x
    for i, m in enumerate(hidden):
        h = jnp.tanh(h @ (params[f"W{i}"] * row_multipliers(m)).T + params[f"b{i}"])
        h = h * jax.nn.sigmoid(params[f"a{i}"] * t + params[f"e{i}"]) + params[f"d{i}"] * t
    n = len(hidden)
    return h @ (params[f"W{n}"] * row_multipliers(last, kind="output")).T


def divergence(
    params: Params,
    masks: Sequence[np.ndarray],
    t: jax.Array,
    c: jax.Array | None,
    z: jax.Array,
    *,
    probe: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""``(f, tr ∂f/∂z)`` per cell, shapes ``(..., D)`` and ``(...)``: exact (``D``
    Jacobian-vector products, batched) when ``probe`` is None, else Hutchinson's
    :math:`\epsilon^\top (\partial f / \partial z)\, \epsilon` with the given probe."""

    def f(z: jax.Array) -> jax.Array:
        if c is None:
            return field_forward(params, masks, t, z)
        x = jnp.concatenate([jnp.broadcast_to(c, (*z.shape[:-1], c.shape[-1])), z], -1)
        return field_forward(params, masks, t, x)

    if probe is not None:
        out, jv = jax.jvp(f, (z,), (probe,))
        return out, (jv * probe).sum(-1)
    eye = jnp.eye(z.shape[-1], dtype=z.dtype)
    out = f(z)
    columns = jax.vmap(lambda e: jax.jvp(f, (z,), (jnp.broadcast_to(e, z.shape),))[1])(eye)
    return out, jnp.einsum("i...i->...", columns)


def solve_flow(
    params: Params,
    masks: Sequence[np.ndarray],
    z0: jax.Array,
    c: jax.Array | None,
    *,
    exact: bool,
    ode: OdeOptions | None = None,
    reverse: bool = False,
    key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""Solve the flow from ``z0`` over :math:`t \in [0, 1]` (``reverse``: from 1 back to 0)
    with the log-density in the same solve: ``(z1, delta)``, :math:`\log q(z_1) = \log
    q_0(z_0) + \delta` (``reverse``: :math:`\log q(z_1) = \log q_0(z_0) - \delta` for the
    returned base point). ``exact=False`` draws one Rademacher probe per solve from
    ``key``."""
    try:
        import diffrax  # lazily: only flows need it
    except ImportError as e:
        raise ImportError(
            "Continuous flows on NumPyro solve their ODEs with diffrax: "
            "pip install diffrax (or faithful-guides[numpyro])."
        ) from e

    ode = ode or OdeOptions()
    probe = None
    if not exact:
        if key is None:
            raise ValueError("A Hutchinson trace (exact=False) needs a PRNG key: pass key=.")
        probe = jax.random.rademacher(key, z0.shape, dtype=z0.dtype)

    def vector_field(t: jax.Array, state: tuple[jax.Array, jax.Array], args: Any):
        p, cond, e = args
        f, div = divergence(p, masks, t, cond, state[0], probe=e)
        return f, -div

    t0, t1 = (1.0, 0.0) if reverse else (0.0, 1.0)
    if ode.method in ("euler", "midpoint"):
        controller, dt0 = diffrax.ConstantStepSize(), (t1 - t0) * ode.step_size
    else:
        controller, dt0 = diffrax.PIDController(rtol=ode.rtol, atol=ode.atol), None
    adjoint = diffrax.BacksolveAdjoint() if ode.adjoint else diffrax.RecursiveCheckpointAdjoint()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        getattr(diffrax, _SOLVERS[ode.method])(),
        t0,
        t1,
        dt0,
        (z0, jnp.zeros(z0.shape[:-1], z0.dtype)),
        args=(params, c, probe),
        stepsize_controller=controller,
        max_steps=ode.max_steps,
        adjoint=adjoint,
    )
    return sol.ys[0][-1], sol.ys[1][-1]
