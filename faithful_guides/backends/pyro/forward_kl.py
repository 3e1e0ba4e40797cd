r"""``ForwardKL``: inference compilation as a Pyro loss, for any ``SVI``.

Amortized guides can be trained on the joint distribution of the model instead of on
data (Le et al. 2017, "Inference compilation"; the training of Webb et al. 2018):

.. math:: \mathcal{L}(\phi) = \mathbb{E}_{p(z, x)}\big[-\log q_\phi(z \mid x)\big]
          = \mathbb{E}_{p(x)}\,\mathrm{KL}\big(p(z \mid x)\,\|\,q_\phi(z \mid x)\big)
          + \text{const},

estimated with ``num_particles`` joint draws: the model runs with its observed sites
unconditioned (the data arguments only fix shapes and plate sizes), then the guide scores
the drawn latents given the drawn observations, which it receives as
``observations={site: value}`` (the convention of :class:`pyro.infer.CSIS`;
``AutoFaithfulMADE`` accepts it). Draws are detached: only the guide's parameters get
gradients. Subsampled plates are replayed, so local terms carry the plate's scale.

Unlike the ELBO it needs no reparametrized guide and never samples from the guide, so it
is mode-covering and stable early in training; its loss is ``E[-log q]``, not a bound.

Example:
    >>> from pyro.infer import SVI
    >>> from pyro.optim import Adam
    >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), ForwardKL(num_particles=8))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.infer.util import torch_item

__all__ = ["ForwardKL"]


class ForwardKL(ELBO):
    """Loss ``E_{p(z,x)}[-log q(z | x)]`` for ``SVI`` (see the module docstring).

    Args:
        num_particles: joint draws per step (their losses are averaged).
    """

    def __init__(self, num_particles: int = 1) -> None:
        if not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(f"num_particles must be a positive int, found {num_particles!r}.")
        super().__init__(num_particles=num_particles)

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The loss as a tensor that carries gradients to the guide's parameters."""
        total = 0.0
        for _ in range(self.num_particles):
            total = total + self._particle(model, guide, args, kwargs)
        return total / self.num_particles

    def loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> float:
        with torch.no_grad():
            return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        return torch_item(loss)

    def _particle(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
    ) -> torch.Tensor:
        _, scored = self._get_trace(model, guide, args, kwargs)
        return -scored.log_prob_sum()

    def _get_trace(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict
    ) -> tuple[poutine.Trace, poutine.Trace]:
        """One joint draw ``(z, x) ~ p`` (detached) and the guide's trace scoring it."""
        if "observations" in kwargs:
            raise ValueError(
                "ForwardKL passes the model's draws to the guide as observations=...; do "
                "not pass an observations= keyword to SVI.step."
            )
        with torch.no_grad():
            joint = poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs)
        observations = {
            name: site["value"]
            for name, site in joint.nodes.items()
            if site["type"] == "sample" and site["infer"].get("was_observed", False)
        }
        scored = poutine.trace(poutine.replay(guide, trace=joint)).get_trace(
            *args, observations=observations, **kwargs
        )
        for name, site in scored.nodes.items():
            if site["type"] == "sample" and name in observations:
                raise ValueError(
                    f"The guide samples site {name!r}, which the model observes; ForwardKL "
                    "scores the guide's latent sites only."
                )
        return joint, scored
