r"""The NumPyro AutoFaithfulMADE guide: the same guide as Pyro's, on the NumPyro core.

.. math:: q(z \mid x) = \prod_v q(z_v \mid \mathrm{Pa}_H(z_v))

with :math:`H` the faithful inverse (Webb et al. 2018); each conditional a Gaussian in
unconstrained space around the site's free location, corrected by one DAG-masked MADE per
plate group (:mod:`faithful_guides.autoguides.made_plan`). Set-up, inputs, plates and
emission are :class:`~faithful_guides.backends.numpyro.guide.FaithfulGuide`'s.

Example:
    >>> from numpyro.infer import SVI, Trace_ELBO
    >>> from numpyro.optim import Adam
    >>> guide = AutoFaithfulMADE(model)  # doctest: +SKIP
    >>> svi = SVI(model, guide, Adam(1e-2), Trace_ELBO())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from faithful_guides.autoguides.made_plan import MadeGroup, MadePlan, build_made_plan
from faithful_guides.backends.numpyro.guide import FaithfulGuide
from faithful_guides.backends.numpyro.inputs import _cat
from faithful_guides.backends.numpyro.nets import MadeSteps, Packed, init_made, made_forward

__all__ = ["AutoFaithfulMADE"]

Array = jax.Array


class AutoFaithfulMADE(FaithfulGuide):
    """Amortized guide with the faithful inverse structure, one DAG-masked MADE per group of
    latents that share plates, a drop-in for ``AutoNormal``.

    Args:
        model: a NumPyro model with continuous latents.
        structure: ``"nami"`` (minimal faithful inverse), ``"heuristic"`` or ``"full"``.
        hidden_dims: hidden widths of each MADE; default two layers of
            ``max(32, 2 F)``, ``F`` the most input features one output sees.
        summary_dim: embedding width of each plate summary.
        init_loc_fn: per-site init strategy, as in ``AutoNormal``.
        init_scale: initial scale of every unconstrained site.
        amortize_subsampled: whether globals read summaries of subsampled plates (off: fit
            one data set by minibatches; on: amortized training across data sets).
        create_plates: as in :class:`numpyro.infer.autoguide.AutoNormal` (subsampling).
        prefix: prefix of the parameter names.

    Methods ``median(params, *args)``, ``quantiles(params, quantiles, *args)`` and
    ``sample_posterior(rng_key, params, *args, sample_shape=())`` take the model's
    arguments (the guide is amortized); without them they use the arguments of set-up.

    Example:
        >>> guide = AutoFaithfulMADE(model, hidden_dims=(64, 64))  # doctest: +SKIP
        >>> svi = SVI(model, guide, Adam(1e-2), Trace_ELBO())  # doctest: +SKIP
    """

    _plan: MadePlan | None = None

    def _build(self, key: Array) -> dict[str, Array]:
        self._plan = build_made_plan(self.structure, hidden=self.hidden_dims)
        out = {}
        keys = jax.random.split(key, max(len(self._plan.groups), 1))
        self._packs: dict[int, Packed] = {}
        for i, (k, g) in enumerate(zip(keys, self._plan.groups, strict=False)):
            if g.has_net:
                net = init_made(k, g.masks)
                self._packs[i] = Packed(net)
                out[self._net_name(g)] = self._packs[i].flat(net)
        return out

    def _net_name(self, group: MadeGroup) -> str:
        """A group's network parameter (one flat vector): named after its first latent, so
        two guides of one ``AutoGuideList`` never share a name."""
        return f"{self.prefix}_made[{group.outputs[0].name}]"

    def net_params(self, params: Mapping[str, Array], index: int) -> dict[str, Array]:
        """The weights of group ``index``'s MADE in ``params`` (``W0``, ``b0``, ..., ``S``)."""
        flat = params[self._net_name(self._plan.groups[index])]
        return self._packs[index].unpack(flat)

    @property
    def plan(self) -> MadePlan:
        """The :class:`~faithful_guides.autoguides.made_plan.MadePlan` built at set-up."""
        return self._plan

    def _sample(
        self, params: Mapping[str, Array], feats: dict[str, Array], plates: Any, median: bool
    ) -> dict[str, Array]:
        values: dict[str, Array] = {}
        for i, g in enumerate(self._plan.groups):
            with self._group_plates(g.group.in_plate, plates):
                self._pass(params, i, g, feats, values, plates, median)
        return values

    def _pass(
        self,
        params: Mapping[str, Array],
        index: int,
        g: MadeGroup,
        feats: dict[str, Array],
        values: dict[str, Array],
        plates: Any,
        median: bool,
    ) -> None:
        """Sample one group generation by generation (:class:`MadeSteps`)."""
        if not g.has_net:
            for gen in g.generations:
                for name in gen:
                    values[name], feats[name] = self._emit(params, name, None, None, plates, median)
            return
        sched = g.schedule
        known = [self._block(b, feats) for b in sched.known]
        x = _cat(known) if known else None
        net = self.net_params(params, index)
        if len(g.generations) == 1:  # nothing to feed back: one full pass is fewer ops
            mu, rho = made_forward(net, g.masks, g.skip, x)
            for name, offset, size in sched.sites[0]:
                sl = slice(offset, offset + size)
                values[name], feats[name] = self._emit(
                    params, name, mu[..., sl], rho[..., sl], plates, median
                )
            return
        steps = MadeSteps(net, g.masks, g.skip, sched, x)
        for sites, fed in zip(sched.sites, sched.feeds, strict=True):
            mu, rho = steps.outputs()
            for name, offset, size in sites:
                sl = slice(offset, offset + size)
                values[name], feats[name] = self._emit(
                    params, name, mu[..., sl], rho[..., sl], plates, median
                )
            steps.update(_cat([feats[n] for n in fed]) if fed else None)
