"""Tests of the NumPyro AutoFaithfulMADE guide (small models, few steps)."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import (
    SVI,
    Predictive,
    RenyiELBO,
    Trace_ELBO,
    TraceMeanField_ELBO,
)
from numpyro.infer.autoguide import AutoGuideList, AutoNormal
from numpyro.optim import Adam

from faithful_guides.backends.numpyro.nets import made_forward
from faithful_guides.numpyro import AutoFaithfulMADE
from faithful_guides.zoo import ZOO, get_host, models

HOST = get_host("numpyro")


def _spec(name: str):
    if name == "state_space":
        return models.hmm_chain(HOST, 8)
    return ZOO[name](HOST)


def _train(model, guide, args, kwargs, steps, elbo=None, lr=1e-2, seed=0):
    svi = SVI(model, guide, Adam(lr), elbo or Trace_ELBO())
    res = svi.run(jax.random.PRNGKey(seed), steps, *args, progress_bar=False, **kwargs)
    return svi, res


@pytest.mark.parametrize(
    "name",
    ["student", "collider", "arithmetic", "constrained", "vector_event", "eight_schools",
     "state_space"],
)  # fmt: skip
def test_trains_on_zoo(name: str) -> None:
    model, args, kwargs = _spec(name)
    guide = AutoFaithfulMADE(model)
    svi, res = _train(model, guide, args, kwargs, 200)
    losses = np.asarray(res.losses)
    assert np.isfinite(losses).all()
    assert losses[-50:].mean() < losses[:50].mean()
    # every parameter gets a gradient
    state = svi.init(jax.random.PRNGKey(1), *args, **kwargs)
    params = svi.get_params(state)

    def loss(p):
        return Trace_ELBO(num_particles=4).loss(jax.random.PRNGKey(2), p, model, guide, *args)

    grads = jax.jit(jax.grad(loss))(params)
    for k, g in grads.items():
        assert np.isfinite(np.asarray(g)).all(), k
        assert np.abs(np.asarray(g)).max() > 0, f"no gradient for {k}"


def _tree_posterior(depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, K, cov)``: node values = A @ noise; E[z|x] = K x; Cov[z|x] = cov."""
    n, n_int = 2**depth - 1, 2 ** (depth - 1) - 1
    b = np.zeros((n, n))
    for i in range(1, n):
        b[i, (i - 1) // 2] = 1.0
    a = np.linalg.inv(np.eye(n) - b)
    s = a @ a.T  # (I-B)^-1 D (I-B)^-T with D = I
    zi, xi = np.arange(n_int), np.arange(n_int, n)
    k = s[np.ix_(zi, xi)] @ np.linalg.inv(s[np.ix_(xi, xi)])
    return a, k, s[np.ix_(zi, zi)] - k @ s[np.ix_(xi, zi)]


def test_exact_posterior_amortized_binary_tree() -> None:
    rows, depth = 256, 3
    model, (x,), _ = models.binary_tree(HOST, depth, num_rows=rows)
    a, k, cov = _tree_posterior(depth)
    n_int = k.shape[0]

    def draw(rng: np.random.Generator) -> jax.Array:
        return jnp.asarray((rng.standard_normal((rows, a.shape[0])) @ a.T)[:, n_int:], jnp.float32)

    guide = AutoFaithfulMADE(model)
    svi = SVI(model, guide, Adam(5e-3), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), x)
    update = jax.jit(svi.update)
    rng = np.random.default_rng(1)
    for _ in range(1500):  # fresh rows from the model each step
        state, _ = update(state, draw(rng))
    params = svi.get_params(state)
    x_new = draw(np.random.default_rng(123))  # held out: no further optimization
    z = guide.sample_posterior(jax.random.PRNGKey(3), params, x_new, sample_shape=(500,))
    mean = np.stack([np.asarray(z[f"z{i}"]).mean(0) for i in range(n_int)], -1)
    std = np.stack([np.asarray(z[f"z{i}"]).std(0) for i in range(n_int)], -1)
    err = np.abs(mean - np.asarray(x_new) @ k.T).mean(0)
    exact_std = np.sqrt(np.diag(cov))
    print("mean abs error", err, "std", std.mean(0), "exact std", exact_std)
    assert (err < 0.15).all()
    np.testing.assert_allclose(std.mean(0), exact_std, rtol=0.2)


def test_jacobian_follows_inverse_graph() -> None:
    model, args, _ = ZOO["student"](HOST)
    guide = AutoFaithfulMADE(model)
    svi = SVI(model, guide, Adam(1e-2), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.PRNGKey(0), *args))
    plan, g = guide.plan, guide.plan.global_
    net = {k.split("_")[-1]: v for k, v in params.items() if "_made_global_" in k}
    keys = jax.random.split(jax.random.PRNGKey(1), len(net))
    net = {
        k: v + jax.random.normal(kk, v.shape) for kk, (k, v) in zip(keys, net.items(), strict=True)
    }
    x = jax.random.normal(jax.random.PRNGKey(2), (g.in_size,))
    jac = np.asarray(jax.jacfwd(lambda x: made_forward(net, g.masks, g.skip, x)[0])(x))
    for out in g.outputs:
        parents = set(plan.inverse.predecessors(out.name))
        allowed = np.zeros(g.in_size, bool)
        for b in g.inputs:
            if b.name in parents:
                allowed[b.slice] = True
        rows = np.abs(jac[out.slice]) > 0
        assert not rows[:, ~allowed].any(), out.name
        assert rows[:, allowed].any(axis=0).all(), out.name


