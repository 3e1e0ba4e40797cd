r"""``FaithfulGuide``: the NumPyro base of every faithful guide family.

The counterpart of :mod:`faithful_guides.backends.pyro.guide`, with the same semantics: it
owns set-up (trace, layouts on the plate grid, covariates, the
:class:`~faithful_guides.autoguides.structure.GuideStructure`, standardization, free
parameters), the per-call inputs (a hidden model run for observations and plate sizes,
covariates, summaries), plates, constrained emission, ``median``, ``quantiles``,
``sample_posterior`` (with deterministic sites) and ``log_prob``. A family implements
``_build(key) -> {name: initial array}`` and ``_sample(params, feats, plates, median)``.

Each latent is Gaussian in unconstrained space, pushed through ``biject_to(support)``:

.. math:: u_v \sim \mathcal{N}\big(m_v + \mu_v,\ (e^{s_v + b\tanh(\rho_v / b)})^2\big)

with free parameters :math:`m_v, s_v` and the family's corrections :math:`\mu_v, \rho_v`.
Every parameter, the input statistics included (held fixed by ``stop_gradient``), is a
``numpyro.param`` named after the guide's ``prefix`` and a site, so params pickle whole
and two guides in one ``AutoGuideList`` never share a name. Calls without observed data
condition on the observations recorded at set-up.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions.transforms import (
    ComposeTransform,
    IndependentTransform,
    ReshapeTransform,
)
from numpyro.infer.autoguide import AutoGuide
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import helpful_support_errors

from faithful_guides.autoguides.defaults import LOG_SCALE_BOUND, MAX_JOINT, STANDARDIZE_DRAWS
from faithful_guides.autoguides.errors import (
    no_bijection_error,
)
from faithful_guides.autoguides.inputs import find_covariates, robust_stats
from faithful_guides.autoguides.layout import SiteLayout
from faithful_guides.autoguides.options import check_options
from faithful_guides.autoguides.structure import GuideStructure, build_structure, model_plates
from faithful_guides.backends.numpyro.forward_kl import _Uncondition
from faithful_guides.backends.numpyro.inputs import GuideInputs, _array_args
from faithful_guides.backends.numpyro.nets import Packed, init_mlp, unit_lower
from faithful_guides.backends.numpyro.tracer import trace_model
from faithful_guides.graph.model_graph import ModelGraph

__all__ = ["FaithfulGuide"]

Array = jax.Array


class FaithfulGuide(GuideInputs, AutoGuide):
    """Base class of the faithful guides (see the module docstring).

    Args:
        model: a NumPyro model with continuous latents.
        structure: ``"nami"``, ``"heuristic"`` or ``"full"``.
        hidden_dims: hidden widths of the family's networks (default: the family's).
        summary_dim: width of each plate summary's learned embedding.
        init_loc_fn: per-site initialization, as in ``AutoNormal``.
        init_scale: initial scale of every latent in unconstrained space.
        create_plates: as in ``AutoNormal`` (subsampling).
        amortize_subsampled: whether global latents read summaries of subsampled plates
            (see the Pyro guide; off by default).
        prefix: prefix of the parameter names.
        forward_mode_differentiation: as in NumPyro's ``AutoGuide`` (set-up only).
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        structure: str = "nami",
        hidden_dims: Sequence[int] | None = None,
        summary_dim: int = 16,
        init_loc_fn: Callable[..., Any] = init_to_uniform,
        init_scale: float = 0.1,
        create_plates: Callable[..., Any] | None = None,
        amortize_subsampled: bool = False,
        prefix: str = "auto",
        forward_mode_differentiation: bool = False,
    ) -> None:
        self._init_scale, self.hidden_dims, self.summary_dim = check_options(
            init_scale=init_scale,
            hidden_dims=hidden_dims,
            summary_dim=summary_dim,
            structure=structure,
        )
        self.structure_name = structure
        self.amortize_subsampled = bool(amortize_subsampled)
        self.structure: GuideStructure | None = None
        super().__init__(
            model,
            prefix=prefix,
            init_loc_fn=init_loc_fn,
            create_plates=create_plates,
            forward_mode_differentiation=forward_mode_differentiation,
        )

    # ------------------------------------------------------------------ set-up
    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        with handlers.block():  # discrete latents raise here
            graph = trace_model(self.model, *args, **kwargs)
        super()._setup_prototype(*args, **kwargs)
        self._graph, self._args = graph, (args, kwargs)
        self._plates = model_plates(graph)
        trace = self.prototype_trace
        latents = [n for n, s in trace.items() if s["type"] == "sample" and not s["is_observed"]]
        if set(latents) != set(graph.latent):
            raise ValueError(
                f"The traced latent sites {sorted(graph.latent)} differ from the sites "
                f"{sorted(latents)} of NumPyro's prototype trace: the model's structure must "
                "not depend on the random draws."
            )
        for site in trace.values():  # guide plates replay observed rows too
            if site["type"] == "sample":
                for f in site["cond_indep_stack"]:
                    self._prototype_frames.setdefault(f.name, f)
        self.layouts = {n: self._layout(n) for n in graph.sites}
        observed = [np.asarray(trace[n]["value"]) for n in graph.observed]
        candidates = {k: np.asarray(v) for k, v in _array_args(args, kwargs).items()}
        obs_plates = {p.name for n in graph.observed for p in graph.sites[n].plates}
        indices = {
            p.name: np.asarray(trace[p.name]["value"]) for p in self._plates if p.name in trace
        }
        covs = find_covariates(candidates, self._plates, observed, obs_plates, indices)
        self.structure = build_structure(
            graph,
            self.layouts,
            structure=self.structure_name,
            summary_dim=self.summary_dim,
            covariates=covs,
            amortize_subsampled=self.amortize_subsampled,
            guide_name=type(self).__name__,
        )
        key = numpyro.prng_key()
        key = jax.random.PRNGKey(0) if key is None else key
        self._init_params: dict[str, Array] = {}
        self._standardization(args, kwargs)
        self._free_parameters()
        keys = jax.random.split(key, len(self.structure.summaries) + 1)
        self._summary_packs: dict[str, Packed] = {}
        for k, s in zip(keys[1:], self.structure.summaries, strict=False):
            net = init_mlp(k, (s.in_size, max(32, 2 * s.in_size), s.dim))
            self._summary_packs[s.name] = Packed(net)
            self._init_params[f"{self.prefix}_{s.name}"] = self._summary_packs[s.name].flat(net)
        self._init_params.update(self._build(keys[0]))

    def _layout(self, name: str) -> SiteLayout:
        site = self._graph.sites[name]
        shape = site.shape
        if not site.observed:
            fn = self.prototype_trace[name]["fn"]
            try:
                with helpful_support_errors(self.prototype_trace[name]):
                    transform = dist.biject_to(fn.support)
            except NotImplementedError as e:
                raise no_bijection_error(name, fn.support) from e
            shape = tuple(transform.inverse_shape(tuple(site.shape)))
        names = {p.name for p in site.plates}
        return SiteLayout(
            name,
            tuple(shape),
            len(site.batch_shape),
            tuple(p.dim for p in self._plates),
            tuple(p.name in names for p in self._plates),
        )

    def _joint(self, lay: SiteLayout) -> bool:
        return 1 < lay.features <= MAX_JOINT and not lay.has_free_batch

    def _standardization(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Fixed input statistics from the set-up data and prior draws (see Pyro's)."""
        model = _Uncondition(self.model)
        self._stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        runs = [self.prototype_trace]
        with handlers.block():
            for i in range(STANDARDIZE_DRAWS):
                try:
                    runs.append(handlers.trace(handlers.seed(model, i)).get_trace(*args, **kwargs))
                except NotImplementedError:  # a latent that cannot be sampled (ImproperUniform)
                    break
        self._setup_obs = {}
        for n, lay in self.layouts.items():
            rows = []
            for tr in runs:
                site = tr.get(n)
                if site is None or site["value"] is None:
                    continue
                try:
                    v = jnp.broadcast_to(jnp.asarray(site["value"]), tuple(site["fn"].shape()))
                    if n not in self._graph.observed:
                        v = dist.biject_to(site["fn"].support).inv(v)
                    grid = lay.to_grid(v, jnp)
                except (ValueError, TypeError):  # a run whose shapes differ
                    continue
                if grid.shape[-1]:  # a factor site has no features
                    rows.append(np.asarray(grid).reshape(-1, grid.shape[-1]))
            width = lay.features
            self._stats_param(n, np.concatenate(rows) if rows else np.zeros((1, width)))
        for c in self.structure.covariates:
            value = np.asarray(_array_args(args, kwargs)[c.key], dtype=np.float32)
            self._stats_param(c.name, value.reshape(value.shape[0] if any(c.in_plate) else 1, -1))
        for n in self._graph.observed:
            site = self.prototype_trace[n]
            v = jnp.broadcast_to(jnp.asarray(site["value"]), tuple(site["fn"].shape()))
            center, scale = self._stats_values(n)
            self._setup_obs[n] = (self.layouts[n].to_grid(v, jnp) - center) / scale
        self._pack_stats()

    def _stats_param(self, name: str, rows: np.ndarray) -> None:
        self._stats[name] = robust_stats(rows)

    def _stats_values(self, name: str) -> tuple[Array, Array]:
        center, scale = self._stats[name]
        return jnp.asarray(center), jnp.asarray(scale)

    def _pack_stats(self) -> None:
        """All input statistics in one parameter ``{prefix}_input_stats`` (rows: centers,
        scales), held fixed by ``stop_gradient``: saved with the params, one optimizer
        update a step instead of two per input."""
        self._stat_slices, offset, parts = {}, 0, []
        for name, (center, scale) in self._stats.items():
            self._stat_slices[name] = slice(offset, offset + len(center))
            offset += len(center)
            parts.append(np.stack([center, scale]))
        packed = np.concatenate(parts, axis=1) if parts else np.zeros((2, 0), np.float32)
        self._init_params[f"{self.prefix}_input_stats"] = jnp.asarray(packed)

    def _free_parameters(self) -> None:
        self._per_row: set[str] = set()
        full = tuple(p.size for p in self._plates)
        for g in self.structure.groups:
            for name in g.latents:
                lay = self.layouts[name]
                site = self.prototype_trace[name]
                u = jnp.asarray(self._init_locs[name])
                grid = lay.to_grid(u, jnp)
                if name in g.free_rows:
                    self._per_row.add(name)
                    if grid.shape[:-1] == lay.grid_shape(full):
                        loc = grid
                    else:
                        mean = grid.reshape(-1, lay.features).mean(0)
                        loc = jnp.broadcast_to(mean, (*lay.grid_shape(full), lay.features))
                else:
                    loc = grid.reshape(-1, lay.features).mean(0)
                del site
                self._init_params[f"{self.prefix}_{name}_loc"] = loc
                self._init_params[f"{self.prefix}_{name}_log_scale"] = jnp.full(
                    loc.shape, math.log(self._init_scale)
                )
                if self._joint(lay):
                    raw = jnp.zeros((lay.features, lay.features))
                    self._init_params[f"{self.prefix}_{name}_coupling"] = raw

    # ------------------------------------------------------------------ family hooks
    def _build(self, key: Array) -> dict[str, Array]:  # pragma: no cover
        raise TypeError(f"{type(self).__name__} must define _build()")

    def _sample(
        self, params: Mapping[str, Array], feats: dict[str, Array], plates: Any, median: bool
    ) -> dict[str, Array]:  # pragma: no cover
        raise TypeError(f"{type(self).__name__} must define _sample()")

    def _quantile_roots(self) -> frozenset[str]:
        """Latents whose guide conditional is their marginal (exact quantiles)."""
        return self.structure.roots()

    # ------------------------------------------------------------------ calls
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """Sample every latent given this call's observations (``{site: value}``); also
        accepts ``observations={site: value}`` (as Pyro's guide does for ``CSIS``)."""
        given = kwargs.pop("observations", None)
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        params = self._params()
        plates, feats = self._inputs(params, args, kwargs, given)
        return self._sample(params, feats, plates, median=False)

    def _params(self) -> dict[str, Array]:
        out = {k: numpyro.param(k, v) for k, v in self._init_params.items()}
        stats = jax.lax.stop_gradient(out[f"{self.prefix}_input_stats"])
        for name, sl in self._stat_slices.items():
            out[f"{self.prefix}_input[{name}]_center"] = stats[0, sl]
            out[f"{self.prefix}_input[{name}]_scale"] = stats[1, sl]
        return out

    def _defaults(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        return (args, kwargs) if args or kwargs else self._args

    def sample_posterior(
        self, rng_key: Array, params: dict[str, Any], *args: Any, sample_shape: tuple = (), **kwargs
    ) -> dict[str, Array]:
        """Draws from the guide for the observations in ``args`` (default: set-up's), with
        the model's deterministic sites, as ``AutoNormal`` returns them."""
        args, kwargs = self._defaults(args, kwargs)

        def one(key: Array) -> dict[str, Array]:
            k1, k2 = jax.random.split(key)
            with handlers.block():
                latents = handlers.seed(handlers.substitute(self, data=params), k1)(*args, **kwargs)
            return {**latents, **self._deterministic(params, latents, k2, args, kwargs)}

        if not sample_shape:
            return one(rng_key)
        n = math.prod(sample_shape)
        out = jax.vmap(one)(jax.random.split(rng_key, n))
        return {k: v.reshape(tuple(sample_shape) + v.shape[1:]) for k, v in out.items()}

    def _deterministic(
        self, params: Any, latents: dict[str, Array], key: Array, args: Any, kwargs: Any
    ) -> dict[str, Array]:
        kwargs = {k: v for k, v in kwargs.items() if k != "observations"}
        model = handlers.substitute(handlers.condition(self.model, data=latents), data=params)
        with handlers.block():
            tr = handlers.trace(handlers.seed(model, key)).get_trace(*args, **kwargs)
        return {n: s["value"] for n, s in tr.items() if s["type"] == "deterministic"}

    def median(self, params: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Array]:
        """Each latent at its conditional median given its parents' medians (constrained),
        with the deterministic sites; also accepts ``observations=``."""
        given = kwargs.pop("observations", None)
        args, kwargs = self._defaults(args, kwargs)

        def run() -> dict[str, Array]:
            ps = self._params()
            plates, feats = self._inputs(ps, args, kwargs, given)
            return self._sample(ps, feats, plates, median=True)

        with handlers.block():
            latents = handlers.seed(handlers.substitute(run, data=params), rng_seed=0)()
        return {
            **latents,
            **self._deterministic(params, latents, jax.random.PRNGKey(0), args, kwargs),
        }

    def quantiles(
        self, params: dict[str, Any], quantiles: Any, *args: Any, num_samples: int = 1000, **kwargs
    ) -> dict[str, Array]:
        """Quantiles ``(len(quantiles), ...)`` of each latent's marginal (and of the
        deterministic sites): exact for latents with no latent parents and an elementwise
        support transform, Monte Carlo (``num_samples`` draws) for the others."""
        draws = self.sample_posterior(
            jax.random.PRNGKey(0), params, *args, sample_shape=(num_samples,), **kwargs
        )
        q = jnp.asarray(quantiles)
        out = {k: jnp.quantile(v, q, axis=0) for k, v in draws.items()}
        out.update(self._exact_quantiles(params, q, args, kwargs))
        return out

    def _exact_quantiles(
        self, params: dict[str, Any], q: Array, args: Any, kwargs: dict[str, Any]
    ) -> dict[str, Array]:
        given = kwargs.pop("observations", None)
        args, kwargs = self._defaults(args, kwargs)
        record: dict[str, tuple[Array, Array, Array | None, Any]] = {}

        def run() -> None:
            ps = self._params()
            plates, feats = self._inputs(ps, args, kwargs, given)
            self._sample(ps, feats, plates, median=True)

        self._record = record
        try:
            with handlers.block():
                handlers.seed(handlers.substitute(run, data=params), rng_seed=0)()
        finally:
            self._record = None
        z = jax.scipy.stats.norm.ppf(q)
        out = {}
        for name in self._quantile_roots():
            if name not in record or not _elementwise(record[name][3]):
                continue
            loc, scale, unit, t = record[name]
            sd = scale if unit is None else jnp.sqrt(((unit * scale[..., None, :]) ** 2).sum(-1))
            out[name] = t(loc + z.reshape((-1,) + (1,) * loc.ndim) * sd)
        return out

    def log_prob(
        self, params: dict[str, Any], latents: Mapping[str, Array], *args: Any, **kwargs: Any
    ) -> Array:
        r""":math:`\log q(z \mid x)` of the given latents (constrained values), summed with
        plate scaling; ``observations=`` as in :meth:`__call__`."""
        run = handlers.condition(handlers.substitute(self, data=params), data=dict(latents))
        with handlers.block():
            tr = handlers.trace(handlers.seed(run, 0)).get_trace(*args, **kwargs)
        total = jnp.zeros(())
        for site in tr.values():
            if site["type"] == "sample":
                lp = jnp.sum(site["fn"].log_prob(site["value"]))
                total = total + (lp if site["scale"] is None else site["scale"] * lp)
        return total

    @property
    def graph(self) -> ModelGraph:
        """The traced :class:`~faithful_guides.ModelGraph` of the model."""
        return self._graph

    # ------------------------------------------------------------------ emission
    def _block(self, b: Any, source: Mapping[str, Array]) -> Array:
        """The features of input block ``b`` from ``source``, averaged over the grid axes
        ``b.reduce`` (a finer site read by a coarser group)."""
        t = source[b.name]
        if b.reduce:
            k = len(self._plates)
            t = t.mean(tuple(i - k - 1 for i in b.reduce), keepdims=True)
        return t

    def _group_plates(self, in_plate: tuple[bool, ...], plates: Mapping[str, Any]) -> Any:
        stack = contextlib.ExitStack()
        for p, inside in zip(self._plates, in_plate, strict=True):
            if inside:
                stack.enter_context(plates[p.name])
        return stack

    def _free(self, params: Mapping[str, Array], kind: str, name: str, plates: Any) -> Array:
        param = params[f"{self.prefix}_{name}_{kind}"]
        if name not in self._per_row:
            return param
        k = len(self._plates)
        for i, p in enumerate(self._plates):
            if self.layouts[name].in_plate[i]:
                plate = plates[p.name]
                if param.shape[i] != plate.size:
                    raise ValueError(
                        f"Latent site {name!r} has per-row free parameters sized for "
                        f"{param.shape[i]} rows of plate {p.name!r} (its rows cannot be "
                        f"amortized), but this call has {plate.size}. Create a new guide for "
                        "a data set of another size."
                    )
                param = jnp.take(param, plate._indices, axis=i - k - 1)
        return param

    def _emit(
        self,
        params: Mapping[str, Array],
        name: str,
        mu: Array | None,
        rho: Array | None,
        plates: Any,
        median: bool,
        *,
        absolute: bool = False,
    ) -> tuple[Array, Array]:
        """Sample (or take the median of) one latent from its free parameters and the
        family's corrections, or (``absolute``) from the location ``mu`` and log-scale
        ``rho`` themselves; return its constrained value and standardized grid features."""
        lay = self.layouts[name]
        if absolute:
            loc, log_scale = mu, rho
        else:
            loc = self._free(params, "loc", name, plates)
            log_scale = self._free(params, "log_scale", name, plates)
        if mu is not None and not absolute:
            loc = loc + mu
            log_scale = log_scale + LOG_SCALE_BOUND * jnp.tanh(rho / LOG_SCALE_BOUND)
        scale = jnp.exp(log_scale)
        k = len(self._plates)
        if loc.ndim < k + 1:
            loc = loc.reshape((1,) * (k + 1 - loc.ndim) + tuple(loc.shape))
        cells = lay.grid_shape(tuple(plates[p.name].subsample_size for p in self._plates))
        loc = jnp.broadcast_to(loc, (*loc.shape[: loc.ndim - k - 1], *cells, lay.features))
        scale = jnp.broadcast_to(scale, loc.shape)
        joint = self._joint(lay)
        support = self.prototype_trace[name]["fn"].support
        t = dist.biject_to(support)
        flat = lay
        if joint:
            flat = lay.flattened()
            if lay.event != (lay.features,):
                t = ComposeTransform([ReshapeTransform(lay.event, (lay.features,)), t])
        loc_b, scale_b = flat.from_grid(loc, jnp), flat.from_grid(scale, jnp)
        if median:
            u = loc_b
            value = t(u)
            if getattr(self, "_record", None) is not None:  # exact quantiles
                unit = None
                if joint:
                    unit = unit_lower(params[f"{self.prefix}_{name}_coupling"])
                self._record[name] = (u, scale_b, unit, t)
        else:
            if joint:
                c = unit_lower(params[f"{self.prefix}_{name}_coupling"])
                base = dist.MultivariateNormal(loc_b, scale_tril=c * scale_b[..., None, :])
            else:
                base = dist.Normal(loc_b, scale_b).to_event(len(lay.event))
            value = numpyro.sample(name, dist.TransformedDistribution(base, t))
            u = t.inv(value)
        u = u.reshape(flat.unpadded_shape(tuple(u.shape)))
        return value, self._standardize(params, name, flat.to_grid(u, jnp))


def _elementwise(transform: Any) -> bool:
    """Whether a transform acts element by element (so quantiles commute with it)."""
    parts = transform.parts if isinstance(transform, ComposeTransform) else [transform]
    for t in parts:
        if isinstance(t, ReshapeTransform):
            continue
        while isinstance(t, IndependentTransform):
            t = t.base_transform
        if t.domain.event_dim != 0:
            return False
    return True
