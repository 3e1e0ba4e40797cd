r"""``ForwardKL``: inference compilation as a NumPyro loss, for any ``SVI``.

Amortized guides can be trained on the joint distribution of the model instead of on
data (Le et al. 2017, "Inference compilation"; the training of Webb et al. 2018):

.. math:: \mathcal{L}(\phi) = \mathbb{E}_{p(z, x)}\big[-\log q_\phi(z \mid x)\big]
          = \mathbb{E}_{p(x)}\,\mathrm{KL}\big(p(z \mid x)\,\|\,q_\phi(z \mid x)\big)
          + \text{const},

estimated with ``num_particles`` joint draws: the model runs with its observed sites
unconditioned (the data arguments only fix shapes and plate sizes), then the guide scores
the drawn latents given the drawn observations, which it receives as
``observations={site: value}`` (the convention of Pyro's ``CSIS``; ``AutoFaithfulMADE``
accepts it). Draws pass through ``stop_gradient``: only the guide's parameters get
gradients. Subsampled plates are replayed, so local terms carry the plate's scale.
Pyro's :class:`faithful_guides.pyro.ForwardKL` is the same loss.

Example:
    >>> from numpyro.infer import SVI
    >>> from numpyro.optim import Adam
    >>> svi = SVI(model, guide, Adam(1e-3), ForwardKL(num_particles=8))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.infer.elbo import ELBO
from numpyro.primitives import Messenger

__all__ = ["ForwardKL"]


class _Uncondition(Messenger):
    """Turn observed sample sites into draws from their distribution (NumPyro has no
    ``poutine.uncondition``); remembers which sites it turned."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__(fn)
        self.observed: set[str] = set()

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and msg["is_observed"]:
            self.observed.add(msg["name"])
            msg["value"], msg["is_observed"] = None, False


class ForwardKL(ELBO):
    """Loss ``E_{p(z,x)}[-log q(z | x)]`` for ``SVI`` (see the module docstring).

    Args:
        num_particles: joint draws per step (their losses are averaged).
        vectorize_particles: as in :class:`numpyro.infer.Trace_ELBO`.
    """

    def __init__(self, num_particles: int = 1, vectorize_particles: bool = True) -> None:
        if not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(f"num_particles must be a positive int, found {num_particles!r}.")
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def loss_with_mutable_state(
        self,
        rng_key: jax.Array,
        param_map: dict[str, jax.Array],
        model: Callable[..., Any],
        guide: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if "observations" in kwargs:
            raise ValueError(
                "ForwardKL passes the model's draws to the guide as observations=...; do "
                "not pass an observations= keyword to SVI.update."
            )

        def particle(key: jax.Array) -> jax.Array:
            model_key, guide_key = jax.random.split(key)
            unconditioned = _Uncondition(handlers.substitute(model, data=param_map))
            joint = handlers.trace(handlers.seed(unconditioned, model_key)).get_trace(
                *args, **kwargs
            )
            joint = {
                n: {**s, "value": jax.lax.stop_gradient(s["value"])}
                for n, s in joint.items()
                if s["type"] in ("sample", "plate")
            }
            drawn = {n: joint[n]["value"] for n in unconditioned.observed}
            scored = handlers.trace(
                handlers.replay(
                    handlers.seed(handlers.substitute(guide, data=param_map), guide_key),
                    trace=joint,
                )
            ).get_trace(*args, observations=drawn, **kwargs)
            total = jnp.zeros(())
            for name, site in scored.items():
                if site["type"] != "sample":
                    continue
                if name in drawn:
                    raise ValueError(
                        f"The guide samples site {name!r}, which the model observes; "
                        "ForwardKL scores the guide's latent sites only."
                    )
                log_prob = jnp.sum(site["fn"].log_prob(site["value"]))
                scale = site["scale"]
                total = total + (log_prob if scale is None else scale * log_prob)
            return -total

        if self.num_particles == 1:
            return {"loss": particle(rng_key), "mutable_state": None}
        keys = jax.random.split(rng_key, self.num_particles)
        loss = jnp.mean(self.vectorize_particles_fn(particle, keys))
        return {"loss": loss, "mutable_state": None}
