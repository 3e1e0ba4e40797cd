r"""The Pyro AutoIterative guide: iterative amortized inference (Marino, Yue and Mandt 2018,
"Iterative amortized inference", ICML), on the faithful guide core.

Each latent is mean-field Gaussian in unconstrained space, :math:`\lambda_v = (\mu_v,
\log\sigma_v)` per plate cell, started at the free parameters (``init="prior"``, as
``AutoNormal``'s) or an encoder of the data (``init="encoder"``) and refined ``num_steps``
times by learned, gated updates that read the gradient of a one-draw ELBO estimate
(computed by running the model inside the guide, ``torch.autograd.grad``) or the model's
prediction errors (:mod:`faithful_guides.autoguides.iterative_plan`). The networks' inputs
are held fixed (no backpropagation through the inner gradients, no second derivatives);
:math:`\lambda` itself flows through the residual updates, so ``Trace_ELBO`` trains the
initial parameters and every update on the final iterate, and :class:`IterativeELBO` adds
the ELBO of every intermediate iterate (the paper's scheme).

Example:
    >>> import pyro
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from faithful_guides.zoo import collider
    >>> model, args, kwargs = collider("pyro")
    >>> guide = AutoIterative(model, num_steps=2)
    >>> svi = SVI(model, guide, Adam({"lr": 1e-2}), IterativeELBO())
    >>> loss = svi.step(*args, **kwargs)
    >>> sorted(guide(*args))
    ['z1', 'z2', 'z3', 'z4']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide.initialization import init_to_feasible
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import biject_to

from faithful_guides.autoguides.defaults import LOG_SCALE_BOUND
from faithful_guides.autoguides.errors import jit_gradient_error
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
from faithful_guides.backends.pyro.guide import FaithfulGuide
from faithful_guides.backends.pyro.inputs import _cat
from faithful_guides.backends.pyro.nets import MaskedMLP

__all__ = ["AutoIterative", "IterativeELBO"]

Lam = dict[str, tuple[torch.Tensor, torch.Tensor]]


class AutoIterative(FaithfulGuide):
    r"""An amortized mean-field guide whose parameters refine themselves with the model's
    own gradients: :math:`\lambda^{(t+1)} = \lambda^{(t)} + (1 - g) \odot \Delta`, with
    :math:`(\Delta, g)` from an update network per plate group whose update of latent
    :math:`v` reads only :math:`v` and its neighbours in the faithful inverse (cost linear
    in the rows), a drop-in for ``AutoNormal``.

    Args:
        model: a Pyro model with continuous latents.
        num_steps: refinements ``T`` per call (0: ``AutoNormal`` or a plain encoder); may be
            raised after training (``guide.num_steps = 10``) to refine further.
        inputs: ``"gradient"`` (:math:`[\lambda, \pi(\nabla_\lambda L)]`) or ``"error"``
            (:math:`[\lambda, z - E_p[z \mid \mathrm{pa}]]` and :math:`x - E[x \mid z]`).
        observed_inputs: whether the updates also read the observations.
        init: ``"prior"`` (start at the free parameters, which are learned, as
            ``AutoNormal``'s) or ``"encoder"`` (free parameters plus a masked network of
            the observations each latent's faithful conditional reads).
        structure: ``"nami"`` (neighbours in the minimal faithful inverse), ``"heuristic"``
            or ``"full"`` (every latent reads every latent).
        hidden_dims: hidden widths of each update network (and encoder).
        summary_dim: width of each plate summary's learned embedding.
        init_loc_fn: per-site initialization, as in ``AutoNormal``.
        init_scale: initial scale in unconstrained space.
        create_plates: as in ``AutoNormal`` (e.g. for subsampling).
        amortize_subsampled: whether globals read summaries of subsampled plates.

    The inner draws of ``median`` (and of the exact ``quantiles``) use a fixed seed, so
    both are reproducible; ``log_prob`` scores the given latents under one refinement.

    Example::

        guide = AutoIterative(model, num_steps=5)
        svi = SVI(model, guide, Adam({"lr": 1e-3}), IterativeELBO())
    """

    plan: IterativePlan | None = None

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
        init_loc_fn: Callable[..., Any] = init_to_feasible,
        init_scale: float = 0.1,
        create_plates: Callable[..., Any] | None = None,
        amortize_subsampled: bool = False,
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
        )

    def _joint(self, lay: SiteLayout) -> bool:
        return False  # mean-field: the refinement updates each coordinate's (loc, scale)

    def _quantile_roots(self) -> frozenset[str]:
        return frozenset(self.structure.latents)  # mean-field: every conditional a marginal

    # ------------------------------------------------------------------ networks
    def _build(self) -> None:
        self.plan = build_iterative_plan(
            self.structure,
            self.layouts,
            inputs=self.inputs,
            observed_inputs=self.observed_inputs,
            encoder=self.init == "encoder",
            hidden=self.hidden_dims,
        )
        groups = self.plan.groups
        self.updates = PyroModule[nn.ModuleList](
            [nn.Identity() if g.masks is None else MaskedMLP(g.masks, None) for g in groups]
        )
        self.encoders = PyroModule[nn.ModuleList](
            [
                nn.Identity()
                if g.encoder_masks is None
                else MaskedMLP(g.encoder_masks, g.encoder_skip)
                for g in groups
            ]
        )
        long_sites = any(g.elementwise for g in groups)
        self.elementwise = MaskedMLP(self.plan.elementwise_masks, None) if long_sites else None

    # ------------------------------------------------------------------ sampling
    def _sample(
        self, feats: dict[str, torch.Tensor], plates: Mapping[str, Any], median: bool
    ) -> dict[str, torch.Tensor]:
        lam = self._initial(feats, plates)
        generator = torch.Generator().manual_seed(0) if median else None
        collect = training_iterates() and not median
        surrogate = None
        for _ in range(self.num_steps if lam else 0):  # a model without latents: nothing to refine
            fixed = {
                n: (m.detach().requires_grad_(), s.detach().requires_grad_())
                for n, (m, s) in lam.items()
            }
            state, grads = self._probe(fixed, plates, generator, need_grads=collect)
            if collect:  # d/dtheta of the iterate's ELBO, at zero value
                for n, (m, s) in lam.items():
                    gm, gs = grads[n]
                    term = ((m - m.detach()) * gm).sum() + ((s - s.detach()) * gs).sum()
                    surrogate = term if surrogate is None else surrogate + term
            lam = self._update(fixed if collect else lam, state, feats)
        if surrogate is not None and surrogate.requires_grad:
            name = f"_{self._pyro_name}_iterates" if self._pyro_name else "_iterates"
            pyro.factor(name, -surrogate, has_rsample=True)
        values: dict[str, torch.Tensor] = {}
        for g in self.plan.groups:
            with self._group_plates(g.group.in_plate, plates):
                for name in g.group.latents:
                    loc, log_scale = lam[name]
                    values[name], feats[name] = self._emit(
                        name, loc, log_scale, plates, median, absolute=True
                    )
        return values

    def _cells(self, name: str, plates: Mapping[str, Any]) -> tuple[int, ...]:
        return self.layouts[name].grid_shape(
            tuple(plates[p.name].subsample_size for p in self._plates)
        )

    def _initial(self, feats: dict[str, torch.Tensor], plates: Mapping[str, Any]) -> Lam:
        """:math:`\\lambda^{(0)}`: the free parameters, plus the encoder's correction."""
        lam: Lam = {}
        for g, enc in zip(self.plan.groups, self.encoders, strict=True):
            corr = None
            if g.encoder_masks is not None:
                data = [self._block(b, feats) for b in g.inputs if b.kind == "data"]
                corr = enc(_cat(data))
            for name in g.group.latents:
                lay = self.layouts[name]
                shape = (*self._cells(name, plates), lay.features)
                loc = self._free("loc", name, plates)
                log_scale = self._free("scale", name, plates)
                if corr is not None and name not in g.elementwise:
                    out = next(b for b in g.outputs if b.name == name)
                    mu, rho = (c[..., out.offset : out.offset + out.size] for c in corr)
                    loc = loc + mu * self._stat(name)[1]
                    log_scale = log_scale + LOG_SCALE_BOUND * torch.tanh(rho / LOG_SCALE_BOUND)
                lam[name] = (_expand(loc, shape), _expand(log_scale, shape))
        return lam

    # ------------------------------------------------------------------ one refinement
    def _probe(
        self,
        lam: Lam,
        plates: Mapping[str, Any],
        generator: torch.Generator | None,
        need_grads: bool = False,
    ) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        r"""Run the model at one draw from :math:`q(\cdot \mid \lambda)`: each latent's
        and observed error's input features, and the ELBO gradient of each
        :math:`\lambda` (as the loss sees it, plate scales included; with
        ``inputs="error"`` only if ``need_grads``, for :class:`IterativeELBO`)."""
        gradient = self.inputs == "gradient"
        if (gradient or need_grads) and torch.jit.is_tracing():
            raise jit_gradient_error(type(self).__name__)
        eps = {
            n: torch.randn(m.shape, generator=generator, dtype=m.dtype) for n, (m, _) in lam.items()
        }
        state: dict[str, torch.Tensor] = {}
        grads: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if gradient or need_grads:
            with torch.enable_grad():
                elbo, tr = self._elbo(lam, plates, eps)
                leaves = [t for n in lam for t in lam[n]]
                found = torch.autograd.grad(elbo, leaves, allow_unused=True)
            for i, name in enumerate(lam):
                grads[name] = tuple(
                    torch.zeros_like(t) if g is None else g
                    for t, g in zip(lam[name], found[2 * i : 2 * i + 2], strict=True)
                )
        else:
            with torch.no_grad():
                _, tr = self._elbo(lam, plates, eps, score=False)
        with torch.no_grad():
            for name, (loc, log_scale) in lam.items():
                if gradient:
                    gm, gs = grads[name]
                    per_cell = self._plate_scale(name, plates)
                    feats = gradient_features(
                        self._standardize(name, loc), log_scale, gm / per_cell, gs / per_cell,
                        self._stat(name)[1], torch,
                    )  # fmt: skip
                else:
                    u = loc + log_scale.exp() * eps[name]
                    feats = [self._standardize(name, loc), log_scale]
                    feats.append(self._latent_error(name, tr.nodes[name]["fn"], u))
                state[name] = _cat(feats).detach()
            if not gradient:
                for name in self.graph.observed:
                    site = tr.nodes.get(name)
                    if site is not None and site["value"] is not None:
                        state[name] = self._observed_error(name, site).detach()
        return state, grads

    def _elbo(
        self,
        lam: Lam,
        plates: Mapping[str, Any],
        eps: Mapping[str, torch.Tensor],
        *,
        score: bool = True,
    ) -> tuple[torch.Tensor | None, Any]:
        r"""The one-draw ELBO estimate :math:`\log p(x, z) - \log q(z \mid \lambda)` at
        :math:`u = \mu + \sigma \epsilon` (``eps`` standard normal, grid-shaped), plate
        scales included, and the model's trace (``score=False``: the trace only)."""
        args, kwargs, given = self.__dict__["_call"]
        z, log_q = {}, 0.0
        for name, (loc, log_scale) in lam.items():
            lay = self.layouts[name]
            scale = log_scale.exp()
            transform = self._transforms[name].with_cache(1)
            z[name] = transform(lay.from_grid(loc + scale * eps[name], torch))
            if score:
                base = dist.Normal(lay.from_grid(loc, torch), lay.from_grid(scale, torch))
                q = dist.TransformedDistribution(base.to_event(len(lay.event)), [transform])
                log_q = log_q + self._plate_scale(name, plates) * q.log_prob(z[name]).sum()
        data = dict(z)
        data.update({p.name: plates[p.name]._indices for p in self._plates})
        for n in self.__dict__.get("_fallbacks", ()):
            data[n] = self._setup_trace.nodes[n]["value"]
        data.update({k: v for k, v in (given or {}).items() if v is not None})
        with poutine.block(), torch.random.fork_rng(devices=[]):
            model = poutine.condition(self._raw_model[0], data=data)
            tr = poutine.trace(model).get_trace(*args, **kwargs)
        return (tr.log_prob_sum() - log_q if score else None), tr

    def _plate_scale(self, name: str, plates: Mapping[str, Any]) -> float:
        """The loss's weight of one grid cell of ``name`` (its plates' subsampling)."""
        sizes = tuple(plates[p.name].size for p in self._plates)
        return self.layouts[name].cell_weight(
            sizes, tuple(plates[p.name].subsample_size for p in self._plates)
        )

    def _latent_error(self, name: str, fn: Any, u_grid: torch.Tensor) -> torch.Tensor:
        """:math:`(u - \\tilde E_p[z \\mid \\mathrm{pa}]) / s`, zero where the prior has no
        finite mean in unconstrained space."""
        lay = self.layouts[name]
        try:
            mean = biject_to(fn.support).inv(fn.mean.expand(fn.shape()))
            grid = lay.to_grid(mean, torch)
        except (NotImplementedError, RuntimeError, ValueError):
            return torch.zeros_like(u_grid)
        err = (u_grid - grid) / self._stat(name)[1]
        return torch.nan_to_num(err, nan=0.0, posinf=0.0, neginf=0.0)

    def _observed_error(self, name: str, site: dict[str, Any]) -> torch.Tensor:
        """:math:`(x - E[x \\mid z]) / s_x` on the grid, zero where the mean is not finite."""
        fn, lay = site["fn"], self.layouts[name]
        value = site["value"].to(torch.get_default_dtype()).expand(fn.shape())
        try:
            mean = fn.mean.expand(fn.shape())
        except (NotImplementedError, RuntimeError):
            mean = value
        err = lay.to_grid(value - mean, torch) / self._stat(name)[1]
        return torch.nan_to_num(err, nan=0.0, posinf=0.0, neginf=0.0)

    def _update(
        self, lam: Lam, state: Mapping[str, torch.Tensor], feats: Mapping[str, torch.Tensor]
    ) -> Lam:
        """:math:`\\lambda^{(t+1)} = \\lambda^{(t)} + (1 - g) \\odot \\Delta`, per group."""
        new: Lam = {}
        for g, net in zip(self.plan.groups, self.updates, strict=True):
            if g.masks is not None:
                x = _cat([self._block(b, feats if b.kind == "data" else state) for b in g.inputs])
                delta, gate = net(x)
                f = g.out_size
                for b in g.outputs:
                    sl = slice(b.offset, b.offset + b.size)
                    sl2 = slice(f + b.offset, f + b.offset + b.size)
                    new[b.name] = self._step(
                        b.name,
                        lam[b.name],
                        delta[..., sl],
                        delta[..., sl2],
                        gate[..., sl],
                        gate[..., sl2],
                    )
            for name in g.elementwise:
                delta, gate = self.elementwise(_per_element(state[name], self.plan.inputs))
                new[name] = self._step(name, lam[name], *delta.unbind(-1), *gate.unbind(-1))
        return new

    def _step(
        self,
        name: str,
        lam: tuple[torch.Tensor, torch.Tensor],
        d_loc: torch.Tensor,
        d_scale: torch.Tensor,
        g_loc: torch.Tensor,
        g_scale: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loc, log_scale = lam
        loc = loc + (1 - torch.sigmoid(g_loc)) * d_loc * self._stat(name)[1]
        step = LOG_SCALE_BOUND * torch.tanh(d_scale / LOG_SCALE_BOUND)
        return loc, log_scale + (1 - torch.sigmoid(g_scale)) * step


class IterativeELBO(Trace_ELBO):
    r"""``Trace_ELBO`` that trains every iterate of the :class:`AutoIterative` guides it
    meets, as Marino et al. do: the update networks (and encoder) receive the gradient of
    :math:`\sum_{t=0}^{T} \mathrm{ELBO}(\lambda^{(t)})`, the model's parameters that of the
    final iterate only. The intermediate terms enter as a guide factor of value zero
    whose gradient is :math:`-\sum_{t<T} \nabla_\lambda \mathrm{ELBO}(\lambda^{(t)}) \cdot
    \partial\lambda^{(t)}`, with the gradients the refinement computes anyway: the loss
    reads the same as ``Trace_ELBO``'s and costs no extra model run.

    Example::

        svi = SVI(model, AutoIterative(model), Adam({"lr": 1e-3}), IterativeELBO())
    """

    def _get_trace(self, model: Any, guide: Any, args: Any, kwargs: Any) -> Any:
        with train_iterates():
            return super()._get_trace(model, guide, args, kwargs)


def _expand(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if t.dim() < len(shape):
        t = t.reshape((1,) * (len(shape) - t.dim()) + tuple(t.shape))
    return t.expand(*t.shape[: t.dim() - len(shape)], *shape)


def _per_element(state: torch.Tensor, kind: str) -> torch.Tensor:
    """A long site's state ``(..., W * F)`` (blocks of ``F``) as ``(..., F, W)``."""
    width = STATE_WIDTH[kind]
    f = state.shape[-1] // width
    return state.reshape(*state.shape[:-1], width, f).transpose(-1, -2)
