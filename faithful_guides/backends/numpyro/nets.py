"""Plain-jax networks of the NumPyro AutoFaithfulMADE guide: a masked MLP (MADE) and a
small embedding MLP for plate summaries. Parameters are dicts of arrays (registered by the
guide with ``numpyro.param``); masks are numpy bool arrays shaped ``(out, in)``, applied as
``x @ (W * M).T + b`` (the convention of :mod:`faithful_guides.graph.masks`).

Example:
    >>> import numpy as np, jax
    >>> masks = [np.ones((4, 2), bool), np.ones((2, 4), bool)]
    >>> p = init_made(jax.random.PRNGKey(0), masks)
    >>> mu, rho = made_forward(p, masks, np.ones((2, 2), bool), jax.numpy.ones(2))
    >>> mu.shape, bool(abs(mu[0]) < 0.05)  # almost zero at initialization
    ((1,), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from faithful_guides.autoguides.defaults import OUTPUT_INIT
from faithful_guides.autoguides.made_plan import PassSchedule, row_multipliers

__all__ = [
    "MadeSteps",
    "Packed",
    "init_made",
    "init_mlp",
    "made_forward",
    "made_multipliers",
    "mlp_forward",
    "unit_lower",
]

Params = dict[str, jax.Array]


def init_made(key: jax.Array, masks: Sequence[np.ndarray], *, direct: bool = True) -> Params:
    """Raw weights of a masked MLP whose last layer has ``2 * out`` rows (the ``mu`` rows,
    then the ``rho`` rows), applied through :func:`made_multipliers` (``W * M``): hidden
    raw weights standard normal, output raw weights ``OUTPUT_INIT`` times that, biases
    and direct input-to-output weights ``S`` (if ``direct``) zero. The output layer has no
    bias: the guide's free parameters are the offsets."""
    params: Params = {}
    if direct:
        params["S"] = jnp.zeros((masks[-1].shape[0], masks[0].shape[1]))
    keys = jax.random.split(key, len(masks))
    for i, (k, m) in enumerate(zip(keys, masks, strict=True)):
        last = i == len(masks) - 1
        params[f"W{i}"] = jax.random.normal(k, m.shape) * (OUTPUT_INIT if last else 1.0)
        if not last:
            params[f"b{i}"] = jnp.zeros(m.shape[0])
    return params


def made_multipliers(masks: Sequence[np.ndarray], skip: np.ndarray | None) -> list[Any]:
    """The float masks (row multipliers folded in, see
    :func:`~faithful_guides.autoguides.made_plan.row_multipliers`): the hidden layers', the
    output layer's, then the direct connections' (None without them)."""
    *hidden, last = masks
    out = [row_multipliers(m) for m in hidden] + [row_multipliers(last, kind="output")]
    return [*out, None if skip is None else row_multipliers(skip, kind="direct")]


