"""The structured flow's vector field and solve, on both hosts, against their oracles:

* the Jacobian of the field with respect to the conditioning and the latents has exactly
  the plan's support (random weights, autograd in torch and jax);
* the exact divergence is the trace of that Jacobian, and Hutchinson's estimate agrees with
  it on average;
* the solve's log-density change is minus the log-determinant of the flow map's Jacobian
  (change of variables, the Jacobian by autograd through the solver), and solving back
  returns the start.
"""

from __future__ import annotations

import numpy as np
import pytest

from faithful_guides import ModelGraph
from faithful_guides.autoguides.cnf_plan import OdeOptions, build_cnf_plan
from faithful_guides.autoguides.layout import SiteLayout
from faithful_guides.autoguides.structure import build_structure
from faithful_guides.graph.masks import connectivity


def small_plan(hidden=(16, 16)):
    """A collider with a chain: z1 -> z3 <- z2, z3 -> x1, z2 -> z4 -> x2 (a 2-feature z4)."""
    g = ModelGraph.from_edges(
        [("z1", "z3"), ("z2", "z3"), ("z3", "x1"), ("z2", "z4"), ("z4", "x2")],
        observed={"x1", "x2"},
    )
    lays = {n: SiteLayout(n, (2,) if n == "z4" else (), 0, (), ()) for n in g.sites}
    return build_cnf_plan(build_structure(g, lays), hidden=hidden).groups[0]


class TorchHost:
    name = "pyro"

    def __init__(self, masks, seed=0):
        import torch

        from faithful_guides.backends.pyro.cnf_field import VectorField

        torch.manual_seed(seed)
        torch.set_default_dtype(torch.float64)
        self.field = VectorField(masks)
        with torch.no_grad():  # random output weights: a field that is not zero
            self.field.out.weight.normal_(0.0, 10.0)
            for gate in self.field.gates:
                for p in (gate.a, gate.e, gate.d):
                    p.normal_(0.0, 0.5)

    def teardown(self):
        import torch

        torch.set_default_dtype(torch.float32)

    def jacobian(self, t, x):
        import torch

        f = lambda x: self.field(torch.tensor(t), x)  # noqa: E731
        return torch.autograd.functional.jacobian(f, torch.as_tensor(x)).numpy()

    def divergence(self, t, c, z, probe=None):
        import torch

        from faithful_guides.backends.pyro.cnf_field import divergence

        p = None if probe is None else torch.as_tensor(probe)
        _, div = divergence(
            self.field, torch.tensor(t), torch.as_tensor(c), torch.as_tensor(z), probe=p
        )
        return div.detach().numpy()

    def solve(self, z0, c, *, reverse=False, exact=True, ode=None):
        import torch

        from faithful_guides.backends.pyro.cnf_field import solve_flow

        z1, delta = solve_flow(
            self.field,
            torch.as_tensor(z0),
            torch.as_tensor(c),
            exact=exact,
            ode=ode,
            reverse=reverse,
        )
        return z1.detach().numpy(), delta.detach().numpy()

    def flow_jacobian(self, z0, c):
        import torch

        from faithful_guides.backends.pyro.cnf_field import solve_flow

        f = lambda z: solve_flow(self.field, z, torch.as_tensor(c), exact=True)[0]  # noqa: E731
        return torch.autograd.functional.jacobian(f, torch.as_tensor(z0)).numpy()


class JaxHost:
    name = "numpyro"

    def __init__(self, masks, seed=0):
        import jax

        from faithful_guides.backends.numpyro.cnf_field import init_field

        jax.config.update("jax_enable_x64", True)
        self.masks = masks
        key = jax.random.PRNGKey(seed)
        p = init_field(key, masks)
        keys = jax.random.split(key, len(p))
        last = f"W{len(masks) - 1}"
        self.params = {
            k: (jax.random.normal(kk, v.shape, dtype="float64") * (10.0 if k == last else 0.5))
            if k == last or k[0] in "aed"
            else v.astype("float64")
            for kk, (k, v) in zip(keys, p.items(), strict=True)
        }

    def teardown(self):
        import jax

        jax.config.update("jax_enable_x64", False)

    def jacobian(self, t, x):
        import jax

        from faithful_guides.backends.numpyro.cnf_field import field_forward

        return np.asarray(jax.jacfwd(lambda x: field_forward(self.params, self.masks, t, x))(x))

    def divergence(self, t, c, z, probe=None):
        import jax

        from faithful_guides.backends.numpyro.cnf_field import divergence

        if not hasattr(self, "_div"):  # compiled once, as under the hosts' jitted SVI
            self._div = jax.jit(
                lambda t, c, z, p: divergence(self.params, self.masks, t, c, z, probe=p)[1]
            )
        return np.asarray(self._div(t, c, z, probe))

    def solve(self, z0, c, *, reverse=False, exact=True, ode=None):
        import jax

        from faithful_guides.backends.numpyro.cnf_field import solve_flow

        key = None if exact else jax.random.PRNGKey(1)
        run = jax.jit(
            lambda z, c: solve_flow(
                self.params, self.masks, z, c, exact=exact, ode=ode, reverse=reverse, key=key
            )
        )
        z1, delta = run(z0, c)
        return np.asarray(z1), np.asarray(delta)

    def flow_jacobian(self, z0, c):
        import jax

        from faithful_guides.backends.numpyro.cnf_field import solve_flow

        f = lambda z: solve_flow(self.params, self.masks, z, c, exact=True)[0]  # noqa: E731
        return np.asarray(jax.jit(jax.jacrev(f))(z0))  # the solver is custom_vjp: reverse mode


