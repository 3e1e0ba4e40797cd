r"""The NumPyro AutoIterative guide: iterative amortized inference (Marino, Yue and Mandt
2018) on the NumPyro core, the same guide as Pyro's.

Each latent is mean-field Gaussian in unconstrained space, :math:`\lambda_v = (\mu_v,
\log\sigma_v)` per plate cell, started at the free parameters or an encoder and refined
``num_steps`` times by gated updates reading the gradient of a one-draw ELBO estimate
(``jax.grad`` of the model's log density, run inside the guide) or the model's prediction
errors (:mod:`faithful_guides.autoguides.iterative_plan`). The networks' inputs are held
fixed (``stop_gradient``: no second derivatives); :math:`\lambda` flows through the residual
updates, so ``Trace_ELBO`` trains the start and every update on the final iterate, and
:class:`IterativeELBO` adds every intermediate iterate's ELBO.

Example:
    >>> from numpyro.infer import SVI
    >>> from numpyro.optim import Adam
    >>> guide = AutoIterative(model, num_steps=5)  # doctest: +SKIP
    >>> svi = SVI(model, guide, Adam(1e-3), IterativeELBO())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import Trace_ELBO
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import log_density

from faithful_guides.autoguides.defaults import LOG_SCALE_BOUND
from faithful_guides.autoguides.iterative_plan import (
    STATE_WIDTH,
    IterativePlan,
    build_iterative_plan,
    gradient_features,
    train_iterates,
    training_iterates,
)
from faithful_guides.autoguides.layout import SiteLayout
from faithful_guides.autoguides.options import check_iterative_options
from faithful_guides.backends.numpyro.guide import FaithfulGuide
from faithful_guides.backends.numpyro.inputs import _cat
from faithful_guides.backends.numpyro.nets import Packed, init_made, made_forward

__all__ = ["AutoIterative", "IterativeELBO"]

Array = jax.Array
Lam = dict[str, tuple[Array, Array]]


class AutoIterative(FaithfulGuide):
    r"""An amortized mean-field guide whose parameters refine themselves with the model's
    own gradients, :math:`\lambda^{(t+1)} = \lambda^{(t)} + (1 - g) \odot \Delta`, the
    update of latent :math:`v` reading only :math:`v` and its faithful-inverse neighbours;
    a drop-in for ``AutoNormal``.

    Args:
        model: a NumPyro model with continuous latents.
        num_steps: refinements ``T`` per call (may be raised after training).
        inputs: ``"gradient"`` or ``"error"`` (see the Pyro guide).
        observed_inputs: whether the updates also read the observations.
        init: ``"prior"`` (the learned free parameters) or ``"encoder"``.
        structure: ``"nami"``, ``"heuristic"`` or ``"full"``.
        hidden_dims: hidden widths of each update network (and encoder).
        summary_dim: embedding width of each plate summary.
        init_loc_fn: per-site init strategy, as in ``AutoNormal``.
        init_scale: initial scale of every unconstrained site.
        create_plates: as in ``AutoNormal`` (subsampling).
        amortize_subsampled: whether globals read summaries of subsampled plates.
        prefix: prefix of the parameter names.
        forward_mode_differentiation: as in NumPyro's ``AutoGuide`` (set-up only).

    The inner draws of ``median`` and of the exact quantiles use a fixed key.

    Example:
        >>> guide = AutoIterative(model, num_steps=5, init="encoder")  # doctest: +SKIP
    """

    _plan: IterativePlan | None = None

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        num_steps: int = 5,
        inputs: str = "gradient",
        observed_inputs: bool = True,
        init: str = "prior",
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
        self.num_steps, self.inputs, self.init, self.observed_inputs = check_iterative_options(
            num_steps=num_steps, inputs=inputs, init=init, observed_inputs=observed_inputs
        )
        super().__init__(
            model,
            structure=structure,
            hidden_dims=hidden_dims,
            summary_dim=summary_dim,
            init_loc_fn=init_loc_fn,
            init_scale=init_scale,
            create_plates=create_plates,
            amortize_subsampled=amortize_subsampled,
            prefix=prefix,
            forward_mode_differentiation=forward_mode_differentiation,
        )

    def _joint(self, lay: SiteLayout) -> bool:
        return False  # mean-field

    def _quantile_roots(self) -> frozenset[str]:
        return frozenset(self.structure.latents)

    @property
    def plan(self) -> IterativePlan:
        """The :class:`~faithful_guides.autoguides.iterative_plan.IterativePlan` of set-up."""
        return self._plan

    # ------------------------------------------------------------------ networks
    def _build(self, key: Array) -> dict[str, Array]:
        self._plan = build_iterative_plan(
            self.structure,
            self.layouts,
            inputs=self.inputs,
            observed_inputs=self.observed_inputs,
            encoder=self.init == "encoder",
            hidden=self.hidden_dims,
        )
        self._packs: dict[str, Packed] = {}
        out: dict[str, Array] = {}
        keys = iter(jax.random.split(key, 2 * len(self._plan.groups) + 1))

        def add(name: str, masks: Any, direct: bool) -> None:
            net = init_made(next(keys), masks, direct=direct)
            self._packs[name] = Packed(net)
            out[name] = self._packs[name].flat(net)

        for g in self._plan.groups:
            first = g.group.latents[0]
            if g.masks is not None:
                add(f"{self.prefix}_update[{first}]", g.masks, False)
            if g.encoder_masks is not None:
                add(f"{self.prefix}_encoder[{first}]", g.encoder_masks, True)
        long_sites = [n for g in self._plan.groups for n in g.elementwise]
        if long_sites:
            add(f"{self.prefix}_elementwise[{long_sites[0]}]", self._plan.elementwise_masks, False)
        self._elementwise_name = (
            f"{self.prefix}_elementwise[{long_sites[0]}]" if long_sites else None
        )
        return out

    def _net(self, params: Mapping[str, Array], name: str) -> dict[str, Array]:
        return self._packs[name].unpack(params[name])

    # ------------------------------------------------------------------ sampling
    def _sample(
        self, params: Mapping[str, Array], feats: dict[str, Array], plates: Any, median: bool
    ) -> dict[str, Array]:
        lam = self._initial(params, feats, plates)
        key = None if median else numpyro.prng_key()
        key = jax.random.PRNGKey(0) if key is None else key
        collect = training_iterates() and not median
        surrogate = None
        for _ in range(self.num_steps if lam else 0):  # a model without latents: nothing to refine
            key, sub = jax.random.split(key)
            fixed = jax.lax.stop_gradient(lam)
            state, grads = self._probe(params, fixed, plates, sub, need_grads=collect)
            if collect:  # d/dtheta of the iterate's ELBO, at zero value
                for n, (m, s) in lam.items():
                    gm, gs = grads[n]
                    term = ((m - fixed[n][0]) * gm).sum() + ((s - fixed[n][1]) * gs).sum()
                    surrogate = term if surrogate is None else surrogate + term
            lam = self._update(params, fixed if collect else lam, state, feats)
        if surrogate is not None:
            numpyro.factor(f"{self.prefix}_iterates[{self.structure.latents[0]}]", -surrogate)
        values: dict[str, Array] = {}
        for g in self._plan.groups:
            with self._group_plates(g.group.in_plate, plates):
                for name in g.group.latents:
                    loc, log_scale = lam[name]
                    values[name], feats[name] = self._emit(
                        params, name, loc, log_scale, plates, median, absolute=True
                    )
        return values

    def _initial(self, params: Mapping[str, Array], feats: Mapping[str, Array], plates: Any) -> Lam:
        """:math:`\\lambda^{(0)}`: the free parameters, plus the encoder's correction."""
        lam: Lam = {}
        for g in self._plan.groups:
            corr = None
            if g.encoder_masks is not None:
                data = _cat([self._block(b, feats) for b in g.inputs if b.kind == "data"])
                net = self._net(params, f"{self.prefix}_encoder[{g.group.latents[0]}]")
                corr = made_forward(net, g.encoder_masks, g.encoder_skip, data)
            for name in g.group.latents:
                lay = self.layouts[name]
                cells = lay.grid_shape(tuple(plates[p.name].subsample_size for p in self._plates))
                shape = (*cells, lay.features)
                loc = self._free(params, "loc", name, plates)
                log_scale = self._free(params, "log_scale", name, plates)
                if corr is not None and name not in g.elementwise:
                    out = next(b for b in g.outputs if b.name == name)
                    mu, rho = (c[..., out.offset : out.offset + out.size] for c in corr)
                    loc = loc + mu * self._scale(params, name)
                    log_scale = log_scale + LOG_SCALE_BOUND * jnp.tanh(rho / LOG_SCALE_BOUND)
                lam[name] = (_expand(loc, shape), _expand(log_scale, shape))
        return lam

    def _scale(self, params: Mapping[str, Array], name: str) -> Array:
        return params[f"{self.prefix}_input[{name}]_scale"]

    # ------------------------------------------------------------------ one refinement
    def _probe(
        self,
        params: Mapping[str, Array],
        lam: Lam,
        plates: Any,
        key: Array,
        need_grads: bool = False,
    ) -> tuple[dict[str, Array], dict[str, tuple[Array, Array]]]:
        r"""Run the model at one draw from :math:`q(\cdot \mid \lambda)`: the input
        features of each latent (and observed error), and each :math:`\lambda`'s ELBO
        gradient as the loss sees it (plate scales included; with ``inputs="error"`` only
        if ``need_grads``, for :class:`IterativeELBO`), held fixed."""
        keys = dict(zip(lam, jax.random.split(key, len(lam)), strict=True))
        eps = {n: jax.random.normal(keys[n], lam[n][0].shape) for n in lam}
        state: dict[str, Array] = {}
        grads: dict[str, tuple[Array, Array]] = {}
        if self.inputs == "gradient" or need_grads:
            grads = jax.lax.stop_gradient(
                jax.grad(lambda lam: self._elbo(lam, plates, eps)[0])(lam)
            )
        if self.inputs == "gradient":
            for n, (loc, log_scale) in lam.items():
                gm, gs = grads[n]
                per_cell = self._plate_scale(n, plates)
                feats = gradient_features(
                    self._standardize(params, n, loc),
                    log_scale,
                    gm / per_cell,
                    gs / per_cell,
                    self._scale(params, n),
                    jnp,
                )
                state[n] = _cat(feats)
            return state, grads
        _, tr = self._elbo(lam, plates, eps, score=False)
        for n, (loc, log_scale) in lam.items():
            err = self._latent_error(params, n, tr[n]["fn"], loc + jnp.exp(log_scale) * eps[n])
            state[n] = _cat([self._standardize(params, n, loc), log_scale, err])
        for n in self._graph.observed:
            site = tr.get(n)
            if site is not None and site["value"] is not None:
                state[n] = self._observed_error(params, n, site)
        return jax.lax.stop_gradient(state), grads

    def _elbo(
        self, lam: Lam, plates: Any, eps: Mapping[str, Array], *, score: bool = True
    ) -> tuple[Array, Any]:
        r"""The one-draw ELBO estimate :math:`\log p(x, z) - \log q(z \mid \lambda)` at
        :math:`u = \mu + \sigma \epsilon` (``eps`` grid-shaped), plate scales included,
        and the model's trace (``score=False``: without :math:`\log q`)."""
        args, kwargs, given = self._call
        data = {n: self.prototype_trace[n]["value"] for n in self._fallbacks}
        data.update({k: v for k, v in (given or {}).items() if v is not None})
        rows = {n: {"name": n, "type": "plate", "value": p._indices} for n, p in plates.items()}
        model = handlers.replay(handlers.seed(self.model, rng_seed=0), trace=rows)
        z, log_q = {}, jnp.zeros(())
        for n, (loc, log_scale) in lam.items():
            lay = self.layouts[n]
            t = dist.biject_to(self.prototype_trace[n]["fn"].support)
            scale = jnp.exp(log_scale)
            z[n] = t(lay.from_grid(loc + scale * eps[n], jnp))
            if score:
                base = dist.Normal(lay.from_grid(loc, jnp), lay.from_grid(scale, jnp))
                q = dist.TransformedDistribution(base.to_event(len(lay.event)), t)
                log_q = log_q + self._plate_scale(n, plates) * q.log_prob(z[n]).sum()
        with handlers.block(hide_fn=lambda m: m["type"] != "param"):
            log_p, tr = log_density(model, args, kwargs, {**z, **data})
        return log_p - log_q, tr

    def _plate_scale(self, name: str, plates: Mapping[str, Any]) -> float:
        """The loss's weight of one grid cell of ``name`` (its plates' subsampling)."""
        sizes = tuple(plates[p.name].size for p in self._plates)
        return self.layouts[name].cell_weight(
            sizes, tuple(plates[p.name].subsample_size for p in self._plates)
        )

    def _latent_error(self, params: Mapping[str, Array], name: str, fn: Any, u: Array) -> Array:
        """:math:`(u - \\tilde E_p[z \\mid \\mathrm{pa}]) / s`, zero where not finite."""
        lay = self.layouts[name]
        try:
            mean = dist.biject_to(fn.support).inv(jnp.broadcast_to(fn.mean, fn.shape()))
            grid = lay.to_grid(mean, jnp)
        except (NotImplementedError, ValueError, TypeError):
            return jnp.zeros_like(u)
        return jnp.nan_to_num(
            (u - grid) / self._scale(params, name), nan=0.0, posinf=0.0, neginf=0.0
        )

    def _observed_error(self, params: Mapping[str, Array], name: str, site: dict) -> Array:
        """:math:`(x - E[x \\mid z]) / s_x` on the grid, zero where not finite."""
        fn, lay = site["fn"], self.layouts[name]
        value = jnp.broadcast_to(
            jnp.asarray(site["value"], dtype=jnp.result_type(float)), fn.shape()
        )
        try:
            mean = jnp.broadcast_to(fn.mean, fn.shape())
        except (NotImplementedError, ValueError, TypeError):
            mean = value
        err = lay.to_grid(value - mean, jnp) / self._scale(params, name)
        return jnp.nan_to_num(err, nan=0.0, posinf=0.0, neginf=0.0)

    def _update(
        self, params: Mapping[str, Array], lam: Lam, state: Mapping[str, Array], feats: Mapping
    ) -> Lam:
        """:math:`\\lambda^{(t+1)} = \\lambda^{(t)} + (1 - g) \\odot \\Delta`, per group."""
        new: Lam = {}
        for g in self._plan.groups:
            if g.masks is not None:
                x = _cat([self._block(b, feats if b.kind == "data" else state) for b in g.inputs])
                net = self._net(params, f"{self.prefix}_update[{g.group.latents[0]}]")
                delta, gate = made_forward(net, g.masks, None, x)
                f = g.out_size
                for b in g.outputs:
                    sl = slice(b.offset, b.offset + b.size)
                    sl2 = slice(f + b.offset, f + b.offset + b.size)
                    new[b.name] = self._step(
                        params, b.name, lam[b.name], delta[..., sl], delta[..., sl2],
                        gate[..., sl], gate[..., sl2],
                    )  # fmt: skip
            for name in g.elementwise:
                net = self._net(params, self._elementwise_name)
                x = _per_element(state[name], self._plan.inputs)
                delta, gate = made_forward(net, self._plan.elementwise_masks, None, x)
                new[name] = self._step(
                    params,
                    name,
                    lam[name],
                    delta[..., 0],
                    delta[..., 1],
                    gate[..., 0],
                    gate[..., 1],
                )
        return new

    def _step(
        self,
        params: Mapping[str, Array],
        name: str,
        lam: tuple[Array, Array],
        d_loc: Array,
        d_scale: Array,
        g_loc: Array,
        g_scale: Array,
    ) -> tuple[Array, Array]:
        loc, log_scale = lam
        loc = loc + (1 - jax.nn.sigmoid(g_loc)) * d_loc * self._scale(params, name)
        step = LOG_SCALE_BOUND * jnp.tanh(d_scale / LOG_SCALE_BOUND)
        return loc, log_scale + (1 - jax.nn.sigmoid(g_scale)) * step


