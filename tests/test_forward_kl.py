"""ForwardKL (inference compilation as an SVI loss), the same tests for both hosts."""

from __future__ import annotations

import numpy as np
import pytest

from faithful_guides.exact import LinearGaussianBN
from faithful_guides.zoo import get_host
from faithful_guides.zoo.experiments import HOSTS, mc_kl, tree_weights

HOST_NAMES = ["pyro", "numpyro"]
STEPS_PLATE = 400


class _Fit:
    """Train a guide with SVI(ForwardKL) on one host; read back its parameters."""

    def __init__(self, host: str, model, guide_kwargs=None, lr: float = 1e-2, **loss_kwargs):
        self.host = host
        if host == "pyro":
            import pyro
            import torch
            from pyro.infer import SVI
            from pyro.optim import Adam

            from faithful_guides.pyro import AutoFaithfulMADE, ForwardKL

            torch.set_num_threads(1)
            pyro.set_rng_seed(0)
            pyro.clear_param_store()
            self.guide = AutoFaithfulMADE(model, **(guide_kwargs or {}))
            self.svi = SVI(model, self.guide, Adam({"lr": lr}), ForwardKL(**loss_kwargs))
        else:
            import jax
            from numpyro.infer import SVI
            from numpyro.optim import Adam

            from faithful_guides.numpyro import AutoFaithfulMADE, ForwardKL

            self.guide = AutoFaithfulMADE(model, **(guide_kwargs or {}))
            self.svi = SVI(model, self.guide, Adam(lr), ForwardKL(**loss_kwargs))
            self.key, self.state, self.update = jax.random.PRNGKey(0), None, None

    def step(self, *args, **kwargs) -> float:
        if self.host == "pyro":
            return self.svi.step(*args, **kwargs)
        import jax

        if self.state is None:
            self.state = self.svi.init(self.key, *args, **kwargs)
            self.update = jax.jit(self.svi.update)
        self.state, loss = self.update(self.state, *args, **kwargs)
        return float(loss)

    def params(self) -> dict[str, np.ndarray]:
        if self.host == "pyro":
            import pyro

            store = pyro.get_param_store()
            return {k: store[k].detach().numpy().copy() for k in store.get_all_param_names()}
        return {k: np.asarray(v) for k, v in self.svi.get_params(self.state).items()}

    def median(self, *args) -> dict[str, float]:
        if self.host == "pyro":
            return {k: v.detach().numpy() for k, v in self.guide.median(*args).items()}
        return {
            k: np.asarray(v)
            for k, v in self.guide.median(self.svi.get_params(self.state), *args).items()
        }


@pytest.mark.parametrize("host", HOST_NAMES)
def test_forward_kl_reaches_the_exact_posterior_of_a_tree(host: str) -> None:
    """Amortized over a data plate: depth-3 tree, fresh joint draws every step."""
    train, guides = HOSTS[host]
    bn = LinearGaussianBN.tree(3, tree_weights(3))
    held_out = bn.sample(np.random.default_rng(99), 100)[1]
    trained = train(
        bn, 3, guides()["AutoFaithfulMADE"], 2000, 1e-2, 100, True, held_out, 0, objective="forward"
    )
    assert mc_kl(bn, trained, held_out) < 0.1


def _plate_mean_model(host: str):
    """``mu ~ N(0, 2)``, 1000 rows ``x_i ~ N(mu, 1)`` in a plate subsampled by 100."""
    h = get_host(host)

    def model(x):
        mu = h.sample("mu", h.dist.Normal(0.0, 2.0))
        with h.plate("data", 1000, subsample_size=100) as idx:
            h.sample("x", h.dist.Normal(mu, 1.0), obs=x[idx])

    return model


@pytest.mark.parametrize("host", HOST_NAMES)
def test_forward_kl_subsampled_plate_is_amortized(host: str) -> None:
    """Trained on the model's own draws only (minibatches of 100 of 1000 rows), then given
    data it never saw: the global latent is read from the plate summary (its raw row mean
    reaches the output through the direct connections)."""
    h = get_host(host)
    fit = _Fit(
        host,
        _plate_mean_model(host),
        guide_kwargs={"amortize_subsampled": True},  # each minibatch is data here
        lr=2e-2,
        num_particles=4,
    )
    shape_only = h.tensor(np.zeros(1000))
    losses = [fit.step(shape_only) for _ in range(STEPS_PLATE)]
    assert np.isfinite(losses).all() and np.mean(losses[-50:]) < np.mean(losses[:50])
    for true_mu in (-3.0, 2.5):
        data = h.tensor(true_mu + np.random.default_rng(0).standard_normal(1000))
        assert abs(float(fit.median(data)["mu"]) - true_mu) < 0.3, true_mu


@pytest.mark.parametrize("host", HOST_NAMES)
def test_forward_kl_errors(host: str) -> None:
    from faithful_guides.zoo import ZOO

    forward_kl = __import__(f"faithful_guides.{host}", fromlist=["ForwardKL"]).ForwardKL
    with pytest.raises(ValueError, match="num_particles must be a positive int, found 0"):
        forward_kl(num_particles=0)
    model, args, kwargs = ZOO["collider"](host)
    guide = _Fit(host, model).guide
    key = () if host == "pyro" else (__import__("jax").random.PRNGKey(0), {})
    with pytest.raises(ValueError, match="do not pass an observations= keyword"):
        forward_kl().loss(*key, model, guide, *args, observations={}, **kwargs)
