"""``fit``, ``simulate`` and ``fit_bank`` (faithful_guides.training), the same tests for both
hosts: the models are written once through the zoo's :class:`~faithful_guides.zoo.Host`."""

from __future__ import annotations

import numpy as np
import pytest

from faithful_guides.zoo import get_host

HOST_NAMES = ["pyro", "numpyro"]
ROWS = 20


class _Host:
    """The host's public module, primitives, and the few calls that differ."""

    def __init__(self, name: str) -> None:
        self.name, self.h = name, get_host(name)
        self.api = __import__(f"faithful_guides.{name}", fromlist=["fit"])
        if name == "pyro":
            import pyro
            import torch
            from pyro.infer.autoguide import AutoNormal
            from pyro.optim import Adam

            torch.set_num_threads(1)
            pyro.set_rng_seed(0)
            pyro.clear_param_store()
            self.AutoNormal, self.adam = AutoNormal, lambda lr: Adam({"lr": lr})
        else:
            from numpyro.infer.autoguide import AutoNormal
            from numpyro.optim import Adam

            self.AutoNormal, self.adam = AutoNormal, Adam

    def median(self, guide, result, x) -> float:
        if self.name == "pyro":
            return float(guide.median(x)["mu"])
        return float(guide.median(result.params, x)["mu"])


@pytest.fixture(params=HOST_NAMES)
def host(request) -> _Host:
    return _Host(request.param)


def _plate_model(h):
    """``mu ~ N(0, 2)``, ``ROWS`` rows ``x_i ~ N(mu, 1)`` in a plate."""

    def model(x):
        mu = h.sample("mu", h.dist.Normal(0.0, 2.0))
        with h.plate("data", ROWS):
            h.sample("x", h.dist.Normal(mu, 1.0), obs=x)

    return model


def _data(h, mean: float, seed: int = 0):
    return h.tensor(mean + np.random.default_rng(seed).standard_normal(ROWS))


def test_fit_reduces_the_loss_and_is_quiet_without_progress(host: _Host, capsys) -> None:
    h = host.h
    model, data = _plate_model(h), _data(h, 1.5)
    guide = host.AutoNormal(model)
    result = host.api.fit(model, guide, data, num_steps=300, progress=False)
    assert capsys.readouterr() == ("", "")
    assert result.losses.shape == (300,) and np.isfinite(result.losses).all()
    assert result.losses[-30:].mean() < result.losses[:30].mean() - 1.0
    assert result.guide is guide
    assert (result.params is None) == (host.name == "pyro")
    host.api.fit(model, host.AutoNormal(model), data, num_steps=3, progress=True)
    assert "loss=" in capsys.readouterr().err


def test_fit_names_the_site_of_a_non_finite_loss(host: _Host) -> None:
    h = host.h
    model = _plate_model(h)

    def guide(x):
        h.sample("mu", h.dist.Normal(h.param("loc", h.tensor(0.0)), 1.0))

    bad = h.tensor(np.r_[np.inf, np.zeros(ROWS - 1)])
    with pytest.raises(FloatingPointError, match=r"step 0 of 5(.|\n)*site 'x' \(model\)"):
        host.api.fit(model, guide, bad, num_steps=5, progress=False)

    def scale_model(x):  # an lr of 1e6 sends s far out, exp(s) overflows
        s = h.sample("s", h.dist.Normal(0.0, 1.0))
        h.sample("x", h.dist.Normal(0.0, h.np.exp(s)), obs=x)

    def scale_guide(x):
        h.sample("s", h.dist.Normal(h.param("loc_s", h.tensor(0.0)), 0.1))

    with pytest.raises(FloatingPointError, match=r"site 'x'(.|\n)*lower the learning rate"):
        host.api.fit(
            scale_model,
            scale_guide,
            h.tensor(5.0),
            num_steps=5,
            optim=host.adam(1e6),
            progress=False,
        )


def test_simulate_shapes(host: _Host) -> None:
    h = host.h
    model, data = _plate_model(h), _data(h, 0.0)
    bank = host.api.simulate(model, data, num=7, seed=1)
    assert isinstance(bank, host.api.SimulationBank) and bank.num == 7
    assert {k: v.shape for k, v in bank.latents.items()} == {"mu": (7,)}
    assert {k: v.shape for k, v in bank.observations.items()} == {"x": (7, ROWS)}
    assert not np.allclose(bank.observations["x"][0], np.asarray(data))  # drawn, not the data
    assert len(np.unique(bank.latents["mu"])) == 7
    again = host.api.simulate(model, data, num=7, seed=1)
    np.testing.assert_array_equal(again.latents["mu"], bank.latents["mu"])


def test_fit_bank_learns_the_amortized_posterior(host: _Host) -> None:
    """NPE on 400 simulations (up to 30 epochs); the exact posterior mean of mu given 20 rows is
    ``sum(x) / (20 + 1/4)``."""
    h = host.h
    model, shape_only = _plate_model(h), _data(h, 0.0)
    bank = host.api.simulate(model, shape_only, num=400, seed=0)
    guide = host.api.AutoFaithfulMADE(model)
    result = host.api.fit_bank(
        model,
        guide,
        bank,
        shape_only,
        batch_size=16,
        num_epochs=30,
        patience=5,
        optim=host.adam(1e-2),
        progress=False,
    )
    assert result.losses.shape == result.validation_losses.shape
    assert result.validation_losses[result.best_epoch] == result.validation_losses.min()
    assert result.validation_losses.min() < result.validation_losses[0]
    for mean, seed in ((-1.5, 3), (0.7, 5)):
        x = _data(h, mean, seed)
        exact = float(np.asarray(x).sum()) / (ROWS + 0.25)
        assert abs(host.median(guide, result, x) - exact) < 0.3, (mean, exact)


def test_fit_bank_stops_early_and_names_bad_simulations(host: _Host) -> None:
    h = host.h
    model, shape_only = _plate_model(h), _data(h, 0.0)
    bank = host.api.simulate(model, shape_only, num=40, seed=0)
    guide = host.api.AutoFaithfulMADE(model)  # set up once (NumPyro's setup is the slow part)
    result = host.api.fit_bank(
        model,
        guide,
        bank,
        shape_only,
        batch_size=8,
        num_epochs=20,
        patience=2,
        optim=host.adam(0.0),
        progress=False,
    )
    # lr 0: the validation loss never improves after the first epoch
    assert len(result.validation_losses) == 3 and result.best_epoch == 0
    bank.latents["mu"][:] = np.inf
    with pytest.raises(FloatingPointError, match=r"simulation \d+ of the bank(.|\n)*site 'mu'"):
        host.api.fit_bank(
            model,
            guide,
            bank,
            shape_only,
            batch_size=8,
            num_epochs=1,
            progress=False,
        )
