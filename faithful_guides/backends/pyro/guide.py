r"""``FaithfulGuide``: the Pyro base of every faithful guide family.

It owns what is not family math: set-up (trace, layouts on the plate grid, covariates, the
:class:`~faithful_guides.autoguides.structure.GuideStructure`, standardization, free
parameters), the per-call inputs (a hidden model run that gives observations, plate sizes
and subsample indices; covariates; summaries), plates, constrained emission, ``median``,
``quantiles`` and ``log_prob``. A family implements two hooks:

* ``_build()``: create its networks from ``self.structure``;
* ``_sample(feats, plates, median) -> {site: value}``: draw the latents, each through
  :meth:`FaithfulGuide._emit`.

Each latent is Gaussian in unconstrained space, pushed through ``biject_to(support)``:

.. math:: u_v \sim \mathcal{N}\big(m_v + \mu_v,\ (e^{s_v + b\tanh(\rho_v / b)})^2\big)

with free parameters :math:`m_v, s_v` (as ``AutoNormal``'s ``locs`` and ``scales``; shared
by the rows of a plate, or per row where rows cannot be amortized) and the family's
corrections :math:`\mu_v, \rho_v`, zero at initialization.

Calls without observed data (``Predictive(model, guide=guide)()`` on ``model(y=None)``)
condition on the observations recorded at set-up.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide
from pyro.infer.autoguide.initialization import InitMessenger, init_to_feasible
from pyro.infer.autoguide.utils import helpful_support_errors
from pyro.nn import PyroModule
from pyro.poutine.indep_messenger import CondIndepStackFrame
from torch import nn
from torch.distributions import biject_to
from torch.distributions.transforms import IndependentTransform, ReshapeTransform

from faithful_guides.autoguides.defaults import LOG_SCALE_BOUND, MAX_JOINT, STANDARDIZE_DRAWS
from faithful_guides.autoguides.errors import (
    no_bijection_error,
)
from faithful_guides.autoguides.inputs import find_covariates, robust_stats
from faithful_guides.autoguides.layout import SiteLayout
from faithful_guides.autoguides.options import check_options
from faithful_guides.autoguides.structure import GuideStructure, build_structure, model_plates
from faithful_guides.backends.pyro.inputs import GuideInputs, _tensor_args
from faithful_guides.backends.pyro.nets import Embedding
from faithful_guides.backends.pyro.tracer import trace_model
from faithful_guides.backends.pyro.transforms import SiteTransform

__all__ = ["FaithfulGuide"]


def attr_name(site: str) -> str:
    """A module attribute for a site's parameters that no ``nn.Module`` name can shadow."""
    return "site_" + re.sub(r"\W", "_", site)


