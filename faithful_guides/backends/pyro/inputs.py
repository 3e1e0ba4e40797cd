"""What a Pyro faithful guide reads each call, besides its latents: a hidden model run
(plate sizes, subsample rows, observed values; latents held at a fixed point of their
support, so no random numbers are drawn), the fallback to set-up observations, covariates
and plate summaries, all standardized on the plate grid.

Example:
    >>> import torch
    >>> _cat([torch.zeros(2, 1), torch.ones(1, 3)]).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to

from faithful_guides.autoguides.errors import missing_observation, observed_shape_error

__all__ = ["GuideInputs"]


class GuideInputs:
    """The per-call inputs of :class:`~faithful_guides.backends.pyro.guide.FaithfulGuide`
    (a mixin: it reads the guide's set-up state)."""

    def _inputs(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], given: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """This call's plates and standardized grid features of observations, covariates
        and summaries."""
        self.__dict__["_stats_cache"] = dict(self.stats.named_buffers())
        self.__dict__["_call"] = (args, kwargs, given)  # for families that rerun the model
        plates = (
            dict(self._create_plates(*args, **kwargs))
            if self.master is not None or self.create_plates is not None
            else {}
        )
        key = _cache_key(args, kwargs)
        cacheable = not (given or plates or torch.jit.is_tracing())
        cacheable = cacheable and not any(p.subsampled for p in self._plates)
        if cacheable and self._obs_cache is not None and self._obs_cache[0] == key:
            sizes, feats, fallbacks = self._obs_cache[2]
        else:
            self.__dict__["_fallbacks"] = fallbacks = set()
            sizes, feats = self._observed(plates, args, kwargs, given)
            if cacheable:  # the args are kept alive, so their ids stay theirs
                self._obs_cache = (key, (args, kwargs), (sizes, dict(feats), fallbacks))
            feats = dict(feats)
        self.__dict__["_fallbacks"] = fallbacks  # observed sites read from set-up
        for p in self._plates:
            if p.name not in plates:
                size, idx = sizes[p.name]
                plates[p.name] = pyro.plate(p.name, size, subsample=idx, dim=p.dim)
        self.plates = plates
        self._covariates(feats, plates, args, kwargs)
        self._summaries(feats)
        return plates, feats

    def _observed(
        self,
        plates: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        given: Mapping[str, Any] | None,
    ) -> tuple[dict[str, tuple[int, torch.Tensor]], dict[str, torch.Tensor]]:
        """A hidden model run replaying ``plates``' rows: plate sizes and indices, and the
        observed sites' grid features (set-up values where this call has none)."""
        data = {name: p._indices for name, p in plates.items()}
        model = poutine.trace(_FixedLatents()(poutine.condition(self._raw_model[0], data=data)))
        with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=[]):
            tr = model.get_trace(*args, **kwargs)
        sizes = {}
        for p in self._plates:
            site = tr.nodes.get(p.name)
            if site is not None and site["type"] == "sample":  # the plate's subsample site
                idx = site["value"]
                sizes[p.name] = (int(site["fn"].size), idx)
            else:
                sizes[p.name] = (p.size, torch.arange(p.subsample_size))
        feats = {}
        for n in self.graph.observed:
            site = tr.nodes.get(n)
            value = given.get(n) if given else None
            if value is None and site is not None and site.get("is_observed"):
                value = site["value"]
            shape = tuple(site["fn"].shape()) if site is not None else None
            if value is None:
                feats[n] = self._fallback(n, site)
                continue
            value = torch.as_tensor(value).detach().to(torch.get_default_dtype())
            expected = shape if shape is not None else tuple(self.layouts[n].shape)
            try:
                value = value.expand(expected)
            except RuntimeError:
                raise observed_shape_error(
                    n, tuple(value.shape), expected, type(self).__name__
                ) from None
            feats[n] = self._standardize(n, self.layouts[n].to_grid(value, torch))
        return sizes, feats

    def _fallback(self, name: str, site: Any) -> torch.Tensor:
        found = "no site" if site is None else "a latent site"
        setup = self._setup_obs[name]
        self.__dict__["_fallbacks"].add(name)
        if site is not None:
            shape = tuple(site["fn"].shape())
            now = self.layouts[name].to_grid(torch.zeros(shape), torch).shape
            if tuple(now) != tuple(setup.shape):
                raise missing_observation(name, found, type(self).__name__)
        return setup

    def _covariates(
        self, feats: dict[str, torch.Tensor], plates: Mapping[str, Any], args: Any, kwargs: Any
    ) -> None:
        values = _tensor_args(args, kwargs)
        k = len(self._plates)
        for c in self.structure.covariates:
            value = values.get(c.key)
            if value is None:
                value = _tensor_args(*self._setup_args)[c.key]
            value = torch.as_tensor(value).detach().to(torch.get_default_dtype())
            if any(c.in_plate):
                i = c.in_plate.index(True)
                plate = plates[self._plates[i].name]
                if value.shape[0] == plate.size and plate.subsample_size < plate.size:
                    value = value.index_select(0, plate._indices)
                rows = value.reshape(value.shape[0], -1)
                shape = [1] * k + [c.features]
                shape[i] = rows.shape[0]
                grid = rows.reshape(shape)
            else:
                grid = value.reshape([1] * k + [c.features])
            feats[c.name] = self._standardize(c.name, grid)

    def _summaries(self, feats: dict[str, torch.Tensor]) -> None:
        k = len(self._plates)
        for s, embed in zip(self.structure.summaries, self.embeds, strict=True):
            rows = _cat([feats[s.site], *(feats[c] for c in s.covariates)])
            dims = tuple(i - k - 1 for i in s.reduce)
            count = math.prod(rows.shape[d] for d in dims)
            n = rows.new_full((*rows.mean(dims, keepdim=True).shape[:-1], 1), count)
            feats[s.name] = torch.cat(
                [rows.mean(dims, keepdim=True), embed(rows, dims), (n / s.setup_count).log()],
                -1,
            )


