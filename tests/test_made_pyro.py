"""AutoFaithfulMADE for Pyro: training, exactness, structure, and the drop-in contract."""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pyro = pytest.importorskip("pyro")

import pyro.distributions as dist  # noqa: E402
from pyro import poutine  # noqa: E402
from pyro.infer import (  # noqa: E402
    CSIS,
    SVI,
    JitTrace_ELBO,
    Predictive,
    RenyiELBO,
    Trace_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
)
from pyro.infer.autoguide import AutoGuideList, AutoNormal  # noqa: E402
from pyro.optim import Adam  # noqa: E402
from torch.distributions import kl_divergence  # noqa: E402

from faithful_guides.pyro import AutoFaithfulMADE  # noqa: E402
from faithful_guides.zoo import ZOO, binary_tree, get_host, hier_regression, hmm_chain  # noqa: E402

torch.set_num_threads(1)
HOST = get_host("pyro")


@pytest.fixture(autouse=True)
def _fresh() -> None:
    pyro.clear_param_store()
    pyro.set_rng_seed(0)


def _spec(name: str):
    return hmm_chain(HOST, 8) if name == "state_space" else ZOO[name](HOST)


def _train(model, guide, args, kwargs, steps, loss=None, lr=1e-2):
    svi = SVI(model, guide, Adam({"lr": lr}), loss or Trace_ELBO())
    return [svi.step(*args, **kwargs) for _ in range(steps)]


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
def test_trains_on_zoo(name: str) -> None:
    model, args, kwargs = _spec(name)
    guide = AutoFaithfulMADE(model)
    Trace_ELBO().loss_and_grads(model, guide, *args, **kwargs)
    params = dict(guide.named_parameters())
    assert params
    for pname, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    losses = _train(model, guide, args, kwargs, 150)
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-30:]) < np.mean(losses[:30])
    values = guide(*args, **kwargs)
    assert set(values) == set(guide.graph.latent)
    for n, v in values.items():
        assert tuple(v.shape) == guide.graph.sites[n].shape