@pytest.fixture(params=["pyro", "numpyro"])
def host_cls(request):
    pytest.importorskip("torch" if request.param == "pyro" else "jax")
    pytest.importorskip("torchdiffeq" if request.param == "pyro" else "diffrax")
    return TorchHost if request.param == "pyro" else JaxHost


@pytest.fixture
def host(host_cls):
    h = host_cls(small_plan().masks)
    yield h
    h.teardown()


def test_plan_reads_exactly_the_inverse_parents_and_itself():
    g = small_plan()
    cols = {}
    for b in (
        *g.known,
        *(type(b)(b.name, b.kind, b.size, b.offset + g.known_size) for b in g.state),
    ):
        cols[b.name] = set(range(b.offset, b.offset + b.size))
    z4 = next(b for b in g.state if b.name == "z4")
    # z4's velocity (2 features) reads z4 and, in the inverse, x2 and its parent z2.
    reads = g.allowed[z4.offset]
    assert cols["z4"] <= reads and cols["x2"] <= reads
    expected = np.array([[i in a for i in range(g.known_size + g.state_size)] for a in g.allowed])
    assert (connectivity(g.masks) == expected).all()


@pytest.mark.parametrize("t", [0.0, 0.7])
def test_field_jacobian_has_the_plan_support(host, t):
    g = small_plan()
    x = np.random.default_rng(0).normal(size=g.known_size + g.state_size)
    support = np.abs(host.jacobian(t, x)) > 1e-10
    expected = np.array([[i in a for i in range(x.size)] for a in g.allowed])
    assert (support == expected).all()


def test_divergence_is_the_jacobian_trace(host):
    g = small_plan()
    rng = np.random.default_rng(1)
    c, z = rng.normal(size=(3, g.known_size)), rng.normal(size=(3, g.state_size))
    exact = host.divergence(0.3, c, z)
    for row in range(3):
        jac = host.jacobian(0.3, np.concatenate([c[row], z[row]]))[:, g.known_size :]
        assert exact[row] == pytest.approx(np.trace(jac), rel=1e-8, abs=1e-10)
    probes = rng.choice([-1.0, 1.0], size=(400, 3, g.state_size))
    estimates = np.stack([host.divergence(0.3, c, z, probe=p) for p in probes])
    # Hutchinson's estimate is unbiased: its mean over probes is close to the trace
    sd = estimates.std(0) / np.sqrt(len(estimates))
    assert (np.abs(estimates.mean(0) - exact) < 4 * sd + 1e-9).all()


def test_log_density_change_is_the_flow_log_determinant(host):
    g = small_plan()
    rng = np.random.default_rng(2)
    c, z0 = rng.normal(size=g.known_size), rng.normal(size=g.state_size)
    z1, delta = host.solve(z0, c)
    assert abs(float(delta)) > 0.05 and np.abs(z1 - z0).max() > 0.1  # a flow that does something
    jac = host.flow_jacobian(z0, c)
    assert float(delta) == pytest.approx(-np.linalg.slogdet(jac)[1], abs=1e-4)
    tight = OdeOptions(rtol=1e-9, atol=1e-9)
    z1, delta = host.solve(z0, c, ode=tight)
    back, delta_back = host.solve(z1, c, reverse=True, ode=tight)
    np.testing.assert_allclose(back, z0, atol=1e-6)
    assert float(delta_back) == pytest.approx(-float(delta), abs=1e-6)  # solved back
    fixed = host.solve(z0, c, ode=OdeOptions(method="midpoint", step_size=0.01))
    np.testing.assert_allclose(fixed[0], z1, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"method": "rk45"}, ValueError, r"Unknown ODE method 'rk45': expected one of dopri5"),
        ({"rtol": 0}, ValueError, r"ODE option rtol must be a positive number, found 0"),
        ({"max_steps": 2.5}, TypeError, r"max_steps must be an int, found 2.5"),
        ({"method": "euler"}, ValueError, r"'euler' takes fixed steps: give step_size in"),
        ({"adjoint": "yes"}, TypeError, r"adjoint must be True or False, found 'yes'"),
    ],
)
def test_bad_ode_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        OdeOptions(**kwargs)


def test_unknown_trace_is_refused():
    with pytest.raises(ValueError, match=r"Unknown trace 'approx': expected one of auto"):
        build_cnf_plan(build_structure(*_tiny()), trace="approx")


def _tiny():
    g = ModelGraph.from_edges([("z", "x")], observed={"x"})
    return g, {n: SiteLayout(n, (), 0, (), ()) for n in g.sites}
