"""Plain-jax networks of the NumPyro AutoFaithfulMADE guide: a masked MLP (MADE) and a
small embedding MLP for plate summaries. Parameters are dicts of arrays (registered by the
guide with ``numpyro.param``); masks are numpy bool arrays shaped ``(out, in)``, applied as
``x @ (W * M).T + b`` (the convention of :mod:`faithful_guides.graph.masks`).

Example:
    >>> import numpy as np, jax
    >>> masks = [np.ones((4, 2), bool), np.ones((2, 4), bool)]
    >>> p = init_made(jax.random.PRNGKey(0), masks, np.zeros(1), 0.1)
    >>> loc, scale = made_forward(p, masks, np.ones((2, 2), bool), jax.numpy.ones(2))
    >>> loc.shape, float(scale[0])  # doctest: +ELLIPSIS
    ((1,), 0.1...)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["init_made", "init_mlp", "made_forward", "mlp_forward", "unit_lower"]

Params = dict[str, jax.Array]

_OUT_STD = 1e-2  # output weights start small: the guide starts at init_loc / init_scale


def inv_softplus(y: float) -> float:
    """The ``x`` with ``softplus(x) == y``."""
    return float(y + np.log(-np.expm1(-y)))


def init_made(
    key: jax.Array, masks: Sequence[np.ndarray], loc_init: np.ndarray, init_scale: float
) -> Params:
    """Weights of a masked MLP whose last layer has ``2 * out`` rows (loc rows, scale rows).

    Hidden weights are scaled by each unit's masked fan-in; output weights are small, the
    loc bias is ``loc_init`` and the scale bias gives ``softplus(bias) == init_scale``.
    The direct input-to-output weights ``S`` start at zero.
    """
    params: Params = {"S": jnp.zeros((masks[-1].shape[0], masks[0].shape[1]))}
    keys = jax.random.split(key, len(masks))
    out = len(loc_init)
    for i, (k, m) in enumerate(zip(keys, masks, strict=True)):
        last = i == len(masks) - 1
        fan_in = np.maximum(m.sum(axis=1, keepdims=True), 1)
        std = _OUT_STD if last else 1.0 / np.sqrt(fan_in)
        params[f"W{i}"] = jax.random.normal(k, m.shape) * std * m
        if last:
            scale_bias = np.full(out, inv_softplus(init_scale))
            params[f"b{i}"] = jnp.asarray(np.concatenate([loc_init, scale_bias]), jnp.float32)
        else:
            params[f"b{i}"] = jnp.zeros(m.shape[0])
    return params


def made_forward(
    params: Params, masks: Sequence[np.ndarray], skip: np.ndarray, x: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(loc, scale)`` of the outputs for inputs ``x`` of shape ``(..., in)``: the masked
    MLP plus the masked direct connections ``x @ (S * skip).T``."""
    h = x
    for i, m in enumerate(masks):
        h = h @ (params[f"W{i}"] * m).T + params[f"b{i}"]
        if i < len(masks) - 1:
            h = jax.nn.elu(h)
    h = h + x @ (params["S"] * skip).T
    out = h.shape[-1] // 2
    return h[..., :out], jax.nn.softplus(h[..., out:]) + 1e-6


def init_mlp(key: jax.Array, sizes: Sequence[int]) -> Params:
    """An unmasked MLP ``sizes[0] -> ... -> sizes[-1]`` (ELU between layers)."""
    params: Params = {}
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        params[f"W{i}"] = jax.random.normal(k, (b, a)) / np.sqrt(max(a, 1))
        params[f"b{i}"] = jnp.zeros(b)
    return params


def mlp_forward(params: Params, x: jax.Array) -> jax.Array:
    """Apply an :func:`init_mlp` network to ``x`` of shape ``(..., sizes[0])``."""
    n = len(params) // 2
    for i in range(n):
        x = x @ params[f"W{i}"].T + params[f"b{i}"]
        if i < n - 1:
            x = jax.nn.elu(x)
    return x


def unit_lower(raw: jax.Array) -> jax.Array:
    """The unit lower-triangular matrix with ``raw``'s strictly lower part."""
    return jnp.tril(raw, -1) + jnp.eye(raw.shape[-1], dtype=raw.dtype)