def _exact_tree_posterior(depth: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact z | x of the unit-weight, unit-noise tree: Σ = (I-B)^-1 (I-B)^-T."""
    n, ni = 2**depth - 1, 2 ** (depth - 1) - 1
    b = np.zeros((n, n))
    for i in range(1, n):
        b[i, (i - 1) // 2] = 1.0
    a = np.linalg.inv(np.eye(n) - b)
    s = a @ a.T
    k = s[:ni, ni:] @ np.linalg.inv(s[ni:, ni:])
    return x @ k.T, np.sqrt(np.diag(s[:ni, :ni] - k @ s[ni:, :ni]))


def test_exact_posterior_on_binary_tree_amortized() -> None:
    model, _, _ = binary_tree(HOST, 3, num_rows=256)
    guide = AutoFaithfulMADE(model)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    for i in range(500):  # fresh rows from the model at every step
        svi.step(binary_tree(HOST, 3, num_rows=256, seed=i + 10)[1][0])
    _, (x_new,), _ = binary_tree(HOST, 3, num_rows=256, seed=12345)  # held out, no more steps
    with torch.no_grad(), poutine.block(), pyro.plate("draws", 1000, dim=-2):
        draws = guide(x_new)
    mean, std = _exact_tree_posterior(3, x_new.numpy().astype(float))
    got_mean = np.stack([draws[f"z{i}"].mean(0).numpy() for i in range(3)], -1)
    got_std = np.array([draws[f"z{i}"].std(0).mean().item() for i in range(3)])
    assert np.abs(got_mean - mean).mean() < 0.15
    np.testing.assert_allclose(got_std, std, rtol=0.2)


def test_jacobian_sees_exactly_the_inverse_parents() -> None:
    model, args, _ = ZOO["student"](HOST)
    guide = AutoFaithfulMADE(model)
    guide(*args)
    for net in [guide.global_net]:
        for p in net.parameters():
            torch.nn.init.normal_(p)
    g = guide.plan.global_
    x = torch.randn(g.in_size)
    jac = torch.autograd.functional.jacobian(lambda t: torch.cat(guide.global_net(t)), x)
    for out in g.outputs:
        feats = {i for u in guide.plan.inverse.predecessors(out.name) for i in range(*_span(g, u))}
        for rows in (out.slice, slice(g.out_size + out.offset, g.out_size + out.offset + 1)):
            nonzero = set(torch.nonzero(jac[rows].abs().sum(0)).flatten().tolist())
            assert nonzero == feats, out.name


def _span(group, name: str) -> tuple[int, int]:
    b = group.block(name)
    return b.offset, b.offset + b.size


def test_predictive_median_quantiles() -> None:
    model, args, kwargs = ZOO["constrained"](HOST)
    guide = AutoFaithfulMADE(model)
    _train(model, guide, args, kwargs, 20)
    pred = Predictive(model, guide=guide, num_samples=7)(*args, **kwargs)
    assert pred["z_dirichlet"].shape == (7, 3)
    med = guide.median(*args, **kwargs)
    assert torch.allclose(med["z_dirichlet"].sum(-1), torch.tensor(1.0))
    assert med["z_gamma"].shape == () and med["z_gamma"] > 0
    q = guide.quantiles([0.1, 0.5, 0.9], *args, **kwargs)
    assert q["z_dirichlet"].shape == (3, 3) and q["z_beta"].shape == (3,)
    assert torch.all(q["z_beta"][0] < q["z_beta"][2])


def test_subsampling_trains_with_full_size_independent_params() -> None:
    model_sub, args, kwargs = hier_regression(HOST, 1000, subsample_size=100)
    model_full, _, _ = hier_regression(HOST, 1000)
    guide_sub, guide_full = AutoFaithfulMADE(model_sub), AutoFaithfulMADE(model_full)
    guide_sub(*args), guide_full(*args)
    shapes = {n: p.shape for n, p in guide_sub.named_parameters()}
    assert shapes == {n: p.shape for n, p in guide_full.named_parameters()}
    losses = _train(model_sub, guide_sub, args, kwargs, 300)
    assert np.mean(losses[-30:]) < np.mean(losses[:30])
    med = guide_sub.median(*args)
    assert abs(float(med["slope"]) - 2.0) < 0.3


def test_eight_schools_local_plate_shapes() -> None:
    model, args, kwargs = ZOO["eight_schools"](HOST)
    guide = AutoFaithfulMADE(model)
    _train(model, guide, args, kwargs, 30)
    assert guide.median(*args)["theta"].shape == (8,)


@pytest.mark.parametrize(
    "loss",
    [
        JitTrace_ELBO(),
        TraceGraph_ELBO(),
        RenyiELBO(alpha=0.5, num_particles=2),
        Trace_ELBO(num_particles=4, vectorize_particles=True),
        TraceMeanField_ELBO(),
    ],
    ids=["jit", "tracegraph", "renyi", "vectorized", "meanfield"],
)
def test_elbo_variants(loss) -> None:
    model, args, kwargs = ZOO["eight_schools"](HOST)
    guide = AutoFaithfulMADE(model)
    losses = _train(model, guide, args, kwargs, 40, loss=loss)
    assert np.all(np.isfinite(losses))


def test_mean_field_elbo_stays_monte_carlo() -> None:
    """No analytic KL may replace a site (it would be biased for an inverted guide): the
    two ELBOs agree in expectation."""
    model, args, _ = ZOO["constrained"](HOST)
    guide = AutoFaithfulMADE(model, init_scale=0.5)
    guide(*args)
    with pytest.raises(NotImplementedError):
        tr = poutine.trace(guide).get_trace(*args)
        mtr = poutine.trace(poutine.replay(model, tr)).get_trace(*args)
        kl_divergence(tr.nodes["z_lognormal"]["fn"], mtr.nodes["z_lognormal"]["fn"])
    n = 3000
    a = Trace_ELBO(num_particles=n, vectorize_particles=True).loss(model, guide, *args)
    b = TraceMeanField_ELBO(num_particles=n, vectorize_particles=True).loss(model, guide, *args)
    assert abs(a - b) < 0.1


def test_csis_accepts_the_guide() -> None:
    model, args, _ = ZOO["collider"](HOST)
    guide = AutoFaithfulMADE(model)
    csis = CSIS(model, guide, Adam({"lr": 1e-2}), num_inference_samples=5, training_batch_size=8)
    losses = [csis.step(*args) for _ in range(60)]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_autoguidelist_and_block() -> None:
    model, args, kwargs = ZOO["collider"](HOST)
    guide = AutoGuideList(model)
    guide.append(AutoFaithfulMADE(poutine.block(model, hide=["z1"])))
    guide.append(AutoNormal(poutine.block(model, expose=["z1"])))
    losses = _train(model, guide, args, kwargs, 30)
    assert np.all(np.isfinite(losses))
    assert set(guide(*args)) == {"z1", "z2", "z3", "z4"}


def test_state_dict_round_trip() -> None:
    model, args, kwargs = ZOO["student"](HOST)
    guide = AutoFaithfulMADE(model)
    _train(model, guide, args, kwargs, 20)
    buf = io.BytesIO()
    torch.save(guide.state_dict(), buf)
    pyro.set_rng_seed(3)
    first = guide(*args)
    pyro.clear_param_store()
    other = AutoFaithfulMADE(model)
    other(*args)
    buf.seek(0)
    other.load_state_dict(torch.load(buf))
    pyro.set_rng_seed(3)
    second = other(*args)
    for n in first:
        assert torch.equal(first[n], second[n]), n


# ------------------------------------------------------------------------------ errors
def test_discrete_latent_error() -> None:
    def model():
        pyro.sample("k", dist.Bernoulli(0.5))

    with pytest.raises(ValueError, match="discrete latent sample site 'k'"):
        AutoFaithfulMADE(model)()


def test_missing_observation_error() -> None:
    model, args, _ = ZOO["collider"](HOST)
    guide = AutoFaithfulMADE(model)
    guide(*args)
    with pytest.raises(ValueError, match="Observed site 'x' has no observed value"):
        guide(None)


def test_observation_shape_error() -> None:
    model, args, _ = ZOO["vector_event"](HOST)
    guide = AutoFaithfulMADE(model)
    guide(*args)
    with pytest.raises(ValueError, match=r"Observed site 'x' has shape \(5,\)"):
        guide(torch.zeros(5))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"init_scale": 0.0}, "init_scale > 0"),
        ({"hidden_dims": [0]}, "hidden_dims"),
        ({"summary_dim": 0}, "summary_dim"),
    ],
)
def test_bad_options(kwargs, match: str) -> None:
    model, _, _ = ZOO["collider"](HOST)
    with pytest.raises(ValueError, match=match):
        AutoFaithfulMADE(model, **kwargs)


def test_unknown_structure_error() -> None:
    model, args, _ = ZOO["collider"](HOST)
    with pytest.raises(ValueError, match="Unknown structure 'magic'"):
        AutoFaithfulMADE(model, structure="magic")(*args)


def test_observation_cache_sees_in_place_updates():
    """Same tensor object, new values in place: the guide must condition on the new values."""
    model, (x,), _ = binary_tree(HOST, 3)
    guide = AutoFaithfulMADE(model)
    pyro.set_rng_seed(0)
    first = guide.median(x)
    x.add_(5.0)
    moved = guide.median(x)
    assert not torch.allclose(first["z0"], moved["z0"])