def made_forward(
    params: Params, masks: Sequence[np.ndarray], skip: np.ndarray | None, x: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(mu, rho)`` of the outputs for inputs ``x`` of shape ``(..., in)``: the masked
    MLP plus the masked direct connections (``skip``; None: none)."""
    *ms, s = made_multipliers(masks, skip)
    h = x
    for i, m in enumerate(ms):
        h = h @ (params[f"W{i}"] * m).T
        if i < len(ms) - 1:
            h = jax.nn.elu(h + params[f"b{i}"])
    if s is not None:
        h = h + x @ (params["S"] * s).T
    out = h.shape[-1] // 2
    return h[..., :out], h[..., out:]


class MadeSteps:
    """One call's generation-by-generation evaluation of an :func:`init_made` network, equal
    to :func:`made_forward` on the inputs known so far (latents not yet sampled are zero).

    Nothing is recomputed that a generation leaves unchanged (see :class:`PassSchedule`):
    the first layer and the skip connection keep a running ``z = [W_0 x + b_0; S x]`` that
    each sampled generation updates through its own columns; each further hidden layer
    keeps its pre-activations, updated through the few units below that the generation
    changed; a generation's outputs are only its own rows. The masked weights are permuted
    and sliced once per call.

    Args:
        params: the network's parameters.
        masks: its masks (at least one hidden layer).
        skip: the mask of its direct connections.
        schedule: the group's :class:`PassSchedule`.
        known: the ``schedule.known`` input blocks, concatenated (None when there are none).
    """

    def __init__(
        self,
        params: Params,
        masks: Sequence[np.ndarray],
        skip: np.ndarray,
        schedule: PassSchedule,
        known: jax.Array | None,
    ) -> None:
        n, order = len(masks), schedule.unit_order
        *ms, s = made_multipliers(masks, skip)
        ws = [params[f"W{i}"] * m for i, m in enumerate(ms)]
        bs = [params[f"b{i}"] for i in range(n - 1)] + [jnp.zeros(masks[-1].shape[0])]
        for i, o in enumerate(order):  # permute the hidden units that generations change
            ws[i], bs[i], ws[i + 1] = ws[i][o], bs[i][o], ws[i + 1][:, o]
        w_in = jnp.concatenate([ws[0], (params["S"] * s)[schedule.rows]])
        cuts = np.cumsum(schedule.column_splits)[:-1]
        w_known, *self._w_gens = jnp.split(w_in[:, schedule.columns], cuts, axis=1)
        w_out, b_out = ws[-1][schedule.rows], bs[-1][schedule.rows]
        cuts = np.cumsum(schedule.row_splits)[:-1]
        self._out = list(zip(jnp.split(w_out, cuts), jnp.split(b_out, cuts), strict=True))
        self._starts = [0, *cuts.tolist()]  # of each generation's skip rows
        self._width = masks[0].shape[0]
        bias = jnp.concatenate([bs[0], jnp.zeros(len(schedule.rows))])
        self._z = bias if known is None else known @ w_known.T + bias
        self._changed = schedule.changed
        self._a: list[jax.Array] = []  # pre-activations of hidden layers 1, 2, ...
        self._w_changed: list[list[jax.Array]] = []  # their weights from the changed units
        h = jax.nn.elu(self._z[..., : self._width])
        for i, units in enumerate(schedule.changed, start=1):
            self._a.append(h @ ws[i].T + bs[i])
            h = jax.nn.elu(self._a[-1])
            below = np.arange(masks[i].shape[1])  # the units of the layer below
            cols = [below[c] if c is not None else below[:0] for c in units]
            cuts = np.cumsum([len(c) for c in cols])[:-1]
            self._w_changed.append(jnp.split(ws[i][:, np.concatenate(cols)], cuts, axis=1))
        self._gen = 0

    def outputs(self) -> tuple[jax.Array, jax.Array]:
        """``(mu, rho)`` of the next generation, ``(..., k_g)`` each."""
        w, b = self._out[self._gen]
        k = w.shape[0] // 2
        h = jax.nn.elu(self._a[-1] if self._a else self._z[..., : self._width])
        start = self._width + self._starts[self._gen]
        y = h @ w.T + b + self._z[..., start : start + 2 * k]
        return y[..., :k], y[..., k:]

    def update(self, u: jax.Array | None) -> None:
        """Feed the generation just sampled: the features ``u`` of its latents that others
        read (``schedule.feeds``), shaped ``(..., k_g)``; None when it has none."""
        g = self._gen
        self._gen += 1
        if u is None or self._gen == len(self._w_gens):  # the last generation feeds no one
            return
        old, self._z = self._z, self._z + u @ self._w_gens[g].T
        old, new = old[..., : self._width], self._z[..., : self._width]
        for i, units in enumerate(self._changed):
            idx = units[g]
            if idx is None:  # nothing above changes either
                break
            delta = jax.nn.elu(new[..., idx]) - jax.nn.elu(old[..., idx])
            old, self._a[i] = self._a[i], self._a[i] + delta @ self._w_changed[i][g].T
            new = self._a[i]


class Packed:
    """A dict of arrays as one flat parameter vector (the layout fixed at set-up).

    A jitted NumPyro step pays per parameter array (pytree leaves of the params and the
    optimizer state), so each network is registered as one ``numpyro.param``.

    Example:
        >>> import jax.numpy as jnp
        >>> spec = Packed({"W": jnp.ones((2, 3)), "b": jnp.zeros(2)})
        >>> flat = spec.flat({"W": jnp.ones((2, 3)), "b": jnp.zeros(2)})
        >>> flat.shape, spec.unpack(flat)["W"].shape
        ((8,), (2, 3))
    """

    def __init__(self, arrays: dict[str, jax.Array]) -> None:
        self.layout, offset = [], 0
        for name, a in arrays.items():
            n = int(np.prod(a.shape, dtype=np.int64))
            self.layout.append((name, tuple(a.shape), offset, n))
            offset += n

    def flat(self, arrays: dict[str, jax.Array]) -> jax.Array:
        if not self.layout:
            return jnp.zeros(0)
        return jnp.concatenate([jnp.ravel(arrays[name]) for name, *_ in self.layout])

    def unpack(self, flat: jax.Array) -> Params:
        return {name: flat[o : o + n].reshape(shape) for name, shape, o, n in self.layout}


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
