r"""AutoFaithfulMADE for NumPyro: an amortized guide that inverts the model's graph faithfully.

The guide factorizes over the faithful inverse :math:`H` of the model (NaMI by default):

.. math:: q(z \mid x) = \prod_v q(z_v \mid \mathrm{Pa}_H(z_v)),\qquad
          u_v \sim \mathcal{N}\big(\mu_v,\ C_v \mathrm{diag}(\sigma_v^2) C_v^\top\big),\quad
          z_v = T_v(u_v),

with :math:`T_v` = ``biject_to(support of v)``, :math:`C_v` a learned unit lower-triangular
matrix (vector sites), and :math:`(\mu_v, \sigma_v)` the outputs of a DAG-masked MADE
(Webb et al. 2018, "Faithful inversion of generative models for effective amortized
inference", NeurIPS) whose masks let them see exactly the features of
:math:`\mathrm{Pa}_H(z_v)`: observed values of the current call, latents sampled earlier (in
unconstrained space) and plate summaries (see :mod:`faithful_guides.autoguides.made_plan`).
One network pass samples one topological generation of :math:`H`. Sites in a plate share
one per-row network (cost linear in the rows, parameter shapes independent of subsampling).

Observed values are read from the current call: the model runs once, hidden from outer
handlers, with the plate subsample indices the guide chose, so a trained guide gives the
posterior of new data without further optimization.

Example:
    >>> from numpyro.infer import SVI, Trace_ELBO
    >>> from numpyro.optim import Adam
    >>> guide = AutoFaithfulMADE(model)  # doctest: +SKIP
    >>> svi = SVI(model, guide, Adam(1e-2), Trace_ELBO())  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions.transforms import ComposeTransform, ReshapeTransform, Transform
from numpyro.infer.autoguide import AutoGuide
from numpyro.infer.initialization import init_to_uniform

from faithful_guides.autoguides.checks import (
    check_made_options,
    check_observed_shape,
    missing_observation,
)
from faithful_guides.autoguides.made_plan import (
    Block,
    GroupPlan,
    MadePlan,
    build_made_plan,
    default_hidden,
)
from faithful_guides.backends.numpyro.nets import (
    MadeSteps,
    init_made,
    init_mlp,
    mlp_forward,
    unit_lower,
)
from faithful_guides.backends.numpyro.tracer import trace_model
from faithful_guides.graph.model_graph import ModelGraph

__all__ = ["AutoFaithfulMADE"]

Array = jax.Array


@dataclass(frozen=True)
class _Latent:
    """How one latent site is sampled: ``rows`` leading batch dims (local sites: the plate
    dim then size-1 dims), then ``row_shape`` unconstrained values of ``size`` features."""

    name: str
    local: bool
    support: Any
    nb: int
    row_shape: tuple[int, ...]
    size: int

    def transform(self) -> Transform:
        t = dist.biject_to(self.support)
        if not self.row_shape:
            return t
        return ComposeTransform([ReshapeTransform(self.row_shape, (self.size,)), t])


class AutoFaithfulMADE(AutoGuide):
    """Amortized guide with the faithful inverse structure, one DAG-masked MADE per group.

    Args:
        model: a NumPyro model whose observed sites get their values from its arguments.
        structure: ``"nami"`` (minimal faithful inverse), ``"heuristic"`` or ``"full"``.
        hidden_dims: hidden widths of each MADE; default two layers of
            ``max(32, 2 * F)``, ``F`` the number of distinct input features any output sees.
        summary_dim: embedding width of each plate summary.
        init_loc_fn: per-site init strategy (the loc biases start there; local sites start
            at the mean over the rows).
        init_scale: initial scale of every unconstrained site.
        create_plates: as in :class:`numpyro.infer.autoguide.AutoNormal` (subsampling).
        prefix: prefix of the parameter names.

    Methods ``median(params, *args)``, ``quantiles(params, quantiles, *args)`` and
    ``sample_posterior(rng_key, params, *args, sample_shape=())`` take the model's
    arguments (the guide is amortized); without them they use the arguments of setup.

    Example:
        >>> guide = AutoFaithfulMADE(model, hidden_dims=(64, 64))  # doctest: +SKIP
        >>> svi = SVI(model, guide, Adam(1e-2), Trace_ELBO())  # doctest: +SKIP
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
        prefix: str = "auto",
    ) -> None:
        init_scale, hidden_dims, summary_dim = check_made_options(
            init_scale=init_scale, hidden_dims=hidden_dims, summary_dim=summary_dim
        )
        self.structure = structure
        self.hidden_dims = hidden_dims
        self.summary_dim = summary_dim
        self._init_scale = init_scale
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, create_plates=create_plates)

    # ---------------------------------------------------------------- setup
    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        with handlers.block():  # discrete latents raise here
            graph = trace_model(self.model, *args, **kwargs)
        super()._setup_prototype(*args, **kwargs)
        self._graph, self._args = graph, (args, kwargs)
        self._latents = {n: self._latent(n, s) for n, s in self._sample_sites(False)}
        if set(self._latents) != set(graph.latent):
            raise ValueError(
                f"The traced latent sites {sorted(graph.latent)} differ from the sites "
                f"{sorted(self._latents)} of NumPyro's prototype trace: the model's "
                "structure must not depend on the random draws."
            )
        for _, site in self._sample_sites(True):  # guide plates replay observed rows too
            for f in site["cond_indep_stack"]:
                self._prototype_frames.setdefault(f.name, f)
        sizes = {n: lat.size for n, lat in self._latents.items()}
        sizes.update({n: _observed_size(graph, n) for n in graph.observed})
        hidden = self.hidden_dims or default_hidden(
            graph, sizes=sizes, structure=self.structure, summary_dim=self.summary_dim
        )
        self._plan = build_made_plan(
            graph, sizes=sizes, hidden=hidden, structure=self.structure,
            summary_dim=self.summary_dim,
        )  # fmt: skip
        key = numpyro.prng_key()
        self._init_params = self._initial_params(jax.random.PRNGKey(0) if key is None else key)

    def _sample_sites(self, observed: bool) -> list[tuple[str, dict[str, Any]]]:
        return [
            (n, s)
            for n, s in self.prototype_trace.items()
            if s["type"] == "sample" and bool(s["is_observed"]) == observed
        ]

    def _latent(self, name: str, site: dict[str, Any]) -> _Latent:
        fn, frames = site["fn"], site["cond_indep_stack"]
        batch = tuple(fn.batch_shape)
        support = fn.support
        with handlers.block():
            shape = tuple(dist.biject_to(support).inverse_shape(tuple(fn.shape())))
        if not frames:
            return _Latent(name, False, support, 0, shape, math.prod(shape))
        f = frames[0]
        if len(batch) != -f.dim or any(b != 1 for b in batch[1:]):
            raise ValueError(
                f"Site {name!r}: AutoFaithfulMADE expects plate {f.name!r} (dim={f.dim}) to be "
                f"the leftmost batch dim and the others to be 1, found batch shape {batch}. "
                "Move non-plate batch dims into the event with .to_event()."
            )
        row = shape[len(batch) :]
        return _Latent(name, True, support, len(batch), row, math.prod(row))

    def _initial_params(self, key: jax.Array) -> dict[str, dict[str, Array]]:
        plan, out = self._plan, {}
        keys = iter(jax.random.split(key, 2 + len(plan.summaries)))
        for group, g in (("global", plan.global_), ("local", plan.local)):
            k = next(keys)
            if g is not None and g.outputs:
                locs = [self._init_loc(b.name) for b in g.outputs]
                out[group] = init_made(k, g.masks, np.concatenate(locs), self._init_scale)
        for i, s in enumerate(plan.summaries):
            width = max(32, 2 * s.in_size)
            out[f"summary{i}"] = init_mlp(next(keys), (s.in_size, width, self.summary_dim))
        tril = {n: jnp.zeros((v.size, v.size)) for n, v in self._latents.items() if v.size > 1}
        if tril:
            out["tril"] = tril
        return out

    def _init_loc(self, name: str) -> np.ndarray:
        u = np.asarray(self._init_locs[name], dtype=np.float32)
        if self._latents[name].local:
            u = u.mean(axis=0)
        return u.reshape(-1)

    # ---------------------------------------------------------------- running
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """Sample every latent given this call's observations (``{site: value}``).

        Also accepts ``observations={site: value}`` (as Pyro's guide does for ``CSIS``):
        the observed values to condition on instead of those of the model's arguments;
        :class:`~faithful_guides.numpyro.ForwardKL` passes the model's own draws there.
        """
        observations = kwargs.pop("observations", None)
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        params = self._params()
        obs = self._observations(plates, args, kwargs, observations)
        return self._run(params, obs, plates, median=False)

    def _params(self) -> dict[str, dict[str, Array]]:
        return {
            group: {k: numpyro.param(f"{self.prefix}_made_{group}_{k}", v) for k, v in ps.items()}
            for group, ps in self._init_params.items()
        }

    def _observations(
        self,
        plates: dict[str, Any],
        args: Any,
        kwargs: Any,
        given: dict[str, Any] | None = None,
    ) -> dict[str, Array]:
        """Observed features of this call: global ``(size,)``, local ``(rows, size)``."""
        values = {n: given[n] for n in self._graph.observed if given and n in given}
        if len(values) < len(self._graph.observed):
            values.update(self._run_model_for_observations(plates, args, kwargs, set(values)))
        feats = {}
        for name, value in values.items():
            proto = self.prototype_trace[name]
            value, expected = jnp.asarray(value), tuple(proto["fn"].shape())
            frames = proto["cond_indep_stack"]
            axis = len(expected) - len(proto["fn"].event_shape) + frames[0].dim if frames else None
            check_observed_shape(name, tuple(value.shape), expected, axis)
            if frames:
                value = jnp.moveaxis(value, axis, 0)
                feats[name] = value.reshape(value.shape[0], -1)
            else:
                feats[name] = value.reshape(-1)
        return feats

    def _run_model_for_observations(
        self, plates: dict[str, Any], args: Any, kwargs: Any, skip: set[str]
    ) -> dict[str, Array]:
        """The observed values of a hidden model run that replays the guide's subsample."""
        rows = {n: {"type": "plate", "value": p._indices} for n, p in plates.items()}
        with handlers.block():
            run = handlers.replay(handlers.seed(self.model, rng_seed=0), trace=rows)
            tr = handlers.trace(run).get_trace(*args, **kwargs)
        values = {}
        for name in self._graph.observed:
            if name in skip:
                continue
            site = tr.get(name)
            if site is None or not site["is_observed"]:
                raise missing_observation(name, "no site" if site is None else "a latent site")
            value, shape = jnp.asarray(site["value"]), tuple(site["fn"].shape())
            if _broadcasts(value.shape, shape):  # else _observations names the site
                value = jnp.broadcast_to(value, shape)
            values[name] = value
        return values

    def _run(
        self, params: dict[str, Any], obs: dict[str, Array], plates: dict[str, Any], median: bool
    ) -> dict[str, Array]:
        plan, feats, result = self._plan, dict(obs), {}
        for i, s in enumerate(plan.summaries):
            rows = jnp.concatenate([feats[n] for n in s.sites], axis=-1)
            embedded = mlp_forward(params[f"summary{i}"], rows)
            feats[s.name] = jnp.concatenate([rows.mean(axis=0), embedded.mean(axis=0)], -1)
        self._pass(plan.global_, "global", params, feats, result, median, None)
        if plan.local is not None:
            plate = plates[plan.local.plate.name]
            with plate:
                self._pass(plan.local, "local", params, feats, result, median, plate.subsample_size)
        return result

    def _pass(
        self,
        g: GroupPlan,
        group: str,
        params: dict[str, Any],
        feats: dict[str, Array],
        result: dict[str, Array],
        median: bool,
        rows: int | None,
    ) -> None:
        """Sample the group generation by generation (:class:`MadeSteps`)."""
        if not g.outputs:  # a group without latents
            return
        sched = g.schedule
        known = [self._feature(feats, b, rows) for b in sched.known]
        x = jnp.concatenate(known, axis=-1) if known else None
        steps = MadeSteps(params[group], g.masks, g.skip, sched, x)
        for sites in sched.sites:
            loc, scale = steps.outputs()
            us = []
            for name, offset, size in sites:
                sl = slice(offset, offset + size)
                result[name], feats[name] = self._emit(
                    name, loc[..., sl], scale[..., sl], params, median
                )
                us.append(feats[name])
            steps.update(jnp.concatenate(us, axis=-1) if len(us) > 1 else us[0])

    def _feature(self, feats: dict[str, Array], b: Block, rows: int | None) -> Array:
        x = feats[b.name]
        if rows is None or x.ndim == 2:
            return x
        return jnp.broadcast_to(x, (rows, b.size))

    def _emit(
        self, name: str, loc: Array, scale: Array, params: dict[str, Any], median: bool
    ) -> tuple[Array, Array]:
        """Sample (or take the median of) one site; return its value and its features."""
        lat = self._latents[name]
        lead = loc.shape[:-1] + (1,) * max(lat.nb - 1, 0)
        loc, scale = loc.reshape((*lead, lat.size)), scale.reshape((*lead, lat.size))
        t = lat.transform()
        if not lat.row_shape:
            loc, scale = loc[..., 0], scale[..., 0]
            base = dist.Normal(loc, scale)
        else:
            raw = params.get("tril", {}).get(name)
            c = jnp.eye(1) if raw is None else unit_lower(raw)
            base = dist.MultivariateNormal(loc, scale_tril=c * scale[..., None, :])
        if median:
            value, u = t(loc), loc
        else:
            value = numpyro.sample(name, dist.TransformedDistribution(base, t))
            u = t.inv(value)
        return value, u.reshape((*loc.shape[:1], -1) if lat.local else (-1,))

    # ---------------------------------------------------------------- posterior helpers
    def _defaults(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        return (args, kwargs) if args or kwargs else self._args

    def sample_posterior(
        self, rng_key: Array, params: dict[str, Any], *args: Any, sample_shape: tuple = (), **kwargs
    ) -> dict[str, Array]:
        """Draws from the guide for the observations in ``args`` (default: setup's)."""
        args, kwargs = self._defaults(args, kwargs)

        def one(key: Array) -> dict[str, Array]:
            with handlers.block():
                return handlers.seed(handlers.substitute(self, data=params), key)(*args, **kwargs)

        n = math.prod(sample_shape)
        if not sample_shape:
            return one(rng_key)
        out = jax.vmap(one)(jax.random.split(rng_key, n))
        return {k: v.reshape(tuple(sample_shape) + v.shape[1:]) for k, v in out.items()}

    def median(self, params: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Array]:
        """The loc path through the generations (no noise), in constrained space; also
        accepts ``observations=`` as :meth:`__call__` does."""
        given = kwargs.pop("observations", None)
        args, kwargs = self._defaults(args, kwargs)

        def run() -> dict[str, Array]:
            plates = self._create_plates(*args, **kwargs)
            obs = self._observations(plates, args, kwargs, given)
            return self._run(self._params(), obs, plates, True)

        with handlers.block():
            return handlers.seed(handlers.substitute(run, data=params), rng_seed=0)()

    def quantiles(
        self, params: dict[str, Any], quantiles: Any, *args: Any, num_samples: int = 1000, **kwargs
    ) -> dict[str, Array]:
        """Monte Carlo quantiles (``num_samples`` draws), shaped ``(len(quantiles), ...)``."""
        draws = self.sample_posterior(
            jax.random.PRNGKey(0), params, *args, sample_shape=(num_samples,), **kwargs
        )
        q = jnp.asarray(quantiles)
        return {k: jnp.quantile(v, q, axis=0) for k, v in draws.items()}

    @property
    def graph(self) -> ModelGraph:
        """The traced :class:`~faithful_guides.ModelGraph` of the model (set up at the first
        call), as the Pyro guide's ``graph`` attribute."""
        return self._graph

    @property
    def plan(self) -> MadePlan:
        """The :class:`~faithful_guides.autoguides.made_plan.MadePlan` built at setup."""
        return self._plan


def _observed_size(graph: ModelGraph, name: str) -> int:
    site = graph.sites[name]
    rows = site.plates[0].subsample_size if site.plates else 1
    return math.prod(site.shape) // rows


def _broadcasts(shape: tuple[int, ...], to: tuple[int, ...]) -> bool:
    """Whether an array shaped ``shape`` broadcasts to ``to``."""
    try:
        return np.broadcast_shapes(shape, to) == to
    except ValueError:
        return False
