"""The Pyro and NumPyro tracers give the same ModelGraph for the same zoo model."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import networkx as nx
import pytest

from faithful_guides.graph.model_graph import ModelGraph, PlateInfo
from faithful_guides.zoo import (
    HOSTS,
    ZOO,
    binary_tree,
    constrained,
    eight_schools,
    get_host,
    hier_regression,
    hmm_chain,
    latent_grid,
    vector_event,
)


def _tracer(host: str) -> Callable[..., ModelGraph]:
    if host == "pyro":
        from faithful_guides.pyro import trace_model
    else:
        from faithful_guides.numpyro import trace_model
    return trace_model


def trace(
    host: str, spec: tuple[Any, tuple[Any, ...], dict[str, Any]], **options: Any
) -> ModelGraph:
    model, args, kwargs = spec
    return _tracer(host)(model, *args, **options, **kwargs)


@functools.cache
def zoo_graph(name: str, host: str) -> ModelGraph:
    return trace(host, ZOO[name](get_host(host)))


def parents(g: ModelGraph, name: str) -> set[str]:
    return set(g.dag.predecessors(name))


# --------------------------------------------------------------------------------------
# Both hosts agree on the whole zoo
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ZOO))
def test_hosts_agree(name: str) -> None:
    gp, gn = zoo_graph(name, "pyro"), zoo_graph(name, "numpyro")
    assert (gp.backend, gn.backend) == ("pyro", "numpyro")
    assert list(gp.sites) == list(gn.sites)
    for site in gp.sites:
        assert gp.sites[site] == gn.sites[site], site  # every fact except `constraint`
    assert set(gp.dag.edges()) == set(gn.dag.edges())
    assert gp.deterministic == gn.deterministic


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_graph_is_wellformed(name: str, host: str) -> None:
    g = zoo_graph(name, host)
    assert set(g.dag.nodes) == set(g.sites)
    assert nx.is_directed_acyclic_graph(g.dag)
    assert [s.order for s in g.sites.values()] == list(range(len(g.sites)))
    assert g.observed and g.latent
    for u, v in g.dag.edges():
        assert g.sites[u].order < g.sites[v].order
    assert all(s.constraint is not None for s in g.sites.values())
    assert not any(s.discrete for s in g.sites.values())


# --------------------------------------------------------------------------------------
# Explicit structures
# --------------------------------------------------------------------------------------

EXPECTED_EDGES = {
    "student": {
        ("D", "G"),
        ("I", "G"),
        ("I", "S"),
        ("G", "L"),
        ("S", "J"),
        ("L", "J"),
        ("G", "H"),
        ("J", "H"),
    },
    "collider": {("z1", "z3"), ("z2", "z4"), ("z3", "x"), ("z4", "x")},
    "arithmetic": {
        ("z0", "z2"),
        ("z1", "z2"),
        ("z0", "z3"),
        ("z1", "z3"),
        ("z3", "z5"),
        ("z4", "z5"),  # through the deterministic site "scale"
        ("z3", "x0"),
        ("z5", "x1"),
    },
    "tree3": {("z0", "z1"), ("z0", "z2"), ("z1", "x3"), ("z1", "x4"), ("z2", "x5"), ("z2", "x6")},
}
EXPECTED_OBSERVED = {
    "student": {"J", "H"},
    "collider": {"x"},
    "arithmetic": {"x0", "x1"},
    "tree3": {"x3", "x4", "x5", "x6"},
}


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("name", sorted(EXPECTED_EDGES))
def test_expected_edges(name: str, host: str) -> None:
    g = zoo_graph(name, host)
    assert set(g.dag.edges()) == EXPECTED_EDGES[name]
    assert g.observed == EXPECTED_OBSERVED[name]


@pytest.mark.parametrize("host", HOSTS)
def test_deterministic_site_is_recorded_and_passed_through(host: str) -> None:
    g = zoo_graph("arithmetic", host)
    assert g.deterministic == {"scale": frozenset({"z4"})}
    assert "scale" not in g.sites
    assert list(g.sites) == ["z0", "z1", "z2", "z3", "z4", "z5", "x0", "x1"]
    assert {g.sites[n].distribution for n in ("z0", "z1")} == {"Laplace"}


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("name", ["tree4", "tree7", "state_space", "grid3"])
def test_chain_tree_grid_edges(name: str, host: str) -> None:
    g = zoo_graph(name, host)
    if name.startswith("tree"):
        n = len(g.sites)
        expected = {(f"z{(i - 1) // 2}", g_name) for i, g_name in enumerate(g.sites) if i}
        assert {v: i for i, v in enumerate(g.sites)} == {
            (f"z{i}" if 2 * i + 1 < n else f"x{i}"): i for i in range(n)
        }
    elif name == "state_space":
        T = len(g.sites) // 2
        expected = {(f"z{t - 1}", f"z{t}") for t in range(1, T)}
        expected |= {(f"z{t}", f"x{t}") for t in range(T)}
    else:
        n = 3
        expected = {(f"z_{i}_{j}", f"x_{i}_{j}") for i in range(n) for j in range(n)}
        expected |= {(f"z_{i - 1}_{j}", f"z_{i}_{j}") for i in range(1, n) for j in range(n)}
        expected |= {(f"z_{i}_{j - 1}", f"z_{i}_{j}") for i in range(n) for j in range(1, n)}
    assert set(g.dag.edges()) == expected


@pytest.mark.parametrize("host", HOSTS)
def test_tree_rows_weights_and_medium_smoke(host: str) -> None:
    g = trace(host, binary_tree(host, 4, num_rows=5, weights=[0.5] * 15))
    assert all(s.plates == (PlateInfo("data", 5, -1, 5),) for s in g.sites.values())
    assert all(s.batch_shape == (5,) for s in g.sites.values())
    assert parents(g, "x14") == {"z6"}
    big = trace(host, binary_tree(host, 9), check_static=False)
    assert len(big.sites) == 511 and big.dag.number_of_edges() == 510
    assert len(trace(host, latent_grid(host, 4)).sites) == 32
    assert len(trace(host, hmm_chain(host, 7)).observed) == 7


# --------------------------------------------------------------------------------------
# Observation through condition handlers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_condition_handler_observes(host: str) -> None:
    h = get_host(host)
    model, (x0, x1), _ = ZOO["arithmetic"](h)
    conditioned = h.condition(model, data={"x0": x0, "x1": x1, "z2": h.tensor(30.0)})
    g = _tracer(host)(conditioned)  # no obs= anywhere: all from the handler
    assert g.observed == {"x0", "x1", "z2"}
    assert set(g.dag.edges()) == EXPECTED_EDGES["arithmetic"]
    free = _tracer(host)(model)  # prior model: everything latent
    assert free.observed == frozenset()


# --------------------------------------------------------------------------------------
# Plates, shapes, supports
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_subsampled_plate(host: str) -> None:
    g = trace(host, hier_regression(host, 1000, subsample_size=100))
    y = g.sites["y"]
    assert y.observed and y.batch_shape == (100,)
    assert y.plates == (PlateInfo("data", 1000, -1, 100),)
    assert y.plates[0].subsampled
    assert parents(g, "y") == {"intercept", "slope", "sigma"}
    assert all(g.sites[n].plates == () for n in ("intercept", "slope", "sigma"))
    full = zoo_graph("hier_regression", host).sites["y"]
    assert full.plates == (PlateInfo("data", 1000, -1, 1000),) and not full.plates[0].subsampled


@pytest.mark.parametrize("host", HOSTS)
def test_eight_schools_plates(host: str) -> None:
    g = trace(host, eight_schools(host))
    schools = (PlateInfo("schools", 8, -1, 8),)
    assert g.sites["theta"].plates == schools and g.sites["y"].plates == schools
    assert g.sites["theta"].batch_shape == (8,)
    assert g.sites["mu"].plates == () and g.sites["tau"].support == "greater_than(0.0)"
    assert parents(g, "theta") == {"mu", "tau"} and parents(g, "y") == {"theta"}
    assert g.plates["theta"] == frozenset({"schools"})


@pytest.mark.parametrize("host", HOSTS)
def test_nested_plates_outermost_first(host: str) -> None:
    h = get_host(host)

    def model() -> None:
        with h.plate("outer", 3, dim=-2), h.plate("inner", 4):
            h.sample("z", h.dist.Normal(0.0, 1.0))

    site = _tracer(host)(model).sites["z"]
    assert site.plates == (PlateInfo("outer", 3, -2, 3), PlateInfo("inner", 4, -1, 4))
    assert site.batch_shape == (3, 4)


@pytest.mark.parametrize("host", HOSTS)
def test_vector_event_shapes(host: str) -> None:
    g = trace(host, vector_event(host))
    z, x = g.sites["z"], g.sites["x"]
    assert (z.batch_shape, z.event_shape, z.shape) == ((), (3,), (3,))
    assert (x.batch_shape, x.event_shape) == ((), (4,))
    assert z.support == x.support == "independent(real, 1)"
    assert z.distribution == x.distribution == "Normal"
    assert set(g.dag.edges()) == {("z", "x")}


@pytest.mark.parametrize("host", HOSTS)
def test_constrained_supports(host: str) -> None:
    g = trace(host, constrained(host))
    supports = {n: s.support for n, s in g.sites.items() if not s.observed}
    assert supports == {
        "z_lognormal": "greater_than(0.0)",
        "z_gamma": "greater_than(0.0)",
        "z_beta": "interval(0.0, 1.0)",
        "z_dirichlet": "simplex",
    }
    assert g.sites["z_dirichlet"].event_shape == (3,)
    assert g.sites["x_dirichlet"].support == "independent(real, 1)"
    assert {g.sites[n].distribution for n in supports} == {
        "LogNormal",
        "Gamma",
        "Beta",
        "Dirichlet",
    }


# --------------------------------------------------------------------------------------
# Provenance through arbitrary code
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_provenance_through_tensor_code(host: str) -> None:
    h = get_host(host)
    xp, d = h.np, h.dist

    def model(y: Any) -> None:
        a = h.sample("a", d.Normal(0.0, 1.0))
        b = h.sample("b", d.Normal(0.0, 1.0))
        c = h.sample("c", d.Normal(0.0, 1.0))
        v = h.sample("v", d.Normal(h.tensor([0.0, 0.0]), 1.0).to_event(1))
        gated = xp.where(a > 0, b, h.tensor(0.0))  # `a` only decides, `b` flows
        h.sample("g", d.Normal(gated, 1.0))
        h.sample("e", d.Normal(v[1] * 2.0, xp.exp(c)))
        o = h.sample("o", d.Normal(0.0, 1.0), obs=y)
        h.sample("after_obs", d.Normal(o, 1.0))  # an observed value feeds a latent
        h.sample("masked", d.Normal(0.0, 1.0).mask(b > 0))  # mask reads b

    g = _tracer(host)(model, h.tensor(0.3))
    assert parents(g, "g") == {"a", "b"}
    assert parents(g, "e") == {"v", "c"}
    assert parents(g, "after_obs") == {"o"}
    assert parents(g, "masked") == {"b"}
    assert g.sites["masked"].distribution == "Normal"


# --------------------------------------------------------------------------------------
# Imports stay separate
# --------------------------------------------------------------------------------------


def test_host_modules_do_not_import_each_other() -> None:
    code = (
        "import sys, faithful_guides.numpyro, faithful_guides.zoo;"
        "assert 'torch' not in sys.modules, 'numpyro side imported torch';"
        "import faithful_guides.pyro;"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    code = "import sys, faithful_guides.pyro; assert 'jax' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
