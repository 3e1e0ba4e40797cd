"""AutoFaithfulMADE's own math on both hosts: exactness on an amortized tree, masks by
Jacobian sparsity, and generation-by-generation sampling equal to full passes. The drop-in
contract (shared by every family) is in :mod:`test_contract`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import adapter
from hosts import GuideHost

from faithful_guides.zoo import binary_tree

HOSTS = ("pyro", "numpyro")


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest) -> GuideHost:
    return adapter(request.param, "made")


def _tree_posterior(depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, K, cov)`` of the unit tree: node values = A @ noise; E[z|x] = K x; Cov[z|x] = cov."""
    n, n_int = 2**depth - 1, 2 ** (depth - 1) - 1
    b = np.zeros((n, n))
    for i in range(1, n):
        b[i, (i - 1) // 2] = 1.0
    a = np.linalg.inv(np.eye(n) - b)
    s = a @ a.T  # (I-B)^-1 D (I-B)^-T with D = I
    zi, xi = np.arange(n_int), np.arange(n_int, n)
    k = s[np.ix_(zi, xi)] @ np.linalg.inv(s[np.ix_(xi, xi)])
    return a, k, s[np.ix_(zi, zi)] - k @ s[np.ix_(xi, zi)]


def test_exact_posterior_amortized_binary_tree(host: GuideHost) -> None:
    """Trained on fresh rows at every step, the guide gives the exact posterior of held-out
    rows (no further optimization): each node's mean within 0.15, its std within 20%."""
    rows, depth, steps = 256, 3, 500
    model, _, _ = binary_tree(host.host, depth, num_rows=rows)
    a, k, cov = _tree_posterior(depth)
    n_int = k.shape[0]

    def batch(rng: np.random.Generator) -> tuple[Any]:
        return (host.tensor((rng.standard_normal((rows, a.shape[0])) @ a.T)[:, n_int:]),)

    rng = np.random.default_rng(1)
    fit = host.train_stream(model, host.guide(model), (batch(rng) for _ in range(steps)), 1e-2)
    x_new = batch(np.random.default_rng(123))  # held out
    z = host.draws(fit, x_new, 1000, seed=3)
    mean = np.stack([z[f"z{i}"].mean(0) for i in range(n_int)], -1)
    std = np.stack([z[f"z{i}"].std(0) for i in range(n_int)], -1)
    err = np.abs(mean - np.asarray(x_new[0], dtype=float) @ k.T).mean(0)
    assert (err < 0.15).all(), err
    np.testing.assert_allclose(std.mean(0), np.sqrt(np.diag(cov)), rtol=0.2)


def test_jacobian_follows_inverse_graph(host: GuideHost) -> None:
    """At random weights, each output's location and scale depend on exactly the features
    of its inverse parents."""
    model, args, _ = host.spec("student")
    fit = host.untrained(model, args)
    jac = host.net_jacobian(fit.guide, fit.params, seed=1)
    plan, g = fit.guide.plan, fit.guide.plan.groups[host.group_index(fit, "global")]
    for out in g.outputs:
        parents = plan.structure.inverse.predecessors(out.name)
        feats = {i for u in parents for i in range(g.in_size)[g.block(u).slice]}
        scale = slice(g.out_size + out.offset, g.out_size + out.offset + out.size)
        for rows in (out.slice, scale):
            nonzero = set(np.flatnonzero(np.abs(jac[rows]).sum(0)).tolist())
            assert nonzero == feats, (out.name, rows)


@pytest.mark.parametrize(
    ("name", "group"), [("state_space", "global"), ("eight_schools", "global"), ("tree", "local")]
)
def test_generation_steps_equal_full_passes(host: GuideHost, name: str, group: str) -> None:
    """The guide samples generation by generation, updating the network incrementally
    (``MadeSteps``); at random weights and inputs, with two hidden layers, each generation's
    ``(loc, scale)`` equals the rows of one full masked pass (the pass the Jacobian oracle
    checks), for a batch of 3 input vectors."""
    if name == "tree":
        model, args, _ = binary_tree(host.host, 3, num_rows=4)
    else:
        model, args, _ = host.spec(name)
    fit = host.untrained(model, args, hidden_dims=(32, 24))
    index = host.group_index(fit, group)
    g = fit.guide.plan.groups[index]
    assert len(g.generations) > 1
    net = host.random_net(fit, index, seed=2)
    x = np.random.default_rng(0).standard_normal((3, g.in_size)).astype(np.float32)
    sched = g.schedule
    cols = np.split(x[:, sched.columns], np.cumsum(sched.column_splits)[:-1], axis=1)
    known, feeds = cols[0] if cols[0].shape[1] else None, cols[1:]
    full = np.asarray(host.made_forward(net, g, x))
    rows = np.split(sched.rows, np.cumsum(sched.row_splits)[:-1])
    steps = host.made_steps(net, g, known, feeds)
    assert len(steps) == len(g.generations)
    for gen, r, got in zip(g.generations, rows, steps, strict=True):
        np.testing.assert_allclose(got, full[:, r], rtol=1e-4, atol=1e-4, err_msg=str(gen))
