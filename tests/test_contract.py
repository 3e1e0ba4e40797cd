"""The drop-in contract of every guide family on both hosts: training on the zoo, ELBO
variants, Predictive, median, quantiles, save/load, AutoGuideList, subsampling, errors.

Each test runs for every (host, family) of :data:`families.FAMILIES` through the per-host
adapters of :mod:`hosts`; a new family is covered by adding one line there. Host-specific
tests close the file (Pyro: ``CSIS``, ``JitTrace_ELBO``, in-place data updates; NumPyro:
``sample_posterior`` shapes, free batch dims). Trained zoo guides are shared by the tests
that only read them (:func:`trained`), which keeps the file fast.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from conftest import adapter
from families import FAMILIES
from hosts import Fit, GuideHost

from faithful_guides.zoo import binary_tree, hier_regression, vae

HOSTS = ("pyro", "numpyro")
CASES = [(h, f) for h in HOSTS for f in FAMILIES]


@pytest.fixture(params=CASES, ids=[f"{h}-{f}" for h, f in CASES])
def host(request: pytest.FixtureRequest) -> GuideHost:
    """Each (host, family) adapter, fresh global state (Pyro: param store cleared, seed 0)."""
    return adapter(*request.param)


@pytest.fixture(params=list(FAMILIES))
def pyro_host(request: pytest.FixtureRequest) -> GuideHost:
    return adapter("pyro", request.param)


@pytest.fixture(params=list(FAMILIES))
def numpyro_host(request: pytest.FixtureRequest) -> GuideHost:
    return adapter("numpyro", request.param)


TRAIN_STEPS = 150
_FITS: dict[tuple[str, str, str], Fit] = {}


def trained(h: GuideHost, name: str) -> Fit:
    """Zoo model ``name`` trained ``TRAIN_STEPS`` Trace_ELBO steps, once per session (the
    tests that use it only read it)."""
    if (h.name, h.family, name) not in _FITS:
        model, args, kwargs = h.spec(name)
        _FITS[h.name, h.family, name] = h.train(model, h.guide(model), args, kwargs, TRAIN_STEPS)
    return _FITS[h.name, h.family, name]


def trace_model(h: GuideHost, model: Any, *args: Any, **kwargs: Any) -> Any:
    if h.name == "pyro":
        from faithful_guides.pyro import trace_model as tracer
    else:
        from faithful_guides.numpyro import trace_model as tracer
    return tracer(model, *args, **kwargs)


# ------------------------------------------------------------------------------ training
ZOO_MODELS = [
    "student",
    "collider",
    "arithmetic",
    "constrained",
    "vector_event",
    "eight_schools",
    "state_space",
]


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_trains_on_zoo(host: GuideHost, name: str) -> None:
    """Every parameter gets a finite gradient at initialization, nonzero except behind a
    zero-initialized output layer (hidden layers get theirs from the second step); the
    loss falls; one draw per latent, shaped as the site."""
    fit = trained(host, name)
    grads = host.init_grads(fit)
    assert grads
    for k, g in grads.items():
        assert np.isfinite(g).all(), k
        if not host.behind_zero_output(fit, k):
            assert np.abs(g).max() > 0, f"no gradient for {k}"
    assert np.isfinite(fit.losses).all()
    for window in (30, 50):
        assert fit.losses[-window:].mean() < fit.losses[:window].mean(), window
    graph = trace_model(host, fit.model, *fit.args, **fit.kwargs)
    values = host.sample(fit, fit.args, seed=0)
    assert set(values) == set(graph.latent)
    for n, v in values.items():
        assert v.shape == graph.sites[n].shape, n


def test_subsampling_trains_and_param_shapes_do_not_depend_on_it(host: GuideHost) -> None:
    """1000 rows, whole or subsampled 100 or 250 at a time: all train, the subsampled guide
    finds the slope, and the parameters' shapes do not depend on the minibatch size (a
    subsampled plate's globals are fitted by free parameters rather than summaries, so
    only the whole-data guide differs)."""
    shapes = []
    for sub, steps in ((None, 200), (250, 150), (100, 300)):
        model, args, kwargs = hier_regression(host.host, 1000, subsample_size=sub)
        fit = host.train(model, host.guide(model), args, kwargs, steps)
        assert np.isfinite(fit.losses).all(), sub
        assert fit.losses[-30:].mean() < fit.losses[:30].mean(), sub
        shapes.append(host.param_shapes(fit))
    assert abs(float(host.median(fit)["slope"]) - 2.0) < 0.3
    assert shapes[1] and shapes[1] == shapes[2]


@pytest.mark.parametrize("kind", ["tracegraph", "renyi", "vectorized", "meanfield"])
@pytest.mark.filterwarnings("ignore:Failed to verify mean field restriction")
def test_elbo_variants(host: GuideHost, kind: str) -> None:
    model, args, kwargs = host.spec("eight_schools")
    fit = host.train(model, host.guide(model), args, kwargs, 100, elbo=host.elbo(kind))
    assert np.isfinite(fit.losses).all()


@pytest.mark.filterwarnings("ignore:Failed to verify mean field restriction")
@pytest.mark.parametrize("name", ["student", "eight_schools", "constrained"])
def test_meanfield_falls_back_to_monte_carlo(host: GuideHost, name: str) -> None:
    """No analytic KL may replace a site (it would be biased for an inverted guide): with the
    same seed, TraceMeanField_ELBO equals Trace_ELBO."""
    fit = trained(host, name)
    for site in trace_model(host, fit.model, *fit.args).latent:
        with pytest.raises(NotImplementedError):
            host.kl_divergence(*host.site_fns(fit, site))
    mf = host.loss(fit, host.elbo("meanfield"), seed=5)
    tr = host.loss(fit, host.elbo("trace"), seed=5)
    np.testing.assert_allclose(mf, tr, rtol=1e-5)


def test_autoguidelist_with_block(host: GuideHost) -> None:
    model, args, kwargs = host.spec("collider")
    fit = host.train(model, host.guide_list(model, ["z1"]), args, kwargs, 100)
    assert np.isfinite(fit.losses).all()
    assert set(host.sample(fit, args, seed=0)) == {"z1", "z2", "z3", "z4"}


# ------------------------------------------------------------------------------ posterior
def test_predictive_median_quantiles_constrained(host: GuideHost) -> None:
    fit = trained(host, "constrained")
    assert host.predictive(fit, 7, return_sites=["z_dirichlet"])["z_dirichlet"].shape == (7, 3)
    med = host.median(fit)
    np.testing.assert_allclose(med["z_dirichlet"].sum(-1), 1.0, rtol=1e-5)
    assert med["z_gamma"].shape == () and med["z_gamma"] > 0
    q = host.quantiles(fit, [0.1, 0.5, 0.9], 1000)
    assert q["z_dirichlet"].shape == (3, 3) and q["z_beta"].shape == (3,)
    assert q["z_beta"][0] < q["z_beta"][2]


def test_predictive_median_quantiles_plate(host: GuideHost) -> None:
    fit = trained(host, "eight_schools")
    pred = host.predictive(fit, 7, return_sites=["mu", "theta"])
    # Pyro's Predictive keeps the plate dim of a global site (so does it with AutoNormal)
    assert pred["theta"].shape == (7, 8)
    assert pred["mu"].shape == {"pyro": (7, 1), "numpyro": (7,)}[host.name]
    med = host.median(fit)
    assert med["theta"].shape == (8,) and med["tau"].shape == () and med["tau"] > 0
    q = host.quantiles(fit, [0.1, 0.5, 0.9], 200)
    assert q["theta"].shape == (3, 8)
    assert q["tau"][0] < q["tau"][2]


def test_observations_keyword_replaces_the_arguments(host: GuideHost) -> None:
    """``observations={site: value}`` conditions on those values instead of the arguments':
    same seed, same draws (and the same median and quantiles) as a call with that data.
    Reading new data leaves the seeded draws alone (Pyro: the hidden model run forks the
    RNG)."""
    fit = trained(host, "collider")
    other = (host.tensor(np.asarray(fit.args[0]) + 3.0),)
    assert not np.allclose(host.median(fit)["z3"], host.median(fit, other)["z3"])  # reads x
    moved = host.sample(fit, other, seed=7)
    given = host.sample(fit, fit.args, seed=7, observations={"x": other[0]})
    assert set(given) == {"z1", "z2", "z3", "z4"}
    for n, v in moved.items():
        np.testing.assert_array_equal(given[n], v, err_msg=n)
    by_obs = host.median(fit, observations={"x": other[0]})
    for n, v in host.median(fit, other).items():
        np.testing.assert_allclose(by_obs[n], v, rtol=1e-6, err_msg=n)
    qs = host.quantiles(fit, [0.1, 0.9], 200, observations={"x": other[0]})
    moved_fit = Fit(fit.model, fit.guide, other, fit.kwargs, fit.losses, fit.params)
    for n, v in host.quantiles(moved_fit, [0.1, 0.9], 200).items():
        np.testing.assert_allclose(qs[n], v, rtol=1e-5, err_msg=n)


@pytest.mark.parametrize("name", ["student", "eight_schools"])
def test_save_load_round_trip_identical_samples(host: GuideHost, name: str) -> None:
    """Pyro: ``state_dict`` through ``torch.save``; NumPyro: ``pickle`` of the params; each
    into a new guide, which then draws the same samples for the same seed."""
    fit = trained(host, name)
    loaded = host.save_load(fit)
    assert loaded.guide is not fit.guide
    for f in (fit, loaded):  # Pyro: a guide reading new data draws from the global RNG once
        host.sample(f, fit.args, seed=0)
    for seed in (4, 5, 6):
        a, b = host.sample(fit, fit.args, seed), host.sample(loaded, fit.args, seed)
        assert set(a) == set(b)
        for n in a:
            np.testing.assert_array_equal(a[n], b[n], err_msg=n)


# ------------------------------------------------------------------------------ VAE
VAE_ROWS, VAE_SUB, VAE_LATENT = 200, 50, 2


_VAE: dict[str, dict[int | None, Fit]] = {}


def vae_guides(h: GuideHost) -> dict[int | None, Fit]:
    """Set-up guides of the VAE over all rows (``None``) and subsampled, once per host."""
    if h.name not in _VAE:
        _VAE[h.name] = {
            sub: h.untrained(*vae(h.host, VAE_ROWS, subsample_size=sub, latent_dim=VAE_LATENT))
            for sub in (None, VAE_SUB)
        }
    return _VAE[h.name]


def test_vae_param_shapes_do_not_depend_on_subsample_size(host: GuideHost) -> None:
    shapes = [host.param_shapes(fit) for fit in vae_guides(host).values()]
    assert shapes[0] and shapes[0] == shapes[1]


def test_vae_trains_with_subsampling(host: GuideHost) -> None:
    """A local latent per row and a learned decoder: the loss falls, the decoder learns, draws
    are ``(rows, latent_dim)``, and the trained parameters serve all rows."""
    guides = vae_guides(host)
    sub = guides[VAE_SUB]
    init = host.model_params(sub.model, sub.args)
    fit = host.train(sub.model, sub.guide, sub.args, sub.kwargs, 300)
    assert np.isfinite(fit.losses).all()
    early, late = fit.losses[:30].mean(), fit.losses[-30:].mean()
    assert late < early - 0.25 * abs(early), (early, late)
    learned = host.model_params(fit.model, fit.args, fit.params)
    assert set(learned) == set(init) == {"decoder_w1", "decoder_b1", "decoder_w2", "decoder_b2"}
    assert all(not np.allclose(learned[k], init[k]) for k in init)
    z = host.sample(fit, fit.args, seed=0)["z"]
    assert z.shape == (VAE_SUB, VAE_LATENT) and np.isfinite(z).all()
    full = host.save_load(fit, into=guides[None])  # the trained parameters, all rows
    draws = host.draws(full, full.args, 10)["z"]
    assert draws.shape == (10, VAE_ROWS, VAE_LATENT) and np.isfinite(draws).all()


# ------------------------------------------------------------------------------ errors
def test_discrete_latent_error(host: GuideHost) -> None:
    h = host.host

    def model() -> None:
        h.sample("k", h.dist.Bernoulli(0.5))
        h.sample("x", h.dist.Normal(0.0, 1.0), obs=h.tensor(1.0))

    block = {"pyro": "poutine.block", "numpyro": "handlers.block"}[host.name]
    with pytest.raises(ValueError, match=rf"discrete latent sample site 'k'.*{re.escape(block)}"):
        host.setup(model, host.guide(model), ())


@pytest.mark.parametrize("name", ["collider", "eight_schools"])
def test_call_without_data_uses_setup_observations(host: GuideHost, name: str) -> None:
    """``guide(..., None)`` (Predictive without data) conditions on the set-up observations."""
    fit = trained(host, name)
    args = (*fit.args[:-1], None)  # the observed data is the last argument
    got, want = host.sample(fit, args, seed=0), host.sample(fit, fit.args, seed=0)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_missing_observation_error(host: GuideHost) -> None:
    """Without data and with another plate size than at set-up there is nothing to fall
    back on: the error names the site."""
    h = host.host

    def model(x: Any, y: Any = None) -> None:
        slope = h.sample("slope", h.dist.Normal(0.0, 10.0))
        with h.plate("data", x.shape[0]):
            h.sample("y", h.dist.Normal(slope * x, 1.0), obs=y)

    x40 = host.tensor(np.linspace(0.0, 1.0, 40))
    fit = host.untrained(model, (x40, 2.0 * x40))
    x = host.tensor(np.linspace(0.0, 1.0, 30))
    with pytest.raises(ValueError, match=r"Observed site 'y' has no observed value.*guide\(x\)"):
        host.sample(fit, (x, None), seed=0)


def test_observation_shape_error(host: GuideHost) -> None:
    fit = host.untrained(*host.spec("vector_event"))
    with pytest.raises(ValueError, match=r"Observed site 'x' has shape \(5,\)"):
        host.sample(fit, (host.tensor(np.zeros(5)),), seed=0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"init_scale": 0.0}, "init_scale > 0"),
        ({"hidden_dims": [0]}, "hidden_dims"),
        ({"hidden_dims": []}, "hidden_dims"),
        ({"summary_dim": 0}, "summary_dim"),
        ({"structure": "magic"}, "Unknown structure 'magic'"),
    ],
)
def test_bad_options(host: GuideHost, options: dict[str, Any], match: str) -> None:
    model, args, _ = host.spec("collider")
    with pytest.raises(ValueError, match=match):
        host.setup(model, host.guide(model, **options), args)


# ------------------------------------------------------------------------------ Pyro only
def test_pyro_jit_trace_elbo(pyro_host: GuideHost) -> None:
    """JitTrace_ELBO trains; AutoIterative's inner gradient, which torch.jit.trace cannot
    record, is refused with a clear error (its error-driven updates trace)."""
    h = pyro_host
    model, args, kwargs = h.spec("eight_schools")
    options = {}
    if h.family == "iterative":
        with pytest.raises(ValueError, match=r"torch.jit.trace \(JitTrace_ELBO\) cannot"):
            h.train(model, h.guide(model), args, kwargs, 2, elbo=h.elbo("jit"))
        options = {"inputs": "error"}
    fit = h.train(model, h.guide(model, **options), args, kwargs, 40, elbo=h.elbo("jit"))
    assert np.isfinite(fit.losses).all()


def test_pyro_csis_accepts_the_guide(pyro_host: GuideHost) -> None:
    from pyro.infer import CSIS
    from pyro.optim import Adam

    model, args, _ = pyro_host.spec("collider")
    guide = pyro_host.guide(model)
    csis = CSIS(model, guide, Adam({"lr": 1e-2}), num_inference_samples=5, training_batch_size=8)
    losses = [csis.step(*args) for _ in range(60)]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_pyro_observation_cache_sees_in_place_updates(pyro_host: GuideHost) -> None:
    """Same tensor object, new values in place: the guide must condition on the new values."""
    model, (x,), _ = binary_tree(pyro_host.host, 3)
    fit = pyro_host.train(model, pyro_host.guide(model), (x,), {}, 5)  # x matters after a step
    first = pyro_host.median(fit)
    x.add_(5.0)
    moved = pyro_host.median(fit)
    assert not np.allclose(first["z0"], moved["z0"])


# ------------------------------------------------------------------------------ NumPyro only
def test_numpyro_sample_posterior_shapes(numpyro_host: GuideHost) -> None:
    import jax

    fit = trained(numpyro_host, "eight_schools")

    @jax.jit
    def draw(key: jax.Array, params: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return fit.guide.sample_posterior(key, params, *fit.args, sample_shape=(5, 2))

    post = draw(jax.random.PRNGKey(1), fit.params)
    assert post["theta"].shape == (5, 2, 8) and post["tau"].shape == (5, 2)


def test_plate_not_leftmost_with_free_batch_dims(numpyro_host: GuideHost) -> None:
    """A latent with a batch dim that is in no plate, left of the plate's dim (once refused
    by NumPyro's guide): its draws have the site's shape, rows and free dims alike. (Pyro's
    own shape check refuses this model, for any guide.)"""
    host = numpyro_host
    h = host.host

    def model() -> None:
        with h.plate("p", 4, dim=-1):
            h.sample("z", h.dist.Normal(h.np.zeros((2, 4)), 1.0))
        h.sample("x", h.dist.Normal(0.0, 1.0), obs=h.tensor(1.0))

    fit = host.train(model, host.guide(model), (), {}, 20)
    assert np.isfinite(fit.losses).all()
    assert host.sample(fit, (), seed=0)["z"].shape == (2, 4)
    assert host.median(fit)["z"].shape == (2, 4)
