"""The random linear-Gaussian DAGs of benchmarks/dags.py: generator invariants, the model
builder, the KL estimator against an exact-posterior oracle, and one short training run."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from faithful_guides.exact import LinearGaussianBN, gaussian_kl
from faithful_guides.zoo.dag_experiments import exact_guide, fit, mc_kl
from faithful_guides.zoo.networks import linear_gaussian

SEEDS = range(10)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_dag_invariants(seed):
    bn = LinearGaussianBN.random_dag(seed)
    g = bn.dag
    assert len(bn.nodes) == 16 and g.number_of_nodes() == 16
    assert nx.is_directed_acyclic_graph(g)
    assert all(bn.nodes.index(u) < bn.nodes.index(v) for u, v in g.edges)
    assert max(d for _, d in g.in_degree()) <= 3
    assert len(bn.observed) == 5
    assert bn.interior_observed(), "no observed node with a latent child"
    for z in bn.latent:
        assert bn.observed & nx.descendants(g, z), f"{z} has no observed descendant"
    assert all(n.startswith("x") == (n in bn.observed) for n in bn.nodes)
    w = np.abs(bn.B[bn.B != 0])
    assert w.min() >= 0.5 and w.max() <= 1.5
    assert np.all(np.tril(bn.B, -1) == bn.B)  # strictly lower triangular: topological order
    again = LinearGaussianBN.random_dag(seed)
    assert again.nodes == bn.nodes and np.array_equal(again.B, bn.B)


def test_random_dags_mean_in_degree_and_signs():
    bns = [LinearGaussianBN.random_dag(s) for s in range(40)]
    mean_in = np.mean([np.count_nonzero(bn.B) / 16 for bn in bns])
    assert 1.7 < mean_in < 2.1  # ~2 (sinks-observed redraws bias it a little down)
    signs = np.concatenate([np.sign(bn.B[bn.B != 0]) for bn in bns])
    assert 0.4 < np.mean(signs > 0) < 0.6


@pytest.mark.parametrize("host", ["pyro", "numpyro"])
def test_model_density_is_the_bn_joint(host):
    """log p(z, x) of the host model at a joint draw equals the BN's Gaussian density
    (observed parents enter their children through the observed values)."""
    bn = LinearGaussianBN.random_dag(3)
    model, (x0,), _ = linear_gaussian(host, bn)
    assert tuple(x0.shape) == (5,)
    z, x = bn.sample(np.random.default_rng(0), 1)
    values = dict(zip(bn.latent, z[0], strict=True))
    if host == "pyro":
        import torch
        from pyro import poutine

        data = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
        tr = poutine.trace(poutine.condition(model, data)).get_trace(torch.tensor(x[0]))
        logp = float(tr.log_prob_sum())
    else:
        import jax.numpy as jnp
        from numpyro import handlers
        from numpyro.infer.util import log_density

        data = {k: jnp.asarray(v) for k, v in values.items()}
        logp = float(log_density(handlers.condition(model, data), (jnp.asarray(x[0]),), {}, {})[0])
    mu, cov = bn.joint()
    full = np.empty(16)
    zi, oi = bn._split()
    full[zi], full[oi] = z[0], x[0]
    diff = full - mu
    expect = -0.5 * (diff @ np.linalg.solve(cov, diff) + np.linalg.slogdet(2 * np.pi * cov)[1])
    assert logp == pytest.approx(expect, abs=1e-3)


@pytest.mark.parametrize("host", ["pyro", "numpyro"])
def test_kl_estimator_on_the_exact_posterior(host):
    """Oracle check of the KL code: the exact posterior against itself is 0 (draw by draw),
    and an inflated copy gives the closed-form Gaussian KL."""
    bn = LinearGaussianBN.random_dag(0)
    x = bn.sample(np.random.default_rng(5), 1)[1][0]
    oracle = fit(host, bn, "exact", 0, data=x)
    z, logq = oracle.draw(x, 500, 0)
    mean, cov = bn.posterior(x)
    assert np.abs(logq - bn.log_posterior(z, x)).max() < 1e-3
    assert np.abs(z.mean(0) - mean).max() < 0.4
    assert abs(mc_kl(bn, oracle, x, draws=500)) < 1e-3

    f = 1.3
    inflated = fit(host, bn, lambda model: exact_guide(host, bn, inflate=f), 0, data=x)
    expect = float(gaussian_kl(mean, f**2 * cov, mean, cov))
    k = len(bn.latent)
    assert expect == pytest.approx(k / 2 * (f**2 - 1) - k * np.log(f))
    assert mc_kl(bn, inflated, x, draws=4000) == pytest.approx(expect, abs=0.1)


@pytest.mark.parametrize("host", ["pyro", "numpyro"])
def test_short_training_decreases_kl(host):
    bn = LinearGaussianBN.random_dag(1)
    x = bn.sample(np.random.default_rng(1001), 1)[1][0]
    trained = fit(
        host, bn, "AutoFaithfulMADE", 150, data=x, eval_x=x, eval_every=150, eval_draws=200
    )
    (_, before), (_, after) = trained.kl_trace
    assert np.isfinite(after) and after < 0.5 * before, trained.kl_trace
