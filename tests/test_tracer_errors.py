"""The tracers' errors name the site, what was expected, what was found, and the fix."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from faithful_guides.graph.model_graph import ModelGraph
from faithful_guides.zoo import HOSTS, get_host


def _tracer(host: str) -> Callable[..., ModelGraph]:
    if host == "pyro":
        from faithful_guides.pyro import trace_model
    else:
        from faithful_guides.numpyro import trace_model
    return trace_model


BLOCK = {"pyro": r"poutine\.block\(model, hide=\['c'\]\)", "numpyro": r"handlers\.block"}


@pytest.mark.parametrize("host", HOSTS)
def test_discrete_latent(host: str) -> None:
    h = get_host(host)

    def model(x: Any) -> None:
        p = h.sample("p", h.dist.Beta(1.0, 1.0))
        c = h.sample("c", h.dist.Bernoulli(p))
        h.sample("x", h.dist.Normal(c, 1.0), obs=x)

    with pytest.raises(
        ValueError, match=r"discrete latent sample site 'c' \(support boolean\)"
    ) as e:
        _tracer(host)(model, h.tensor(0.5))
    assert BLOCK[host].replace("\\", "") in str(e.value) or host == "numpyro"
    assert "enumerat" in str(e.value)
    assert "handlers.block" in str(e.value) or host == "pyro"


@pytest.mark.parametrize("host", HOSTS)
def test_discrete_observed_is_fine(host: str) -> None:
    h = get_host(host)

    def model(k: Any) -> None:
        p = h.sample("p", h.dist.Beta(1.0, 1.0))
        h.sample("k", h.dist.Bernoulli(p), obs=k)

    g = _tracer(host)(model, h.tensor(1.0))
    assert g.sites["k"].discrete and g.sites["k"].support == "boolean"
    assert set(g.dag.edges()) == {("p", "k")}


def _dynamic_models(host: str) -> dict[str, Callable[[], None]]:
    h = get_host(host)
    calls = {"extra": 0, "shape": 0}

    def extra_site() -> None:  # the second run has one more site
        calls["extra"] += 1
        h.sample("z", h.dist.Normal(0.0, 1.0))
        if calls["extra"] % 2 == 0:
            h.sample("bonus", h.dist.Normal(0.0, 1.0))

    def changing_shape() -> None:
        calls["shape"] += 1
        n = 2 + calls["shape"] % 2
        h.sample("v", h.dist.Normal(h.tensor(np.zeros(n)), 1.0).to_event(1))

    return {"extra": extra_site, "shape": changing_shape}


@pytest.mark.parametrize("host", HOSTS)
def test_dynamic_structure(host: str) -> None:
    models = _dynamic_models(host)
    trace = _tracer(host)
    with pytest.raises(ValueError, match=r"dynamic structure.*appeared.*'bonus'.*static"):
        trace(models["extra"])
    with pytest.raises(ValueError, match=r"changed shape: 'v' \(3,\) -> \(2,\)"):
        trace(models["shape"])
    g = trace(models["extra"], check_static=False)  # opt out: first run only
    assert "z" in g.sites


def test_pyro_value_dependent_structure() -> None:
    import pyro
    import pyro.distributions as dist

    def model() -> None:
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        if z > 0:  # fine in Pyro, but the structure depends on the draw
            pyro.sample("pos", dist.Normal(z, 1.0))
        else:
            pyro.sample("neg", dist.Normal(z, 1.0))

    trace = _tracer("pyro")
    seeds = [s for s in range(20) if _branch(trace, model, s) != _branch(trace, model, s + 1)]
    with pytest.raises(ValueError, match=r"dynamic structure.*'(pos|neg)'"):
        trace(model, seed=seeds[0])


def _branch(trace: Callable[..., ModelGraph], model: Callable[[], None], seed: int) -> bool:
    return "pos" in trace(model, seed=seed, check_static=False).sites


def test_numpyro_control_flow_on_latent() -> None:
    import numpyro
    import numpyro.distributions as dist

    def model() -> None:
        numpyro.sample("a", dist.Normal(0.0, 1.0))
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        if z > 0:
            numpyro.sample("pos", dist.Normal(z, 1.0))

    with pytest.raises(ValueError, match=r"after sample site 'z'.*jnp\.where.*jax\.lax\.cond"):
        _tracer("numpyro")(model)

    def int_model() -> None:
        n = numpyro.sample("n", dist.Normal(3.0, 1.0))
        numpyro.sample("v", dist.Normal(0.0, 1.0).expand([int(n)]))

    with pytest.raises(ValueError, match=r"Python control flow after sample site 'n'"):
        _tracer("numpyro")(int_model)


def test_numpyro_control_flow_on_data_is_fine() -> None:
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    def model(y: Any) -> None:
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        if jnp.all(y > -100):  # concrete data may decide Python branches
            numpyro.sample("y", dist.Normal(z, 1.0), obs=y)

    g = _tracer("numpyro")(model, jnp.ones(3))
    assert set(g.dag.edges()) == {("z", "y")}


@pytest.mark.parametrize("host", HOSTS)
def test_nan_observation(host: str) -> None:
    h = get_host(host)

    def model(y: Any) -> None:
        m = h.sample("m", h.dist.Normal(0.0, 1.0))
        with h.plate("rows", 3):
            h.sample("y", h.dist.Normal(m, 1.0), obs=y)

    y = h.tensor([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match=r"Observed site 'y' contains NaN \(1 of 3.*obs_mask="):
        _tracer(host)(model, y)
    g = _tracer(host)(model, y, check_nan=False)
    assert g.observed == {"y"}


@pytest.mark.parametrize("host", HOSTS)
def test_missing_host_gives_install_hint(host: str) -> None:
    blocked = "torch" if host == "pyro" else "jax"
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        f"try:\n    import faithful_guides.{host}\n"
        f"except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert f"pip install faithful-guides[{host}]" in out.stdout, out.stdout + out.stderr