class FaithfulGuide(GuideInputs, AutoGuide):
    """Base class of the faithful guides (see the module docstring).

    Args:
        model: a Pyro model with continuous latents.
        structure: ``"nami"`` (minimal faithful inverse), ``"heuristic"`` or ``"full"``.
        hidden_dims: hidden widths of the family's networks (default: the family's).
        summary_dim: width of each plate summary's learned embedding.
        init_loc_fn: per-site initialization, as in ``AutoNormal``.
        init_scale: initial scale of every latent in unconstrained space.
        create_plates: as in ``AutoNormal`` (e.g. for subsampling).
        amortize_subsampled: whether global latents read summaries of subsampled plates:
            off (the default) to fit one data set by minibatches (the globals are then fitted
            by their free parameters over the whole data set), on for amortized training
            across data sets by minibatches (``ForwardKL``, ``fit_bank``).
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        structure: str = "nami",
        hidden_dims: Sequence[int] | None = None,
        summary_dim: int = 16,
        init_loc_fn: Callable[..., Any] = init_to_feasible,
        init_scale: float = 0.1,
        create_plates: Callable[..., Any] | None = None,
        amortize_subsampled: bool = False,
    ) -> None:
        self._init_scale, self.hidden_dims, self.summary_dim = check_options(
            init_scale=init_scale,
            hidden_dims=hidden_dims,
            summary_dim=summary_dim,
            structure=structure,
        )
        self._raw_model = (model,)
        self.structure_name = structure
        self.amortize_subsampled = bool(amortize_subsampled)
        self.init_loc_fn = init_loc_fn
        self.structure: GuideStructure | None = None
        self._obs_cache: tuple[Any, Any, Any] | None = None
        super().__init__(InitMessenger(init_loc_fn)(model), create_plates=create_plates)

    # ------------------------------------------------------------------ set-up
    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        # the tracer's runs stay out of any outer trace and leave the RNG as they found it,
        # so init_to_sample draws what it would draw for AutoNormal
        with poutine.block(), torch.random.fork_rng(devices=[]):
            graph = trace_model(self._raw_model[0], *args, **kwargs)  # raises first
        super()._setup_prototype(*args, **kwargs)
        self.graph = graph
        self._plates = model_plates(graph)
        for p in self._plates:  # observed sites' plates too: the model replays our rows
            if p.name not in self._prototype_frames:
                frame = CondIndepStackFrame(p.name, p.dim, p.subsample_size, 0, p.size)
                self._prototype_frames[p.name] = frame
        self._nesting = max((-p.dim for p in self._plates if p.dim is not None), default=0)
        self._transforms: dict[str, SiteTransform] = {}
        self.layouts = {n: self._layout(n) for n in graph.sites}
        with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=[]):
            self._setup_trace = poutine.trace(self._raw_model[0]).get_trace(*args, **kwargs)
        trace = self._setup_trace.nodes
        observed_values = [trace[n]["value"].detach().numpy() for n in graph.observed]
        candidates = {k: v.detach().numpy() for k, v in _tensor_args(args, kwargs).items()}
        obs_plates = {p.name for n in graph.observed for p in graph.sites[n].plates}
        indices = {
            p.name: trace[p.name]["value"].numpy()
            for p in self._plates
            if p.name in trace and trace[p.name]["type"] == "sample"
        }
        covs = find_covariates(candidates, self._plates, observed_values, obs_plates, indices)
        self.structure = build_structure(
            graph,
            self.layouts,
            structure=self.structure_name,
            summary_dim=self.summary_dim,
            covariates=covs,
            amortize_subsampled=self.amortize_subsampled,
            guide_name=type(self).__name__,
        )
        self._setup_args = (args, kwargs)
        self._standardization(args, kwargs)
        self._free_parameters()
        self.embeds = PyroModule[nn.ModuleList](
            [Embedding(s.in_size, s.dim, max(32, 2 * s.in_size)) for s in self.structure.summaries]
        )
        self._build()

    def _layout(self, name: str) -> SiteLayout:
        site = self.graph.sites[name]
        shape = site.shape
        if not site.observed:
            site_msg = self.prototype_trace.nodes[name]
            support = site_msg["fn"].support
            try:
                with helpful_support_errors(site_msg):  # Pyro's own wording, where it has one
                    transform = biject_to(support)
            except NotImplementedError as e:
                raise no_bijection_error(name, support) from e
            shape = tuple(transform.inverse_shape(torch.Size(site.shape)))
        names = {p.name for p in site.plates}
        lay = SiteLayout(
            name,
            tuple(shape),
            len(site.batch_shape),
            tuple(p.dim for p in self._plates),
            tuple(p.name in names for p in self._plates),
        )
        if not site.observed:
            event = torch.Size(lay.event)
            flat = self._joint(lay) and lay.event != (lay.features,)
            parts = [ReshapeTransform(torch.Size((lay.features,)), event)] if flat else []
            self._transforms[name] = SiteTransform([*parts, transform])
        return lay

    def _joint(self, lay: SiteLayout) -> bool:
        """Whether a latent gets a full covariance inside the site."""
        return 1 < lay.features <= MAX_JOINT and not lay.has_free_batch

    def _standardization(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Fixed input statistics: set-up data and covariates, plus prior draws of every
        site (observed and latent), robust per feature; saved as buffers."""
        draws: dict[str, list[np.ndarray]] = {n: [] for n in self.graph.sites}
        model = poutine.uncondition(self._raw_model[0])
        with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            runs = [self.prototype_trace, self._setup_trace]
            for _ in range(STANDARDIZE_DRAWS):
                try:
                    runs.append(poutine.trace(model).get_trace(*args, **kwargs))
                except NotImplementedError:  # a latent that cannot be sampled (ImproperUniform)
                    break
        for tr in runs:
            for n in self.graph.sites:
                site = tr.nodes.get(n)
                if site is None or site["value"] is None:
                    continue
                try:
                    v = site["value"].detach().to(torch.get_default_dtype())
                    v = v.expand(site["fn"].shape())
                    if n not in self.graph.observed:
                        v = biject_to(site["fn"].support).inv(v)
                    grid = self.layouts[n].to_grid(v, torch)
                except RuntimeError:  # a run whose shapes differ (not the set-up's)
                    continue
                if grid.shape[-1]:  # a factor site has no features
                    draws[n].append(grid.reshape(-1, grid.shape[-1]).numpy())
        self.stats = nn.Module()  # buffers: in the state dict, not in the param store
        for n, rows in draws.items():
            width = self.layouts[n].features
            center, scale = robust_stats(np.concatenate(rows) if rows else np.zeros((1, width)))
            self.stats.register_buffer(attr_name(n) + "_center", torch.as_tensor(center))
            self.stats.register_buffer(attr_name(n) + "_scale", torch.as_tensor(scale))
        for c in self.structure.covariates:
            value = _tensor_args(args, kwargs)[c.key].detach().to(torch.get_default_dtype())
            rows = value.reshape(value.shape[0] if any(c.in_plate) else 1, -1).numpy()
            center, scale = robust_stats(rows)
            self.stats.register_buffer(attr_name(c.name) + "_center", torch.as_tensor(center))
            self.stats.register_buffer(attr_name(c.name) + "_scale", torch.as_tensor(scale))
        self._setup_obs = {}  # data, not parameters: not in the state dict
        tr = self._setup_trace.nodes
        for n in self.graph.observed:
            v = tr[n]["value"].detach().to(torch.get_default_dtype())
            grid = self.layouts[n].to_grid(v.expand(tr[n]["fn"].shape()), torch)
            self._setup_obs[n] = self._standardize(n, grid)

    def _stat(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed center and scale of a site's or covariate's features."""
        stats = self.__dict__.get("_stats_cache")
        if stats is None:  # PyroModule attribute access is slow: read the buffers once a call
            stats = dict(self.stats.named_buffers())
        base = attr_name(name)
        return stats[base + "_center"], stats[base + "_scale"]

    def _standardize(self, name: str, grid: torch.Tensor) -> torch.Tensor:
        """Grid features of a site or covariate in units of its fixed statistics."""
        center, scale = self._stat(name)
        return (grid - center) / scale

    def _free_parameters(self) -> None:
        """``locs`` and ``log_scales`` per latent: shared by the rows of its plates, or per
        grid cell (full plate sizes) where the structure says rows cannot be amortized."""
        self.locs, self.log_scales = PyroModule(), PyroModule()
        self._per_row: set[str] = set()
        trace = self.prototype_trace.nodes
        for g in self.structure.groups:
            for name in g.latents:
                lay = self.layouts[name]
                u = biject_to(trace[name]["fn"].support).inv(trace[name]["value"].detach())
                grid = lay.to_grid(u, torch)
                full = tuple(p.size for p in self._plates)
                if name in g.free_rows and grid.shape[:-1] == lay.grid_shape(full):
                    loc = grid.clone()
                    self._per_row.add(name)
                elif name in g.free_rows:  # subsampled at set-up: start every row at the mean
                    loc = (
                        grid.reshape(-1, lay.features)
                        .mean(0)
                        .expand(*lay.grid_shape(full), lay.features)
                        .clone()
                    )
                    self._per_row.add(name)
                else:
                    loc = grid.reshape(-1, lay.features).mean(0)
                setattr(self.locs, attr_name(name), nn.Parameter(loc))
                log_scale = torch.full_like(loc, math.log(self._init_scale))
                setattr(self.log_scales, attr_name(name), nn.Parameter(log_scale))
        self._couplings = PyroModule()
        for name in self.structure.latents:
            lay = self.layouts[name]
            if self._joint(lay):
                raw = nn.Parameter(torch.zeros(lay.features, lay.features))
                setattr(self._couplings, attr_name(name), raw)

    # ------------------------------------------------------------------ family hooks
    def _build(self) -> None:  # pragma: no cover - every family overrides it
        raise TypeError(f"{type(self).__name__} must define _build()")

    def _sample(
        self, feats: dict[str, torch.Tensor], plates: Mapping[str, Any], median: bool
    ) -> dict[str, torch.Tensor]:  # pragma: no cover - every family overrides it
        raise TypeError(f"{type(self).__name__} must define _sample()")

    def _quantile_roots(self) -> frozenset[str]:
        """Latents whose guide conditional is their marginal (exact quantiles)."""
        return self.structure.roots()

    # ------------------------------------------------------------------ calls
    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Sample every latent (a dict ``{site: constrained value}``). Also accepts the
        ``observations=`` keyword that :class:`pyro.infer.CSIS` passes."""
        observations = kwargs.pop("observations", None)
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates, feats = self._inputs(args, kwargs, observations)
        return self._sample(feats, plates, median=False)

    @torch.no_grad()
    def median(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Each latent at its conditional median given the medians of its parents."""
        observations = kwargs.pop("observations", None)
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with poutine.block():
            plates, feats = self._inputs(args, kwargs, observations)
            return self._sample(feats, plates, median=True)

    @torch.no_grad()
    def quantiles(
        self, quantiles: Sequence[float] | torch.Tensor, *args: Any, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Quantiles ``(len(quantiles), *shape)`` of each latent's marginal: exact for
        latents with no latent parents and an elementwise support transform (their
        conditional is their marginal), Monte Carlo (``num_samples=1000`` draws) for the
        others, whose marginals mix their conditionals over their parents."""
        num = int(kwargs.pop("num_samples", 1000))
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with poutine.block(), pyro.plate("_faithful_quantiles", num, dim=-(self._nesting + 1)):
            draws = self(*args, **kwargs)
        q = torch.as_tensor(quantiles, dtype=torch.get_default_dtype())
        out = {}
        for n, v in draws.items():
            k = len(self.graph.sites[n].shape)
            v = v.expand(num, *v.shape[1:]) if v.shape[0] == 1 else v
            out[n] = torch.quantile(v.reshape(num, *v.shape[v.dim() - k :]), q, dim=0)
        out.update(self._exact_quantiles(q, args, kwargs))
        return out

    def _exact_quantiles(
        self, q: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        observations = kwargs.pop("observations", None)
        self.__dict__["_record"] = record = {}
        try:
            with poutine.block():
                plates, feats = self._inputs(args, kwargs, observations)
                self._sample(feats, plates, median=True)
        finally:
            self.__dict__["_record"] = None
        z = dist.Normal(0.0, 1.0).icdf(q)
        out = {}
        for name in self._quantile_roots():
            if name not in record or not _elementwise(self._transforms[name]):
                continue
            loc, scale, unit = record[name]
            sd = scale if unit is None else (unit * scale.unsqueeze(-2)).pow(2).sum(-1).sqrt()
            u = loc + z.reshape((-1,) + (1,) * loc.dim()) * sd
            out[name] = self._transforms[name](u)
        return out

    def log_prob(
        self, latents: Mapping[str, torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        r""":math:`\log q(z \mid x)` of the given latents (constrained values), summed over
        sites with plate scaling; ``observations=`` as in :meth:`forward`."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with poutine.block():
            tr = poutine.trace(poutine.condition(self, data=dict(latents))).get_trace(
                *args, **kwargs
            )
        return tr.log_prob_sum()

    # ------------------------------------------------------------------ emission
    def _block(self, b: Any, source: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The features of input block ``b`` from ``source``, averaged over the grid axes
        ``b.reduce`` (a finer site read by a coarser group)."""
        t = source[b.name]
        if b.reduce:
            k = len(self._plates)
            t = t.mean(tuple(i - k - 1 for i in b.reduce), keepdim=True)
        return t

    def _group_plates(self, in_plate: tuple[bool, ...], plates: Mapping[str, Any]) -> Any:
        stack = contextlib.ExitStack()
        for p, inside in zip(self._plates, in_plate, strict=True):
            if inside:
                stack.enter_context(plates[p.name])
        return stack

    def _free(self, kind: str, name: str, plates: Mapping[str, Any]) -> torch.Tensor:
        param = getattr(self.locs if kind == "loc" else self.log_scales, attr_name(name))
        if name not in self._per_row:
            return param
        k = len(self._plates)
        for i, p in enumerate(self._plates):
            if self.layouts[name].in_plate[i]:
                idx = plates[p.name]._indices
                if param.shape[i] != plates[p.name].size:
                    raise ValueError(
                        f"Latent site {name!r} has per-row free parameters sized for "
                        f"{param.shape[i]} rows of plate {p.name!r} (its rows cannot be "
                        f"amortized), but this call has {plates[p.name].size}. Create a new "
                        "guide for a data set of another size."
                    )
                param = param.index_select(i - k - 1, idx)
        return param

    def _emit(
        self,
        name: str,
        mu: torch.Tensor | None,
        rho: torch.Tensor | None,
        plates: Mapping[str, Any],
        median: bool,
        *,
        absolute: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (or take the median of) one latent from its free parameters and the
        family's corrections (grid-shaped, or None), or (``absolute``) from the location
        ``mu`` and log-scale ``rho`` themselves; return its constrained value and its
        standardized grid features."""
        lay = self.layouts[name]
        if absolute:
            loc, log_scale = mu, rho
        else:
            loc = self._free("loc", name, plates)
            log_scale = self._free("scale", name, plates)
        if mu is not None and not absolute:
            loc = loc + mu
            log_scale = log_scale + LOG_SCALE_BOUND * torch.tanh(rho / LOG_SCALE_BOUND)
        scale = log_scale.exp()
        k = len(self._plates)
        if loc.dim() < k + 1:
            loc = loc.reshape((1,) * (k + 1 - loc.dim()) + tuple(loc.shape))
        cells = lay.grid_shape(tuple(plates[p.name].subsample_size for p in self._plates))
        full = (*loc.shape[: loc.dim() - k - 1], *cells, lay.features)
        if tuple(loc.shape) != full:
            loc = loc.expand(full)
        scale = scale.expand(loc.shape) if scale.shape != loc.shape else scale
        joint = self._joint(lay)
        transform = self._transforms[name].with_cache(1)
        flat = lay.flattened() if joint else lay
        loc_b, scale_b = flat.from_grid(loc, torch), flat.from_grid(scale, torch)
        if median:
            u = loc_b.detach()  # (a reshape to the same shape may hand back the parameter)
            value = transform(u)
            record = self.__dict__.get("_record")
            if record is not None:  # exact quantiles of the conditional
                unit = None
                if joint:
                    raw = getattr(self._couplings, attr_name(name)).detach()
                    unit = raw.tril(-1) + torch.eye(lay.features, dtype=loc.dtype)
                record[name] = (u, scale_b.detach(), unit)
        else:
            if joint:
                raw = getattr(self._couplings, attr_name(name))
                unit = raw.tril(-1) + torch.eye(lay.features, dtype=loc.dtype)
                base = dist.MultivariateNormal(loc_b, scale_tril=unit * scale_b.unsqueeze(-2))
            else:
                base = dist.Normal(loc_b, scale_b).to_event(len(lay.event))
            value = pyro.sample(name, dist.TransformedDistribution(base, [transform]))
            u = transform.inv(value)
        u = u.reshape(flat.unpadded_shape(tuple(u.shape)))
        return value, self._standardize(name, flat.to_grid(u, torch))


def _elementwise(transform: Any) -> bool:
    """Whether a site transform acts element by element (so quantiles commute with it)."""
    parts = getattr(transform, "_parts", [transform])
    for t in parts:
        if isinstance(t, ReshapeTransform):
            continue
        while isinstance(t, IndependentTransform):
            t = t.base_transform
        if t.domain.event_dim != 0:
            return False
    return True