def _eight_schools():
    model, args, kwargs = ZOO["eight_schools"](HOST)
    guide = AutoFaithfulMADE(model)
    _, res = _train(model, guide, args, kwargs, 50)
    return model, args, guide, res.params


def test_predictive_median_quantiles_sample_posterior() -> None:
    model, args, guide, params = _eight_schools()
    predictive = Predictive(
        model, guide=guide, params=params, num_samples=7, return_sites=["mu", "theta"]
    )
    pred = predictive(jax.random.PRNGKey(0), *args)
    assert pred["theta"].shape == (7, 8) and pred["mu"].shape == (7,)
    med = guide.median(params)
    assert med["theta"].shape == (8,) and med["tau"].shape == () and float(med["tau"]) > 0
    qs = guide.quantiles(params, [0.1, 0.5, 0.9], num_samples=200)
    assert qs["theta"].shape == (3, 8)
    assert (qs["tau"][0] <= qs["tau"][2]).all()
    post = guide.sample_posterior(jax.random.PRNGKey(1), params, *args, sample_shape=(5, 2))
    assert post["theta"].shape == (5, 2, 8) and post["tau"].shape == (5, 2)


def test_params_pickle_round_trip_identical_samples() -> None:
    _, args, guide, params = _eight_schools()
    loaded = pickle.loads(pickle.dumps(jax.device_get(params)))
    a = guide.sample_posterior(jax.random.PRNGKey(4), params, *args, sample_shape=(3,))
    b = guide.sample_posterior(jax.random.PRNGKey(4), loaded, *args, sample_shape=(3,))
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_subsampling_trains_and_param_shapes_do_not_depend_on_it() -> None:
    shapes = []
    for sub in (None, 100):
        model, args, kwargs = models.hier_regression(HOST, 1000, subsample_size=sub)
        guide = AutoFaithfulMADE(model)
        _, res = _train(model, guide, args, kwargs, 200)
        losses = np.asarray(res.losses)
        assert np.isfinite(losses).all() and losses[-30:].mean() < losses[:30].mean()
        shapes.append({k: v.shape for k, v in res.params.items()})
    assert shapes[0] == shapes[1]


@pytest.mark.parametrize(
    "elbo",
    [
        Trace_ELBO(num_particles=4, vectorize_particles=True),
        RenyiELBO(alpha=0.5, num_particles=2),
        TraceMeanField_ELBO(),
    ],
    ids=["vectorized", "renyi", "meanfield"],
)
def test_other_elbos_train(elbo) -> None:
    model, args, kwargs = ZOO["collider"](HOST)
    _, res = _train(model, AutoFaithfulMADE(model), args, kwargs, 100, elbo=elbo)
    assert np.isfinite(np.asarray(res.losses)).all()


@pytest.mark.filterwarnings("ignore:Failed to verify mean field restriction")
@pytest.mark.parametrize("name", ["student", "eight_schools"])
def test_meanfield_falls_back_to_monte_carlo(name: str) -> None:
    """Same key, same draws: TraceMeanField_ELBO must equal Trace_ELBO (no analytic KL)."""
    model, args, _ = ZOO[name](HOST)
    guide = AutoFaithfulMADE(model)
    svi = SVI(model, guide, Adam(1e-2), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.PRNGKey(0), *args))
    key = jax.random.PRNGKey(5)
    mf = TraceMeanField_ELBO().loss(key, params, model, guide, *args)
    tr = Trace_ELBO().loss(key, params, model, guide, *args)
    np.testing.assert_allclose(float(mf), float(tr), rtol=1e-5)


def test_autoguidelist_with_block() -> None:
    model, args, kwargs = ZOO["collider"](HOST)
    guide = AutoGuideList(model)
    guide.append(AutoFaithfulMADE(handlers.block(model, hide=["z1"])))
    guide.append(AutoNormal(handlers.block(model, expose=["z1"])))
    _, res = _train(model, guide, args, kwargs, 100)
    assert np.isfinite(np.asarray(res.losses)).all()


# ------------------------------------------------------------------------------ errors
def _init(model, *args, **kwargs) -> None:
    svi = SVI(model, AutoFaithfulMADE(model, **kwargs), Adam(1e-2), Trace_ELBO())
    svi.init(jax.random.PRNGKey(0), *args)


def test_discrete_latent_error_names_site() -> None:
    def model():
        numpyro.sample("k", dist.Bernoulli(0.5))
        numpyro.sample("x", dist.Normal(0.0, 1.0), obs=1.0)

    with pytest.raises(ValueError, match=r"discrete latent sample site 'k'.*handlers.block"):
        _init(model)


def test_plate_not_leftmost_error() -> None:
    def model():
        with numpyro.plate("p", 4, dim=-1):
            numpyro.sample("z", dist.Normal(jnp.zeros((2, 4)), 1.0))
        numpyro.sample("x", dist.Normal(0.0, 1.0), obs=1.0)

    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"Site 'z'.*leftmost batch"):
        _init(model)


def test_missing_observation_error() -> None:
    _, args, guide, params = _eight_schools()
    with pytest.raises(ValueError, match=r"observed value of site 'y'.*Predictive"):
        guide.sample_posterior(jax.random.PRNGKey(0), params, args[0], None)


def test_bad_options_errors() -> None:
    model, args, _ = ZOO["collider"](HOST)
    with pytest.raises(ValueError, match="init_scale > 0"):
        AutoFaithfulMADE(model, init_scale=0.0)
    with pytest.raises(ValueError, match="Unknown structure 'bogus'"):
        _init(model, *args, structure="bogus")
