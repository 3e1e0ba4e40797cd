"""What a NumPyro faithful guide reads each call, besides its latents: a hidden model run
(plate sizes, subsample rows, observed values; latents held at a fixed point of their
support), the fallback to set-up observations, covariates and plate summaries, all
standardized on the plate grid.

Example:
    >>> import numpy as np
    >>> sorted(_array_args((np.zeros(2), 3), {"y": np.ones(1)}))
    [('arg', 0), ('kwarg', 'y')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.primitives import Messenger

from faithful_guides.autoguides.errors import missing_observation, observed_shape_error
from faithful_guides.backends.numpyro.nets import mlp_forward

__all__ = ["GuideInputs"]

Array = jax.Array


class GuideInputs:
    """The per-call inputs of :class:`~faithful_guides.backends.numpyro.guide.FaithfulGuide`
    (a mixin: it reads the guide's set-up state)."""

    def _inputs(
        self, params: Mapping[str, Array], args: Any, kwargs: Any, given: Mapping | None
    ) -> tuple[dict[str, Any], dict[str, Array]]:
        if self.create_plates is not None:
            plates = self._create_plates(*args, **kwargs)
            tr = self._hidden_run(args, kwargs, plates)
        else:  # sizes of this call, from the model itself
            tr = self._hidden_run(args, kwargs, {})
            plates = {}
            for p in self._plates:
                size, sub = tr[p.name]["args"] if p.name in tr else (p.size, p.subsample_size)
                plates[p.name] = numpyro.plate(p.name, size, subsample_size=sub, dim=p.dim)
            if any(p.subsample_size < p.size for p in plates.values()):
                tr = self._hidden_run(args, kwargs, plates)  # the guide's rows
        self._call = (args, kwargs, given)  # for families that rerun the model
        self._fallbacks: set[str] = set()  # observed sites read from set-up
        feats: dict[str, Array] = {}
        for n in self._graph.observed:
            feats[n] = self._observed(params, n, tr.get(n), given)
        self._covariates(params, feats, plates, args, kwargs)
        self._summaries(params, feats)
        return plates, feats

    def _hidden_run(self, args: Any, kwargs: Any, plates: Mapping[str, Any]) -> dict[str, Any]:
        """A run of the model that replays ``plates``' rows, with latents at a fixed point
        (only observations and plate sizes are read)."""
        rows = {n: {"name": n, "type": "plate", "value": p._indices} for n, p in plates.items()}
        with handlers.block():
            run = handlers.replay(handlers.seed(_FixedLatents(self.model), rng_seed=0), trace=rows)
            return handlers.trace(run).get_trace(*args, **kwargs)

    def _standardize(self, params: Mapping[str, Array], name: str, grid: Array) -> Array:
        base = f"{self.prefix}_input[{name}]"
        return (grid - params[base + "_center"]) / params[base + "_scale"]

    def _observed(
        self, params: Mapping[str, Array], name: str, site: Any, given: Mapping | None
    ) -> Array:
        value = given.get(name) if given else None
        if value is None and site is not None and site["is_observed"]:
            value = site["value"]
        if value is None:
            setup = self._setup_obs[name]
            if site is not None:
                now = self.layouts[name].to_grid(jnp.zeros(tuple(site["fn"].shape())), jnp)
                if now.shape != setup.shape:
                    found = "a latent site"
                    raise missing_observation(name, found, type(self).__name__)
            self._fallbacks.add(name)
            return setup
        value = jnp.asarray(value, dtype=jnp.result_type(float))
        shape = tuple(site["fn"].shape()) if site is not None else self.layouts[name].shape
        try:
            value = jnp.broadcast_to(value, shape)
        except ValueError:
            raise observed_shape_error(name, value.shape, shape, type(self).__name__) from None
        return self._standardize(params, name, self.layouts[name].to_grid(value, jnp))

    def _covariates(
        self, params: Mapping[str, Array], feats: dict, plates: Any, args: Any, kwargs: Any
    ) -> None:
        values, k = _array_args(args, kwargs), len(self._plates)
        for c in self.structure.covariates:
            value = values.get(c.key)
            if value is None:
                value = _array_args(*self._args)[c.key]
            value = jnp.asarray(value, dtype=jnp.result_type(float))
            if any(c.in_plate):
                i = c.in_plate.index(True)
                plate = plates[self._plates[i].name]
                if value.shape[0] == plate.size and plate.subsample_size < plate.size:
                    value = value[plate._indices]
                shape = [1] * k + [c.features]
                shape[i] = value.shape[0]
                grid = value.reshape(shape)
            else:
                grid = value.reshape([1] * k + [c.features])
            feats[c.name] = self._standardize(params, c.name, grid)

    def _summaries(self, params: Mapping[str, Array], feats: dict[str, Array]) -> None:
        k = len(self._plates)
        for s in self.structure.summaries:
            rows = _cat([feats[s.site], *(feats[c] for c in s.covariates)])
            dims = tuple(i - k - 1 for i in s.reduce)
            net = self._summary_packs[s.name].unpack(params[f"{self.prefix}_{s.name}"])
            mean = rows.mean(dims, keepdims=True)
            count = math.prod(rows.shape[d] for d in dims)
            n = jnp.full((*mean.shape[:-1], 1), math.log(count / s.setup_count))
            embedded = mlp_forward(net, rows).mean(dims, keepdims=True)
            feats[s.name] = _cat([mean, embedded, n])


class _FixedLatents(Messenger):
    """Latent draws replaced by a fixed point of their support (``biject_to(support)(0)``):
    hidden model runs need no random numbers, and ``ImproperUniform`` latents need none."""

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg.get("value") is not None:
            return
        fn = msg["fn"]
        try:
            t = dist.biject_to(fn.support)
        except NotImplementedError:
            return
        shape = tuple(fn.shape(msg["kwargs"].get("sample_shape", ())))
        msg["value"] = t(jnp.zeros(t.inverse_shape(shape)))


def _array_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for i, a in enumerate(args):
        if isinstance(a, (jax.Array, np.ndarray)):
            out[("arg", i)] = a
    for k, v in kwargs.items():
        if isinstance(v, (jax.Array, np.ndarray)):
            out[("kwarg", k)] = v
    return out


def _cat(parts: Sequence[Array]) -> Array:
    """Concatenate feature blocks on the last dim, broadcasting their other dims."""
    if len(parts) == 1:
        return parts[0]
    batch = jnp.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return jnp.concatenate([jnp.broadcast_to(p, (*batch, p.shape[-1])) for p in parts], -1)