class _FixedLatents(Messenger):
    """Latent draws replaced by a fixed point of their support (``biject_to(support)(0)``):
    the guide's hidden model runs read only observations and plate sizes, so they need no
    random numbers (and a traced ``JitTrace_ELBO`` graph stays the same across calls)."""

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["is_observed"] or msg["value"] is not None or site_is_subsample(msg):
            return
        fn = msg["fn"]
        try:
            t = biject_to(fn.support)
        except NotImplementedError:
            return  # sampled as usual
        shape = t.inverse_shape(fn.shape())
        msg["value"] = t(torch.zeros(shape, dtype=torch.get_default_dtype()))
        msg["done"] = True


def _tensor_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[Any, torch.Tensor]:
    out: dict[Any, torch.Tensor] = {}
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            out[("arg", i)] = a
    for k, v in kwargs.items():
        if isinstance(v, torch.Tensor):
            out[("kwarg", k)] = v
    return out


def _cat(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate feature blocks on the last dim, broadcasting their other dims."""
    if len(parts) == 1:
        return parts[0]
    shapes = [p.shape[:-1] for p in parts]  # a list: a set's order would vary under jit
    if all(s == shapes[0] for s in shapes):
        return torch.cat(list(parts), dim=-1)
    batch = torch.broadcast_shapes(*shapes)
    return torch.cat([p.expand(*batch, p.shape[-1]) for p in parts], dim=-1)


def _cache_key(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Identity of the call's arguments; a tensor's version counter is part of it, so
    in-place updates are seen."""

    def ident(a: Any) -> tuple[int, int | None]:
        return id(a), getattr(a, "_version", None)

    return tuple(map(ident, args)) + tuple((k, ident(v)) for k, v in sorted(kwargs.items()))
