"""The linear-Gaussian oracle reproduces the structural KL floors of algorithms.md."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from faithful_guides import invert
from faithful_guides.exact import LinearGaussianBN, gaussian_kl


@pytest.mark.parametrize(
    "depth, heuristic, mean_field", [(3, 0.057, 0.134), (4, 0.265, 0.499), (5, 0.810, 1.297)]
)
def test_structural_kl_floors_of_unit_trees(depth, heuristic, mean_field):
    bn = LinearGaussianBN.tree(depth)
    g, obs = bn.dag, bn.observed
    assert bn.structural_kl(invert(g, obs, method="heuristic")) == pytest.approx(
        heuristic, abs=2e-3
    )
    assert bn.mean_field_kl() == pytest.approx(mean_field, abs=2e-3)
    assert abs(bn.structural_kl(invert(g, obs))) < 1e-8
    assert abs(bn.structural_kl(invert(g, obs, method="full"))) < 1e-8


def test_posterior_matches_monte_carlo_conditioning():
    """Regress sampled latents on sampled observations: the slope and residual covariance
    are the posterior gain and covariance."""
    bn = LinearGaussianBN.tree(3, node_weights=[1.0, 0.7, 1.5, 2.0, 0.5, 1.2, 0.8])
    z, x = bn.sample(np.random.default_rng(0), 200_000)
    mean, cov = bn.posterior(x)
    resid = z - mean
    assert np.abs(resid.mean(0)).max() < 0.01
    assert np.allclose(np.cov(resid.T), cov, atol=0.02)


def test_gaussian_kl_is_zero_on_itself_and_positive_otherwise():
    m, s = np.zeros(2), np.array([[1.0, 0.3], [0.3, 2.0]])
    assert gaussian_kl(m, s, m, s) == pytest.approx(0.0, abs=1e-12)
    assert gaussian_kl(m + 1, s, m, s) > 0


def test_posterior_couples_siblings():
    """The correlation moralization misses (algorithms.md: 0.146, 3 levels of latents)."""
    bn = LinearGaussianBN.tree(4)
    _, cov = bn.posterior(np.zeros(8))
    i, j = bn.latent.index("z3"), bn.latent.index("z4")
    assert cov[i, j] / np.sqrt(cov[i, i] * cov[j, j]) == pytest.approx(0.146, abs=1e-3)
    assert isinstance(bn.dag, nx.DiGraph)