class IterativeELBO(Trace_ELBO):
    r"""``Trace_ELBO`` that trains every iterate of the :class:`AutoIterative` guides it
    meets (Marino et al.): the update networks receive the gradient of
    :math:`\sum_{t=0}^{T} \mathrm{ELBO}(\lambda^{(t)})`, the model's parameters that of the
    final iterate, through a guide factor of value zero (see the Pyro loss).

    Example:
        >>> svi = SVI(model, AutoIterative(model), Adam(1e-3), IterativeELBO())  # doctest: +SKIP
    """

    def loss_with_mutable_state(self, *args: Any, **kwargs: Any) -> Any:
        with train_iterates():
            return super().loss_with_mutable_state(*args, **kwargs)


def _expand(t: Array, shape: tuple[int, ...]) -> Array:
    if t.ndim < len(shape):
        t = t.reshape((1,) * (len(shape) - t.ndim) + tuple(t.shape))
    return jnp.broadcast_to(t, (*t.shape[: t.ndim - len(shape)], *shape))


def _per_element(state: Array, kind: str) -> Array:
    """A long site's state ``(..., W * F)`` (blocks of ``F``) as ``(..., F, W)``."""
    width = STATE_WIDTH[kind]
    f = state.shape[-1] // width
    return jnp.swapaxes(state.reshape(*state.shape[:-1], width, f), -1, -2)
