r"""The Pyro AutoFaithfulMADE guide: an amortized guide shaped by the faithful inverse graph.

.. math:: q(z \mid x) = \prod_v q(z_v \mid \mathrm{Pa}_H(z_v))

where :math:`H` is the (NaMI) faithful inverse of the model's graph, each conditional a
Gaussian in unconstrained space whose location and scale come from a DAG-masked MADE
(Webb et al. 2018, "Faithful inversion of generative models for effective amortized
inference", NeurIPS), with a unit lower-triangular coupling :math:`C_v` inside vector sites.
See :mod:`faithful_guides.autoguides.made_plan` for the plan (groups, masks, summaries).

Example:
    >>> import pyro, torch
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from faithful_guides.zoo import collider
    >>> model, args, kwargs = collider("pyro")
    >>> guide = AutoFaithfulMADE(model)
    >>> svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    >>> loss = svi.step(*args, **kwargs)
    >>> sorted(guide(*args))
    ['z1', 'z2', 'z3', 'z4']
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide
from pyro.infer.autoguide.initialization import InitMessenger, init_to_feasible
from pyro.infer.autoguide.utils import deep_setattr
from pyro.nn import PyroModule
from pyro.poutine.indep_messenger import CondIndepStackFrame
from torch import nn
from torch.distributions import biject_to

from faithful_guides.autoguides.checks import (
    check_made_options,
    check_observed_shape,
    missing_observation,
)
from faithful_guides.autoguides.made_plan import (
    GroupPlan,
    MadePlan,
    build_made_plan,
    default_hidden,
)
from faithful_guides.backends.pyro.nets import Embedding, MaskedMLP, SiteLayout
from faithful_guides.backends.pyro.tracer import trace_model
from faithful_guides.graph.model_graph import SiteInfo

__all__ = ["AutoFaithfulMADE"]


class AutoFaithfulMADE(AutoGuide):
    r"""An amortized guide :math:`q(z \mid x) = \prod_v q(z_v \mid \mathrm{Pa}_H(z_v))` built
    from the model's faithful inverse :math:`H` (Webb et al. 2018) with DAG-masked MADEs.

    Each latent is Gaussian in unconstrained space (``biject_to(support)`` maps it back,
    the log-det-Jacobian enters through a ``TransformedDistribution``); its location and
    scale are a masked MLP of exactly the features of its inverse parents. Latents in the
    model's plate share one network applied row by row (cost linear in the rows);
    global latents see in-plate observations through learned mean embeddings. The
    observed values are read from the current call (the guide runs the model once in a
    hidden "collect observations" mode), so a trained guide gives the posterior of new
    data with no further optimization.

    Args:
        model: a Pyro model with continuous latents, at most one plate for local sites.
        structure: ``"nami"`` (minimal faithful inverse), ``"heuristic"`` or ``"full"``.
        hidden_dims: hidden widths of each MADE; default two layers of
            ``max(32, 2 F)`` units, ``F`` the number of distinct input features any output sees.
        summary_dim: width of each plate summary embedding.
        init_loc_fn: per-site initialization, as in ``AutoNormal`` (sets the location
            biases; local sites use the mean over rows).
        init_scale: initial scale in unconstrained space.
        create_plates: as in ``AutoNormal`` (e.g. for subsampling).

    Example::

        guide = AutoFaithfulMADE(model)
        svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
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
    ) -> None:
        init_scale, hidden_dims, summary_dim = check_made_options(
            init_scale=init_scale, hidden_dims=hidden_dims, summary_dim=summary_dim
        )
        self._raw_model = (model,)
        self.structure = structure
        self.hidden_dims = hidden_dims
        self.summary_dim = summary_dim
        self.init_loc_fn = init_loc_fn
        self._init_scale = init_scale
        self.plan: MadePlan | None = None
        self._obs_cache: tuple[Any, Any, dict[str, torch.Tensor]] | None = None
        super().__init__(InitMessenger(init_loc_fn)(model), create_plates=create_plates)

    # ---------------------------------------------------------------- setup
    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        with poutine.block():  # the tracer's runs stay out of any outer trace
            graph = trace_model(self._raw_model[0], *args, **kwargs)  # raises first
        super()._setup_prototype(*args, **kwargs)
        self.graph = graph
        plates = {p for s in graph.sites.values() for p in s.plates}
        self._plate_name = next((p.name for p in plates), None)
        for p in plates:  # plates of observed sites too: the model must replay our subsample
            if p.name not in self._prototype_frames:
                frame = CondIndepStackFrame(p.name, p.dim, p.subsample_size, 0, p.size)
                self._prototype_frames[p.name] = frame
        self._nesting = max((-p.dim for p in plates if p.dim is not None), default=0)
        self._layouts = {n: self._layout(s) for n, s in graph.sites.items()}
        sizes = {n: lay.size for n, lay in self._layouts.items()}
        hidden = self.hidden_dims or default_hidden(
            graph, sizes=sizes, structure=self.structure, summary_dim=self.summary_dim
        )
        self.plan = plan = build_made_plan(
            graph,
            sizes=sizes,
            hidden=hidden,
            structure=self.structure,
            summary_dim=self.summary_dim,
        )
        init = self._init_locs()
        self.global_net = self._net(plan.global_, init)
        self.local_net = self._net(plan.local, init) if plan.local else None
        self.embeds = PyroModule[nn.ModuleList](
            [Embedding(s.in_size, self.summary_dim, hidden[0]) for s in plan.summaries]
        )
        self.trils = PyroModule()
        for n, lay in self._layouts.items():
            if lay.mvn:
                deep_setattr(self.trils, n, nn.Parameter(torch.zeros(lay.size, lay.size)))

    def _layout(self, site: SiteInfo) -> SiteLayout:
        shape, transform = site.shape, None
        if not site.observed:
            support = self.prototype_trace.nodes[site.name]["fn"].support
            try:
                transform = biject_to(support)
            except NotImplementedError as e:
                raise ValueError(
                    f"Latent site {site.name!r} has support {support} with no bijection to "
                    "unconstrained space (torch.distributions.biject_to): register one with "
                    "biject_to.register, reparametrize the site, or hide it with "
                    "poutine.block and guide it separately (AutoGuideList)."
                ) from e
            shape = tuple(transform.inverse_shape(torch.Size(site.shape)))
        axis = None
        if site.plates:
            axis = len(site.batch_shape) + site.plates[0].dim
            if axis < 0:
                raise ValueError(
                    f"Site {site.name!r} has batch shape {site.batch_shape}, which does not "
                    f"reach the dim {site.plates[0].dim} of its plate {site.plates[0].name!r}: "
                    "make the distribution's batch shape broadcast with the declared plates."
                )
        numel = math.prod(shape)
        size = numel // shape[axis] if axis is not None else numel
        rows = shape[axis] if axis is not None else 1
        extra_batch = math.prod(shape[: len(site.batch_shape)]) // rows
        mvn = not site.observed and size > 1 and extra_batch == 1
        return SiteLayout(site.name, shape, len(site.batch_shape), axis, size, transform, mvn)

    def _init_locs(self) -> dict[str, torch.Tensor]:
        out = {}
        for n, lay in self._layouts.items():
            if lay.transform is None:
                continue
            value = self.prototype_trace.nodes[n]["value"].detach()
            u = lay.transform.inv(value).detach()
            rows = lay.rows(u, 0)
            out[n] = rows.reshape(-1, lay.size).mean(0)
        return out

    def _net(self, group: GroupPlan, init: Mapping[str, torch.Tensor]) -> MaskedMLP | None:
        if not group.masks:
            return None
        loc = torch.cat([init[b.name] for b in group.outputs])
        return MaskedMLP(group.masks, group.skip, loc, self._init_scale)

    # ---------------------------------------------------------------- running
    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Sample every latent (a dict ``{site: constrained value}``). Also accepts the
        ``observations=`` keyword that :class:`pyro.infer.CSIS` passes."""
        observations = kwargs.pop("observations", None)
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        return self._run(plates, args, kwargs, observations, median=False)

    @torch.no_grad()
    def median(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """The location path: each latent at its conditional median given the medians
        of its inverse parents (one pass per generation, no noise)."""
        observations = kwargs.pop("observations", None)
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with poutine.block():
            plates = self._create_plates(*args, **kwargs)
            return self._run(plates, args, kwargs, observations, median=True)

    @torch.no_grad()
    def quantiles(
        self, quantiles: Sequence[float] | torch.Tensor, *args: Any, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Monte Carlo quantiles (1000 draws; ``num_samples=`` to change), shaped
        ``(len(quantiles), *site_shape)``."""
        num = int(kwargs.pop("num_samples", 1000))
        observations = kwargs.pop("observations", None)
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        particles = pyro.plate("_faithful_quantiles", num, dim=-(self._nesting + 1))
        with poutine.block(), particles:
            plates = self._create_plates(*args, **kwargs)
            draws = self._run(plates, args, kwargs, observations, median=False)
        q = torch.as_tensor(quantiles, dtype=torch.get_default_dtype())
        out = {}
        for n, v in draws.items():
            k = len(self.graph.sites[n].shape)
            v = v.expand(num, *v.shape[1:]) if v.shape[0] == 1 else v
            out[n] = torch.quantile(v.reshape(num, *v.shape[v.dim() - k :]), q, dim=0)
        return out

    def _run(
        self,
        plates: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        observations: Mapping[str, Any] | None,
        median: bool,
    ) -> dict[str, torch.Tensor]:
        plan = self.plan
        plate = self._the_plate(plates)
        feats = self._observed_features(plate, args, kwargs, observations)
        for i, s in enumerate(plan.summaries):
            feats[s.name] = self.embeds[i](_cat([feats[n] for n in s.sites]))
        values: dict[str, torch.Tensor] = {}
        self._pass(plan.global_, self.global_net, feats, values, median, local=False)
        if plan.local:
            with plate:
                self._pass(plan.local, self.local_net, feats, values, median, local=True)
        return values

    def _the_plate(self, plates: Mapping[str, Any]) -> Any:
        """The guide's plate object for the model's plate (None without plates)."""
        name = self._plate_name
        if name is None:
            return None
        if name not in plates:  # a part of AutoGuideList whose master lacks the plate
            f = self._prototype_frames[name]
            return pyro.plate(name, f.full_size or f.size, subsample_size=f.size, dim=f.dim)
        return plates[name]

    def _pass(
        self,
        group: GroupPlan,
        net: MaskedMLP | None,
        feats: dict[str, torch.Tensor],
        values: dict[str, torch.Tensor],
        median: bool,
        local: bool,
    ) -> None:
        if net is None:  # a group without latents
            return
        sched = group.schedule
        known = []
        for b in sched.known:
            t = feats[b.name]
            if local and (b.kind == "summary" or self._layouts[b.name].axis is None):
                t = t.unsqueeze(-2)  # a global feature, the same for every row
            known.append(t)
        steps = net.steps(sched, _cat(known) if known else None)
        for sites in sched.sites:
            loc, scale = steps.outputs()
            for name, offset, size in sites:
                sl = slice(offset, offset + size) if len(sites) > 1 else slice(None)
                values[name], feats[name] = self._emit(
                    name, loc[..., sl], scale[..., sl], median, local
                )
            us = [feats[name] for name, _, _ in sites]
            steps.update(_cat(us) if len(us) > 1 else us[0])

    def _emit(
        self, name: str, loc: torch.Tensor, scale: torch.Tensor, median: bool, local: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (or take the median of) one site; return (value, its row features)."""
        lay = self._layouts[name]
        loc = lay.unrows(loc, self._nesting, local)
        scale = lay.unrows(scale, self._nesting, local)
        transform = lay.site_transform.with_cache(1)  # a new object: see SiteTransform
        if median:
            value, u = transform(loc), loc
        else:
            if lay.mvn:
                tril = operator.attrgetter(name)(self.trils).tril(-1)
                unit = tril + torch.eye(lay.size, dtype=loc.dtype)
                base = dist.MultivariateNormal(loc, scale_tril=unit * scale.unsqueeze(-2))
            else:
                base = dist.Normal(loc, scale).to_event(len(lay.event))
            value = pyro.sample(name, dist.TransformedDistribution(base, [transform]))
            u = transform.inv(value)
        if lay.flat:
            u = u.reshape((*u.shape[: u.dim() - 1], *lay.event))
        return value, lay.rows(u, self._nesting)

    def _observed_features(
        self,
        plate: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        observations: Mapping[str, Any] | None,
    ) -> dict[str, torch.Tensor]:
        """Per-row features of the observed sites of this call, rows matching ``plate``."""
        names = sorted(self.graph.observed, key=lambda n: self.graph.sites[n].order)
        found = {n: observations[n] for n in names if observations and n in observations}
        missing = [n for n in names if n not in found]
        key = _cache_key(args, kwargs)
        cacheable = not (
            found or torch.jit.is_tracing() or (plate and plate.subsample_size < plate.size)
        )
        if cacheable and self._obs_cache is not None and self._obs_cache[0] == key:
            return dict(self._obs_cache[2])
        if missing:
            data = {} if plate is None else {plate.name: plate._indices}
            model = poutine.trace(poutine.condition(self._raw_model[0], data=data))
            # the run's latent draws must not move the global RNG: seeded draws of the
            # guide would depend on whether this call's observations were cached
            with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=[]):
                tr = model.get_trace(*args, **kwargs)
            for n in missing:
                site = tr.nodes.get(n)
                if site is None or not site["is_observed"]:
                    raise missing_observation(n, "no site" if site is None else "a latent site")
                found[n] = site["value"]
        out = {}
        for n in names:
            v = torch.as_tensor(found[n]).detach().to(torch.get_default_dtype())
            lay = self._layouts[n]
            check_observed_shape(n, tuple(v.shape), lay.shape, lay.axis)
            out[n] = lay.rows(v, self._nesting)
        if cacheable:  # the args are kept alive, so their ids stay theirs
            self._obs_cache = (key, (args, kwargs), dict(out))
        return out


def _cat(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate feature blocks on the last dim, broadcasting their batch dims."""
    shapes = {p.shape[:-1] for p in parts}
    if len(shapes) == 1:  # the common case: nothing to broadcast
        return torch.cat(list(parts), dim=-1)
    batch = torch.broadcast_shapes(*shapes)
    return torch.cat([p.expand(*batch, p.shape[-1]) for p in parts], dim=-1)


def _cache_key(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Identity of the call's arguments (observations are cached per identical objects);
    a tensor's version counter also changes the key, so in-place updates are seen."""

    def ident(a: Any) -> tuple[int, int | None]:
        return id(a), getattr(a, "_version", None)

    return tuple(map(ident, args)) + tuple((k, ident(v)) for k, v in sorted(kwargs.items()))
