r"""Exact inference in linear-Gaussian Bayesian networks: the oracle for guides.

A linear-Gaussian BN over nodes in topological order is :math:`v = Bv + c + \varepsilon`,
:math:`\varepsilon \sim \mathcal{N}(0, D)`, :math:`B` strictly lower triangular. Then
(Koller & Friedman §7.2)

.. math:: \mu = (I - B)^{-1} c,\qquad \Sigma = (I - B)^{-1} D (I - B)^{-\top},

and :math:`p(z \mid x)` is Gaussian with covariance
:math:`\Sigma_{zz} - \Sigma_{zx}\Sigma_{xx}^{-1}\Sigma_{xz}` and mean
:math:`\mu_z + \Sigma_{zx}\Sigma_{xx}^{-1}(x - \mu_x)`.

:meth:`LinearGaussianBN.structural_kl` gives the smallest KL(q ‖ p(z | x)) that any guide
factorizing over a structure :math:`H` can reach (with exact conditionals):
:math:`\sum_z \tfrac12 \log \mathrm{Var}(z \mid \mathrm{Pa}_H(z)) - \tfrac12 \log\det
\Sigma_{z \mid x}`. It is 0 exactly when :math:`H` is faithful.

Example:
    >>> import networkx as nx
    >>> from faithful_guides import invert
    >>> bn = LinearGaussianBN.tree(3)
    >>> round(bn.structural_kl(invert(bn.dag, bn.observed, method="heuristic")), 3)
    0.057
    >>> abs(bn.structural_kl(invert(bn.dag, bn.observed))) < 1e-9
    True
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np


@dataclass(frozen=True)
class LinearGaussianBN:
    """A linear-Gaussian BN: ``nodes`` in topological order, ``B[i, j]`` the weight of
    ``nodes[j] -> nodes[i]``, offsets ``c`` and noise variances ``d``."""

    nodes: tuple[str, ...]
    B: np.ndarray
    c: np.ndarray
    d: np.ndarray
    observed: frozenset[str]

    @classmethod
    def from_dag(
        cls,
        dag: nx.DiGraph,
        observed: Collection[str],
        weights: Mapping[tuple[str, str], float] | None = None,
        noise: Mapping[str, float] | None = None,
    ) -> LinearGaussianBN:
        """Unit weights and unit noise variances unless given."""
        nodes = tuple(nx.topological_sort(dag))
        index = {n: i for i, n in enumerate(nodes)}
        B = np.zeros((len(nodes), len(nodes)))
        for u, v in dag.edges:
            B[index[v], index[u]] = 1.0 if weights is None else weights[(u, v)]
        d = np.array([1.0 if noise is None else noise[n] for n in nodes])
        return cls(nodes, B, np.zeros(len(nodes)), d, frozenset(observed))

    @classmethod
    def tree(cls, depth: int, node_weights: Sequence[float] | None = None) -> LinearGaussianBN:
        """The zoo's binary tree: heap-indexed, ``z{i}`` latent, leaves ``x{i}`` observed;
        node ``i`` is ``node_weights[i]`` times its parent plus unit noise."""
        n = 2**depth - 1

        def name(i: int) -> str:
            return f"x{i}" if 2 * i + 1 >= n else f"z{i}"

        dag = nx.DiGraph()
        dag.add_nodes_from(name(i) for i in range(n))
        weights = {}
        for i in range(1, n):
            edge = (name((i - 1) // 2), name(i))
            dag.add_edge(*edge)
            weights[edge] = 1.0 if node_weights is None else float(node_weights[i])
        observed = {name(i) for i in range(n) if 2 * i + 1 >= n}
        return cls.from_dag(dag, observed, weights)

    @classmethod
    def random_dag(
        cls,
        seed: int,
        num_nodes: int = 16,
        *,
        mean_in_degree: float = 2.0,
        max_parents: int = 3,
        observed_fraction: float = 1 / 3,
        weight_range: tuple[float, float] = (0.5, 1.5),
        noise_scale_range: tuple[float, float] = (0.8, 1.2),
        offset_range: tuple[float, float] = (-0.5, 0.5),
        max_tries: int = 10_000,
    ) -> LinearGaussianBN:
        """A random linear-Gaussian DAG (the benchmark of ``benchmarks/dags.py``).

        Erdős–Rényi over a topological order (each earlier node is a parent with one
        probability, at most ``max_parents`` kept at random, the probability chosen so that
        the expected in-degree is ``mean_in_degree``), weights ``±U[weight_range]`` with a
        random sign, noise standard deviations ``U[noise_scale_range]``, offsets
        ``U[offset_range]``. ``round(observed_fraction * num_nodes)`` nodes are observed:
        every sink (so that every latent has an observed descendant) and random others,
        with at least one *interior* observed node (one with a latent child). Draws that
        cannot meet this are redrawn. Node ``i`` (topological position) is named ``x{i}``
        if observed and ``z{i}`` if latent; the order is random up to relabelling, so
        drawing it over ``0..n-1`` loses nothing.

        Example:
            >>> bn = LinearGaussianBN.random_dag(0)
            >>> len(bn.nodes), len(bn.observed)
            (16, 5)
            >>> all(bn.observed & nx.descendants(bn.dag, z) for z in bn.latent)
            True
        """
        rng = np.random.default_rng(seed)
        n, n_obs = num_nodes, round(observed_fraction * num_nodes)
        if not 1 <= n_obs < n:
            raise ValueError(f"need between 1 and {n - 1} observed nodes, got {n_obs}.")
        p = _edge_probability(n, mean_in_degree, max_parents)
        for _ in range(max_tries):
            parents = []
            for i in range(n):
                pa = np.flatnonzero(rng.random(i) < p)
                if len(pa) > max_parents:
                    pa = np.sort(rng.choice(pa, max_parents, replace=False))
                parents.append(pa)
            has_child = np.zeros(n, dtype=bool)
            for pa in parents:
                has_child[pa] = True
            sinks = np.flatnonzero(~has_child)
            if len(sinks) >= n_obs:  # no room for an interior observed node
                continue
            inner = rng.choice(np.flatnonzero(has_child), n_obs - len(sinks), replace=False)
            obs = set(sinks.tolist()) | set(inner.tolist())
            if not any(i in obs and j not in obs for j in range(n) for i in parents[j]):
                continue  # no interior observed node with a latent child
            break
        else:  # pragma: no cover - the defaults succeed in a few tries
            raise RuntimeError(f"no DAG met the invariants in {max_tries} tries.")
        names = tuple(f"x{i}" if i in obs else f"z{i}" for i in range(n))
        B = np.zeros((n, n))
        for i, pa in enumerate(parents):
            lo, hi = weight_range
            B[i, pa] = rng.choice([-1.0, 1.0], len(pa)) * rng.uniform(lo, hi, len(pa))
        c = rng.uniform(*offset_range, n)
        d = rng.uniform(*noise_scale_range, n) ** 2
        return cls(names, B, c, d, frozenset(names[i] for i in obs))

    def parents(self, v: str) -> list[tuple[str, float]]:
        """``(parent, weight)`` pairs of node ``v``, in topological order."""
        i = self.nodes.index(v)
        return [(self.nodes[j], float(self.B[i, j])) for j in np.flatnonzero(self.B[i])]

    def interior_observed(self) -> list[str]:
        """Observed nodes with at least one latent child."""
        g = self.dag
        return [x for x in self.observed_order if any(c not in self.observed for c in g[x])]

    def log_posterior(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        r"""Exact :math:`\log p(z \mid x)` of latents ``(..., n_latent)`` (``latent`` order)
        given observations ``(..., n_observed)`` (broadcast against each other)."""
        mean, cov = self.posterior(x)
        diff = np.asarray(z) - mean
        prec = np.linalg.inv(cov)
        maha = np.einsum("...i,ij,...j->...", diff, prec, diff)
        logdet = np.linalg.slogdet(cov)[1]
        return -0.5 * (maha + logdet + len(self.latent) * np.log(2 * np.pi))

    @property
    def dag(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        rows, cols = np.nonzero(self.B)
        g.add_edges_from((self.nodes[j], self.nodes[i]) for i, j in zip(rows, cols, strict=True))
        return g

    @property
    def latent(self) -> list[str]:
        return [n for n in self.nodes if n not in self.observed]

    @property
    def observed_order(self) -> list[str]:
        return [n for n in self.nodes if n in self.observed]

    def joint(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of all nodes, in ``self.nodes`` order."""
        inv = np.linalg.inv(np.eye(len(self.nodes)) - self.B)
        return inv @ self.c, inv @ np.diag(self.d) @ inv.T

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        z = np.array([self.nodes.index(n) for n in self.latent])
        x = np.array([self.nodes.index(n) for n in self.observed_order])
        return z, x

    def posterior(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean (``(..., n_latent)``) and covariance of the latents given
        observations ``x`` shaped ``(..., n_observed)`` in ``observed_order``."""
        mu, cov = self.joint()
        z, o = self._split()
        gain = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, z)]).T
        mean = mu[z] + (np.asarray(x) - mu[o]) @ gain.T
        return mean, cov[np.ix_(z, z)] - gain @ cov[np.ix_(o, z)]

    def sample(self, rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
        """``num`` joint draws: latents ``(num, n_latent)`` and observations."""
        mu, cov = self.joint()
        draws = rng.multivariate_normal(mu, cov, size=num)
        z, o = self._split()
        return draws[:, z], draws[:, o]

    def conditional_variance(self, v: str, given: Collection[str]) -> float:
        """Var(v | given) under the joint."""
        _, cov = self.joint()
        i = self.nodes.index(v)
        g = [self.nodes.index(u) for u in given]
        if not g:
            return float(cov[i, i])
        s = cov[np.ix_(g, [i])]
        return float(cov[i, i] - (s.T @ np.linalg.solve(cov[np.ix_(g, g)], s)).item())

    def structural_kl(self, inverse: nx.DiGraph) -> float:
        r"""The structural floor of algorithms.md: :math:`\sum_v \tfrac12 \log
        \mathrm{Var}(z_v \mid \mathrm{Pa}(z_v)) - \tfrac12 \log\det \Sigma_{z \mid x}`.

        It is :math:`\mathrm{KL}(p(z \mid x) \,\|\, q^*)` for :math:`q^* = \prod_v
        p(z_v \mid \mathrm{Pa}(z_v))`, the best guide over ``inverse`` in *forward* KL (the
        same for every x); zero iff ``inverse`` is an I-map of the posterior. It bounds what
        forward-KL training can reach, not an ELBO-trained guide: the best reverse KL over
        a structure that is not an I-map can be lower."""
        _, post = self.posterior(np.zeros(len(self.observed)))
        logdet = np.linalg.slogdet(post)[1]
        total = sum(
            0.5 * np.log(self.conditional_variance(v, list(inverse.predecessors(v))))
            for v in self.latent
        )
        return float(total - 0.5 * logdet)

    def mean_field_kl(self) -> float:
        """:meth:`structural_kl` of the guide in which each latent sees all observations
        only (mean field)."""
        h = nx.DiGraph()
        h.add_edges_from((x, z) for z in self.latent for x in self.observed)
        return self.structural_kl(h)


def gaussian_kl(m0: np.ndarray, s0: np.ndarray, m1: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """KL(N(m0, s0) ‖ N(m1, s1)) for means ``(..., k)`` and covariances ``(k, k)`` or
    ``(..., k, k)``."""
    k = m0.shape[-1]
    s1_inv = np.linalg.inv(s1)
    diff = m1 - m0
    trace = np.einsum("...ij,...ji->...", s1_inv, s0)
    maha = np.einsum("...i,...ij,...j->...", diff, s1_inv, diff)
    logdet = np.linalg.slogdet(s1)[1] - np.linalg.slogdet(s0)[1]
    return 0.5 * (trace + maha - k + logdet)


def _edge_probability(n: int, mean_in_degree: float, max_parents: int) -> float:
    """The edge probability of an Erdős–Rényi DAG over ``n`` ordered nodes whose expected
    in-degree, parents capped at ``max_parents``, is ``mean_in_degree`` (bisection)."""
    from math import comb

    def mean_degree(p: float) -> float:
        total = 0.0
        for i in range(n):  # node i has i candidate parents
            for k in range(i + 1):
                total += min(k, max_parents) * comb(i, k) * p**k * (1 - p) ** (i - k)
        return total / n

    if mean_degree(1.0) < mean_in_degree:
        raise ValueError(f"mean in-degree {mean_in_degree} unreachable with {n} nodes.")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_degree(mid) < mean_in_degree else (lo, mid)
    return (lo + hi) / 2
