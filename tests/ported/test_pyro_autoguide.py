# The host code is kept verbatim: its loop names, regexes and comparisons stay as written.
# ruff: noqa: B007, RUF005, RUF043, SIM300
"""Pyro's own autoguide tests, run with :class:`faithful_guides.pyro.AutoFaithfulMADE` in place
of the host guides.

Ported from https://github.com/pyro-ppl/pyro, ``tests/infer/test_autoguide.py`` (commit
ff6ae1c9572591791aae8842bcd702fcf0b46fd6), Copyright (c) 2017-2019 Uber Technologies, Inc.,
SPDX-License-Identifier: Apache-2.0. The model code and the assertions are the host's; the
guide-class axis of each parametrization is replaced by ``AutoFaithfulMADE`` (id ``made``) and,
where cheap, ``partial(AutoFaithfulMADE, structure="full")`` (id ``made_full``); the helper
guides built from several host guides (``auto_guide_list_x``, ``auto_guide_callable``, ...)
keep their non-continuous parts (``AutoDelta``, ``AutoCallable``, a custom ``AutoGuide``,
``AutoNormal`` on one site) and take ours for the continuous part they gave to
``AutoDiagonalNormal``/``AutoLowRankMultivariateNormal``/``AutoIAFNormal``. Every other
change is marked ``# ported:`` in the code. As in the host's ``tests/conftest.py``, each
test runs with float64 as torch's default dtype, validation on and a cleared param store
(plus, ours, ``pyro.set_rng_seed(0)`` for reproducibility).

Host tests not ported (inherently about another guide or option):

========================================  ==================================================
host test                                 reason
========================================  ==================================================
``test_scores``                           where the host guides put the density: on an
                                          auxiliary latent (``_Auto*_latent``, AutoNormal's
                                          ``<site>_unconstrained``) with a zero-density
                                          ``Delta`` at the user site; ours scores the user
                                          site itself (a ``TransformedDistribution``)
``test_iplate_smoke``                     marked xfail by the host for every guide: Pyro's
                                          ``AutoGuide`` base raises NotImplementedError
                                          ("AutoGuide does not support sequential
                                          pyro.plate") before any guide code runs
``test_empty_model_error``                AutoContinuous's RuntimeError for a model without
                                          latents (host-run on AutoDiagonalNormal only);
                                          AutoNormal, whose drop-in ours is, returns ``{}``
``test_subsample_model_amortized``        the ``amortized_plates=`` option and parameter
                                          names of the ``Auto*Messenger`` guides
``test_sphere_raw_ok``                    ``AutoDelta`` only: a point estimate needs no
                                          bijection of the sphere; a density guide must
                                          raise (``test_sphere_helpful_error``, ported)
``test_autonormal_dynamic_model``         ``AutoNormal``'s per-site ``guide.locs.<site>``
                                          parameters surviving a change of the model in
                                          the param store; our parameters are network
                                          weights whose shapes depend on the whole model
========================================  ==================================================

The host's other guide classes (AutoDelta, AutoDiagonalNormal, AutoMultivariateNormal,
AutoLowRankMultivariateNormal, AutoIAFNormal, AutoLaplaceApproximation, AutoStructured and
its ``AutoStructured_*`` subclasses, AutoGaussian(Funsor), the ``Auto*Messenger`` guides) are
dropped from the parametrizations, with their guide-specific branches
(``laplace_approximation()``, ``xfail_messenger``).

Where ours replaces AutoDiagonalNormal or AutoLowRankMultivariateNormal inside a helper
guide list, it takes their default ``init_loc_fn=init_to_median`` (ours defaults to
AutoNormal's ``init_to_feasible``). ``test_median_module`` runs ours only with
``init_to_mean``/``init_to_median``, as every host case there starts at the mean or median
(AutoNormal only as ``partial(AutoNormal, init_loc_fn=init_to_median)``).

Ported with an adaptation (each noted in the code): ``test_unpack_latent``
(``sample_latent``/``_unpack_latent`` are AutoContinuous internals; the shape check of the
LKJCholesky site is kept), ``test_init_scale`` (no ``_loc_scale()``; the scale is measured
from 2000 guide draws), ``test_nested_autoguide`` (ours replaces the inner
``AutoIAFNormal``; the check of the IAF's auxiliary latent is dropped), ``test_median`` (no
``xfail_if_not_implemented`` wrapper: a missing ``median`` fails), ``test_exact_tree``
(``is_exact`` is true for ours: the faithful inverse of the tree, q(x | obs) q(y_i | x,
obs_i), is exact for this linear-Gaussian model).
"""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import (
    SVI,
    JitTrace_ELBO,
    JitTraceEnum_ELBO,
    JitTraceGraph_ELBO,
    Predictive,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceGraph_ELBO,
)
from pyro.infer.autoguide import (
    AutoCallable,
    AutoDelta,
    AutoDiscreteParallel,
    AutoGuide,
    AutoGuideList,
    AutoNormal,
    init_to_feasible,
    init_to_mean,
    init_to_median,
    init_to_sample,
)
from pyro.infer.reparam import ProjectedNormalReparam
from pyro.nn.module import PyroModule, PyroParam, PyroSample
from pyro.ops.gaussian import Gaussian
from pyro.optim import Adam, ClippedAdam
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match
from torch import nn
from torch.distributions import constraints

from faithful_guides.pyro import AutoFaithfulMADE, AutoIterative

from ._pyro_common import assert_close, assert_equal


@pytest.fixture(autouse=True)
def _host_setup():
    """What Pyro's ``tests/conftest.py`` does per test (float64, validation, fresh store)."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    yield
    torch.set_default_dtype(dtype)
    pyro.clear_param_store()


def _named(fn, name):
    fn.__name__ = name
    return fn


# ported: the guide-class axis of the host's parametrizations.
AutoFaithfulMADE_full = _named(
    functools.partial(AutoFaithfulMADE, structure="full"), "AutoFaithfulMADE_full"
)
MADE = pytest.param(AutoFaithfulMADE, id="made")
MADE_FULL = pytest.param(AutoFaithfulMADE_full, id="made_full")
ITERATIVE = pytest.param(AutoIterative, id="iterative")
OURS = [MADE, MADE_FULL, ITERATIVE]


def _with_init(init_loc_fn, marks=()):
    return pytest.param(
        functools.partial(AutoFaithfulMADE, init_loc_fn=init_loc_fn),
        id=f"made-{init_loc_fn.__name__}",
        marks=marks,
    )


# Known gaps, each still run (strict: a fix makes the mark fail, so it gets removed).
SLOW_FROM_PRIOR_DRAW = pytest.mark.xfail(
    strict=True,
    reason="with init_to_sample this run starts x at a prior draw, and its median is 0.19, "
    "not within 0.1 of 0, after the host's 100 steps at lr 0.02 (our free locations move "
    "as AutoNormal's do; the start differs)",
)
INNER_GRADIENT_JIT = pytest.mark.xfail(
    strict=True,
    raises=ValueError,
    reason="AutoIterative(inputs='gradient') takes torch.autograd.grad inside the guide, "
    "which torch.jit.trace cannot record: it refuses with a clear error (inputs='error' traces)",
)
SAMPLES_INSIDE_BLOCK = pytest.mark.xfail(
    strict=True,
    reason="the guide's hidden model run holds latents at a fixed point, but a site hidden "
    "by a poutine.block inside the model is still sampled there, and torch.jit cannot "
    "export that draw (Beta.rsample)",
)


@pytest.mark.parametrize("Elbo", [Trace_ELBO, TraceGraph_ELBO, TraceEnum_ELBO])
@pytest.mark.parametrize("auto_class", OURS)
def test_factor(auto_class, Elbo):
    def model(log_factor):
        pyro.sample("z1", dist.Normal(0.0, 1.0))
        pyro.factor("f1", log_factor)
        pyro.sample("z2", dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1))
        with pyro.plate("plate", 3):
            pyro.factor("f2", log_factor)
            pyro.sample("z3", dist.Normal(torch.zeros(3), torch.ones(3)))

    guide = auto_class(model)
    elbo = Elbo(strict_enumeration_warning=False)
    elbo.loss(model, guide, torch.tensor(0.0))  # initialize param store

    pyro.set_rng_seed(123)
    loss_5 = elbo.loss(model, guide, torch.tensor(5.0))
    pyro.set_rng_seed(123)
    loss_4 = elbo.loss(model, guide, torch.tensor(4.0))
    assert_close(loss_5 - loss_4, -1 - 3)


@pytest.mark.parametrize("num_particles", [1, 10])
@pytest.mark.parametrize("Elbo", [Trace_ELBO, TraceGraph_ELBO, TraceEnum_ELBO])
@pytest.mark.parametrize(
    "init_loc_fn",
    [
        init_to_feasible,
        init_to_mean,
        init_to_median,
        init_to_sample,
    ],
)
# ported: default structure only: structure="full" refuses this model by design (its
# latents would have to be sampled before and after the plated z3: "a coarser latent
# conditioning on a finer one").
@pytest.mark.parametrize("auto_class", [MADE])
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_shapes(auto_class, init_loc_fn, Elbo, num_particles):
    def model():
        pyro.sample("z1", dist.Normal(0.0, 1.0))
        pyro.sample("z2", dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1))
        with pyro.plate("plate", 3):
            pyro.sample("z3", dist.Normal(torch.zeros(3), torch.ones(3)))
        pyro.sample("z4", dist.MultivariateNormal(torch.zeros(2), torch.eye(2)))
        pyro.sample("z5", dist.Dirichlet(torch.ones(3)))
        pyro.sample("z6", dist.Normal(0, 1).expand((2,)).mask(torch.arange(2) > 0).to_event(1))
        pyro.sample("z7", dist.LKJCholesky(2, torch.tensor(1.0)))

    guide = auto_class(model, init_loc_fn=init_loc_fn)
    elbo = Elbo(
        num_particles=num_particles,
        vectorize_particles=True,
        strict_enumeration_warning=False,
    )
    loss = elbo.loss(model, guide)
    assert np.isfinite(loss), loss


# ported: in these helpers our guide replaces AutoDiagonalNormal (whose default
# init_loc_fn, init_to_median, it takes: ``_ours_for_diagonal``) or AutoIAFNormal (default
# init_to_feasible, as ours).
def _ours_for_diagonal(model):
    return AutoFaithfulMADE(model, init_loc_fn=init_to_median)


def auto_guide_list_x(model):
    guide = AutoGuideList(model)
    guide.append(AutoDelta(poutine.block(model, expose=["x"])))
    guide.append(_ours_for_diagonal(poutine.block(model, hide=["x"])))
    return guide


def auto_guide_callable(model):
    def guide_x():
        x_loc = pyro.param("x_loc", torch.tensor(1.0))
        x_scale = pyro.param("x_scale", torch.tensor(0.1), constraint=constraints.positive)
        pyro.sample("x", dist.Normal(x_loc, x_scale))

    def median_x():
        return {"x": pyro.param("x_loc", torch.tensor(1.0))}

    guide = AutoGuideList(model)
    guide.append(AutoCallable(model, guide_x, median_x))
    guide.append(_ours_for_diagonal(poutine.block(model, hide=["x"])))
    return guide


class GuideX(AutoGuide):
    def __init__(self, model):
        super().__init__(model)
        self.x_loc = nn.Parameter(torch.tensor(1.0))
        self.x_scale = PyroParam(torch.tensor(0.1), constraint=constraints.positive)

    def forward(self, *args, **kwargs):
        return {"x": pyro.sample("x", dist.Normal(self.x_loc, self.x_scale))}

    def median(self, *args, **kwargs):
        return {"x": self.x_loc.detach()}


def auto_guide_module_callable(model):
    guide = AutoGuideList(model)
    guide.custom = GuideX(model)
    guide.diagnorm = _ours_for_diagonal(poutine.block(model, hide=["x"]))
    return guide


def nested_auto_guide_callable(model):
    guide = AutoGuideList(model)
    guide.append(AutoDelta(poutine.block(model, expose=["x"])))
    guide_y = AutoGuideList(poutine.block(model, expose=["y"]))
    guide_y.z = AutoFaithfulMADE(poutine.block(model, expose=["y"]))
    guide.append(guide_y)
    return guide


@pytest.mark.parametrize(
    "auto_class",
    [
        MADE,
        MADE_FULL,
        auto_guide_list_x,
        auto_guide_callable,
        auto_guide_module_callable,
        _with_init(init_to_feasible),
        _with_init(init_to_mean),
        _with_init(init_to_median),
        _with_init(init_to_sample, marks=SLOW_FROM_PRIOR_DRAW),
    ],
)
@pytest.mark.parametrize("Elbo", [JitTrace_ELBO, JitTraceGraph_ELBO, JitTraceEnum_ELBO])
def test_median(auto_class, Elbo):
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.LogNormal(0.0, 1.0))
        pyro.sample("z", dist.Beta(2.0, 2.0))

    guide = auto_class(model)
    optim = Adam({"lr": 0.02, "betas": (0.8, 0.99)})
    elbo = Elbo(
        strict_enumeration_warning=False,
        num_particles=500,
        vectorize_particles=True,
        ignore_jit_warnings=True,
    )
    infer = SVI(model, guide, optim, elbo)
    for _ in range(100):
        infer.step()

    # ported: no xfail_if_not_implemented around median(): ours must implement it.
    median = guide.median()
    assert_equal(median["x"], torch.tensor(0.0), prec=0.1)
    if auto_class is AutoDelta:
        assert_equal(median["y"], torch.tensor(-1.0).exp(), prec=0.1)
    else:
        assert_equal(median["y"], torch.tensor(1.0), prec=0.1)
    assert_equal(median["z"], torch.tensor(0.5), prec=0.1)


def serialization_model():
    pyro.sample("x", dist.Normal(0.0, 1.0))
    with pyro.plate("plate", 2):
        pyro.sample("y", dist.LogNormal(0.0, 1.0))
        pyro.sample("z", dist.Beta(2.0, 2.0))


@pytest.mark.parametrize("jit", [False, True], ids=["nojit", "jit"])
@pytest.mark.parametrize(
    "auto_class",
    [
        *OURS,
        auto_guide_list_x,
        auto_guide_module_callable,
        nested_auto_guide_callable,
        _with_init(init_to_feasible),
        _with_init(init_to_mean),
        _with_init(init_to_median),
        _with_init(init_to_sample),
    ],
)
def test_serialization(auto_class, jit, request):
    if jit and auto_class is nested_auto_guide_callable:
        request.applymarker(SAMPLES_INSIDE_BLOCK)
    if jit and auto_class is AutoIterative:
        request.applymarker(INNER_GRADIENT_JIT)
    guide = auto_class(serialization_model)
    guide()
    pyro.set_rng_seed(0)
    expected = guide.call()
    latent_names = sorted(guide())
    expected_params = {k: v.data for k, v in guide.named_parameters()}

    if jit:
        # Ignore tracer warnings
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # XXX: check_trace=True fails for AutoLaplaceApproximation
            traced_guide = torch.jit.trace_module(guide, {"call": ()}, check_trace=False)
        f = io.BytesIO()
        torch.jit.save(traced_guide, f)
        del guide, traced_guide
        pyro.clear_param_store()
        f.seek(0)
        guide_deser = torch.jit.load(f)
    else:
        # Work around https://github.com/pytorch/pytorch/issues/27972
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            f = io.BytesIO()
            torch.save(guide, f)
            f.seek(0)
            guide_deser = torch.load(f, weights_only=False)

    # Check .call() result.
    pyro.set_rng_seed(0)
    actual = guide_deser.call()
    assert len(actual) == len(expected)
    for name, a, e in zip(latent_names, actual, expected, strict=False):
        assert_equal(a, e, msg=f"{name}: {a} vs {e}")

    # Check named_parameters.
    actual_params = {k: v.data for k, v in guide_deser.named_parameters()}
    assert set(actual_params) == set(expected_params)
    for name, expected in expected_params.items():
        actual = actual_params[name]
        assert_equal(actual, expected)


def AutoGuideList_x(model):
    guide = AutoGuideList(model)
    guide.append(AutoNormal(poutine.block(model, expose=["x"])))
    # ported: ours in place of AutoLowRankMultivariateNormal (with its default init)
    guide.append(AutoFaithfulMADE(poutine.block(model, hide=["x"]), init_loc_fn=init_to_median))
    return guide


@pytest.mark.parametrize("auto_class", [MADE, MADE_FULL, AutoGuideList_x])
@pytest.mark.parametrize("Elbo", [Trace_ELBO, TraceGraph_ELBO, TraceEnum_ELBO])
def test_quantiles(auto_class, Elbo):
    def model():
        pyro.sample("y", dist.LogNormal(0.0, 1.0))
        pyro.sample("z", dist.Beta(2.0, 2.0).expand([2]).to_event(1))
        pyro.sample("x", dist.Normal(0.0, 1.0))

    if auto_class is AutoFaithfulMADE_full:
        pytest.skip(
            "structure='full' links these latents through a network: their marginals are "
            "not their conditionals, so quantiles are Monte Carlo and the median (the "
            "conditional-median path) need not equal the marginal median"
        )
    guide = auto_class(model)
    optim = Adam({"lr": 0.05, "betas": (0.8, 0.99)})
    elbo = Elbo(strict_enumeration_warning=False, num_particles=100, vectorize_particles=True)
    infer = SVI(model, guide, optim, elbo)
    for _ in range(100):
        infer.step()

    if hasattr(auto_class, "get_posterior"):
        posterior = guide.get_posterior()
        posterior_scale = posterior.variance[-1].sqrt()
        q = guide.quantiles([0.158655, 0.8413447])
        quantile_scale = 0.5 * (q["x"][1] - q["x"][0])  # only x is unconstrained
        assert_close(quantile_scale, posterior_scale, atol=1.0e-6)

    quantiles = guide.quantiles([0.1, 0.5, 0.9])
    median = guide.median()
    for name in ["x", "y", "z"]:
        assert not median[name].requires_grad
        assert torch.is_tensor(quantiles[name])
        assert len(quantiles[name]) == 3
        for q in quantiles[name]:
            assert not q.requires_grad
            assert q.shape == (() if name != "z" else (2,))
        assert_equal(median[name], quantiles[name][1])

    assert -3.0 < quantiles["x"][0]
    assert quantiles["x"][0] + 1.0 < quantiles["x"][1]
    assert quantiles["x"][1] + 1.0 < quantiles["x"][2]
    assert quantiles["x"][2] < 3.0

    assert 0.01 < quantiles["y"][0]
    assert quantiles["y"][0] * 2.0 < quantiles["y"][1]
    assert quantiles["y"][1] * 2.0 < quantiles["y"][2]
    assert quantiles["y"][2] < 100.0

    assert (0.01 < quantiles["z"][0]).all()
    assert (quantiles["z"][0] + 0.1 < quantiles["z"][1]).all()
    assert (quantiles["z"][1] + 0.1 < quantiles["z"][2]).all()
    assert (quantiles["z"][2] < 0.99).all()


@pytest.mark.parametrize("continuous_class", OURS)
def test_discrete_parallel(continuous_class):
    K = 2
    data = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])

    def model(data):
        weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
        locs = pyro.sample("locs", dist.Normal(0, 10).expand_by([K]).to_event(1))
        scale = pyro.sample("scale", dist.LogNormal(0, 1))

        with pyro.plate("data", len(data)):
            weights = weights.expand(torch.Size((len(data),)) + weights.shape)
            assignment = pyro.sample("assignment", dist.Categorical(weights))
            pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)

    guide = AutoGuideList(model)
    guide.append(continuous_class(poutine.block(model, hide=["assignment"])))
    guide.append(AutoDiscreteParallel(poutine.block(model, expose=["assignment"])))

    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    loss = elbo.loss_and_grads(model, guide, data)
    assert np.isfinite(loss), loss


@pytest.mark.parametrize("auto_class", OURS)
def test_guide_list(auto_class):
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("y", dist.MultivariateNormal(torch.zeros(5), torch.eye(5, 5)))

    guide = AutoGuideList(model)
    guide.append(auto_class(poutine.block(model, expose=["x"])))
    guide.append(auto_class(poutine.block(model, expose=["y"])))
    guide()


@pytest.mark.parametrize("auto_class", OURS)
def test_callable(auto_class):
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.MultivariateNormal(torch.zeros(5), torch.eye(5, 5)))

    def guide_x():
        x_loc = pyro.param("x_loc", torch.tensor(0.0))
        pyro.sample("x", dist.Delta(x_loc))

    guide = AutoGuideList(model)
    guide.append(guide_x)
    guide.append(auto_class(poutine.block(model, expose=["y"])))
    values = guide()
    assert set(values) == set(["y"])


@pytest.mark.parametrize("auto_class", OURS)
def test_callable_return_dict(auto_class):
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.MultivariateNormal(torch.zeros(5), torch.eye(5, 5)))

    def guide_x():
        x_loc = pyro.param("x_loc", torch.tensor(0.0))
        x = pyro.sample("x", dist.Delta(x_loc))
        return {"x": x}

    guide = AutoGuideList(model)
    guide.append(guide_x)
    guide.append(auto_class(poutine.block(model, expose=["y"])))
    values = guide()
    assert set(values) == set(["x", "y"])


def test_unpack_latent():
    def model():
        return pyro.sample("x", dist.LKJCholesky(2, torch.tensor(1.0)))

    guide = AutoFaithfulMADE(model)  # ported: was AutoDiagonalNormal
    assert guide()["x"].shape == model().shape
    # ported: the host's check of `guide._unpack_latent(guide.sample_latent())` is about
    # AutoContinuous's packed latent vector, which ours does not have.


@pytest.mark.parametrize("auto_class", OURS)
def test_init_loc_fn(auto_class):
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.MultivariateNormal(torch.zeros(5), torch.eye(5, 5)))

    inits = {"x": torch.randn(()), "y": torch.randn(5)}

    def init_loc_fn(site):
        return inits[site["name"]]

    guide = auto_class(model, init_loc_fn=init_loc_fn)
    guide()
    median = guide.median()
    assert_equal(median["x"], inits["x"])
    assert_equal(median["y"], inits["y"])


@pytest.mark.parametrize("init_scale", [1e-1, 1e-4, 1e-8])
@pytest.mark.parametrize("auto_class", OURS)
def test_init_scale(auto_class, init_scale):
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.MultivariateNormal(torch.zeros(5), torch.eye(5, 5)))
        with pyro.plate("plate", 100):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    guide = auto_class(model, init_scale=init_scale)
    guide()
    # ported: the host reads `loc, scale = guide._loc_scale()` (AutoContinuous); ours has
    # no packed scale vector, so the scale of every unconstrained coordinate is estimated
    # from 2000 vectorized draws (all three sites have real support).
    with torch.no_grad(), pyro.plate("particles", 2000, dim=-2):
        draws = guide()
    scale = torch.cat([draws[n].reshape(2000, -1) for n in ("x", "y", "z")], -1).std(0)
    scale_rms = scale.pow(2).mean().sqrt().item()
    assert init_scale * 0.5 < scale_rms < 2.0 * init_scale


# ported: every host case here starts at the mean or median (AutoNormal only as
# ``partial(AutoNormal, init_loc_fn=init_to_median)``; 20 steps at lr 0.005 cannot move
# y from init_to_feasible's 0 to 2): so do ours.
@pytest.mark.parametrize(
    "auto_class",
    [
        _with_init(init_to_mean),
        _with_init(init_to_median),
        pytest.param(
            functools.partial(AutoFaithfulMADE, structure="full", init_loc_fn=init_to_median),
            id="made_full-init_to_median",
        ),
        auto_guide_list_x,
        auto_guide_callable,
        auto_guide_module_callable,
    ],
)
@pytest.mark.parametrize("Elbo", [Trace_ELBO, TraceGraph_ELBO, TraceEnum_ELBO])
def test_median_module(auto_class, Elbo):
    class Model(PyroModule):
        def __init__(self):
            super().__init__()
            self.x_loc = nn.Parameter(torch.tensor(1.0))
            self.x_scale = PyroParam(torch.tensor(0.1), constraints.positive)

        def forward(self):
            x = pyro.sample("x", dist.Normal(self.x_loc, self.x_scale))
            pyro.sample("y", dist.Normal(2.0, 0.1))
            pyro.sample("z", dist.Normal(1.0, 0.1), obs=x)

    model = Model()
    guide = auto_class(model)
    infer = SVI(model, guide, Adam({"lr": 0.005}), Elbo(strict_enumeration_warning=False))
    for _ in range(20):
        infer.step()

    median = guide.median()
    assert_equal(median["x"].detach(), torch.tensor(1.0), prec=0.1)
    assert_equal(median["y"].detach(), torch.tensor(2.0), prec=0.1)


@pytest.mark.parametrize("Elbo", [Trace_ELBO, TraceGraph_ELBO, TraceEnum_ELBO])
def test_nested_autoguide(Elbo):
    class Model(PyroModule):
        def __init__(self):
            super().__init__()
            self.x_loc = nn.Parameter(torch.tensor(1.0))
            self.x_scale = PyroParam(torch.tensor(0.1), constraints.positive)

        def forward(self):
            pyro.sample("x", dist.Normal(self.x_loc, self.x_scale))
            with pyro.plate("plate", 2):
                pyro.sample("y", dist.Normal(2.0, 0.1))

    model = Model()
    guide = nested_auto_guide_callable(model)

    # Check master ref for all nested components.
    for _, m in guide.named_modules():
        if m is guide:
            continue
        assert m.master is not None and m.master() is guide, f"master ref wrong for {m._pyro_name}"

    infer = SVI(model, guide, Adam({"lr": 0.005}), Elbo(strict_enumeration_warning=False))
    for _ in range(20):
        infer.step()

    guide_trace = poutine.trace(guide).get_trace()
    model_trace = poutine.trace(model).get_trace()
    check_model_guide_match(model_trace, guide_trace)
    assert all(
        p.startswith("AutoGuideList.0") or p.startswith("AutoGuideList.1.z")
        for p in guide_trace.param_nodes
    )
    stochastic_nodes = set(guide_trace.stochastic_nodes)
    assert "x" in stochastic_nodes
    assert "y" in stochastic_nodes
    # ported: the host's last check ("_AutoGuideList.1.z_latent", the IAF's auxiliary
    # latent) is about AutoIAFNormal; ours samples y directly.


@pytest.mark.parametrize(
    "auto_class", [MADE, MADE_FULL, _with_init(init_to_mean), _with_init(init_to_median)]
)
@pytest.mark.parametrize("Elbo", [Trace_ELBO, TraceGraph_ELBO, TraceEnum_ELBO])
def test_linear_regression_smoke(auto_class, Elbo):
    N, D = 10, 3

    class RandomLinear(nn.Linear, PyroModule):
        def __init__(self, in_features, out_features):
            super().__init__(in_features, out_features)
            self.weight = PyroSample(
                dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2)
            )
            self.bias = PyroSample(dist.Normal(0.0, 10.0).expand([out_features]).to_event(1))

    class LinearRegression(PyroModule):
        def __init__(self):
            super().__init__()
            self.linear = RandomLinear(D, 1)

        def forward(self, x, y=None):
            mean = self.linear(x).squeeze(-1)
            sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
            with pyro.plate("plate", N):
                return pyro.sample("obs", dist.Normal(mean, sigma), obs=y)

    x, y = torch.randn(N, D), torch.randn(N)
    model = LinearRegression()
    guide = auto_class(model)
    infer = SVI(model, guide, Adam({"lr": 0.005}), Elbo(strict_enumeration_warning=False))
    infer.step(x, y)


@pytest.mark.parametrize(
    "auto_class", [MADE, MADE_FULL, _with_init(init_to_mean), _with_init(init_to_median)]
)
def test_predictive(auto_class):
    N, D = 3, 2

    class RandomLinear(nn.Linear, PyroModule):
        def __init__(self, in_features, out_features):
            super().__init__(in_features, out_features)
            self.weight = PyroSample(
                dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2)
            )
            self.bias = PyroSample(dist.Normal(0.0, 10.0).expand([out_features]).to_event(1))

    class LinearRegression(PyroModule):
        def __init__(self):
            super().__init__()
            self.linear = RandomLinear(D, 1)

        def forward(self, x, y=None):
            mean = self.linear(x).squeeze(-1)
            sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
            with pyro.plate("plate", N):
                return pyro.sample("obs", dist.Normal(mean, sigma), obs=y)

    x, y = torch.randn(N, D), torch.randn(N)
    model = LinearRegression()
    guide = auto_class(model)
    # XXX: Record `y` as observed in the prototype trace
    # Is there a better pattern to follow?
    guide(x, y=y)
    # Test predictive module
    model_trace = poutine.trace(model).get_trace(x, y=None)
    predictive = Predictive(model, guide=guide, num_samples=10)
    pyro.set_rng_seed(0)
    samples = predictive(x)
    for site in prune_subsample_sites(model_trace).stochastic_nodes:
        assert site in samples
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced_predictive = torch.jit.trace_module(predictive, {"call": (x,)})
    f = io.BytesIO()
    torch.jit.save(traced_predictive, f)
    f.seek(0)
    predictive_deser = torch.jit.load(f)
    pyro.set_rng_seed(0)
    samples_deser = predictive_deser.call(x)
    # Note that the site values are different in the serialized guide
    assert len(samples) == len(samples_deser)


@pytest.mark.parametrize("sample_shape", [(), (6,), (5, 4)], ids=str)
@pytest.mark.parametrize(
    "auto_class", [*OURS, _with_init(init_to_mean), _with_init(init_to_median)]
)
def test_replay_plates(auto_class, sample_shape):
    def model():
        a = pyro.sample("a", dist.Normal(0, 1))
        b = pyro.sample("b", dist.Normal(a[..., None], torch.ones(3)).to_event(1))
        c = pyro.sample("c", dist.MultivariateNormal(torch.zeros(3) + a[..., None], torch.eye(3)))
        with pyro.plate("i", 2):
            d = pyro.sample("d", dist.Dirichlet((b + c).exp()))
            pyro.sample("e", dist.Categorical(logits=d), obs=torch.tensor([0, 0]))
        return a, b, c, d

    guide = auto_class(model)
    with pyro.plate_stack("particles", sample_shape, rightmost_dim=-2):
        guide_trace = poutine.trace(guide).get_trace()
        a, b, c, d = poutine.replay(model, guide_trace)()
    assert a.shape == (sample_shape + (1,) if sample_shape else ())
    assert b.shape == (sample_shape + (1, 3) if sample_shape else (3,))
    assert c.shape == (sample_shape + (1, 3) if sample_shape else (3,))
    assert d.shape == sample_shape + (2, 3)


@pytest.mark.parametrize("auto_class", OURS)
def test_subsample_model(auto_class):
    def model(x, y=None, batch_size=None):
        loc = pyro.param("loc", lambda: torch.tensor(0.0))
        scale = pyro.param("scale", lambda: torch.tensor(1.0), constraint=constraints.positive)
        with pyro.plate("batch", len(x), subsample_size=batch_size):
            batch_x = pyro.subsample(x, event_dim=0)
            batch_y = pyro.subsample(y, event_dim=0) if y is not None else None
            mean = loc + scale * batch_x
            sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
            return pyro.sample("obs", dist.Normal(mean, sigma), obs=batch_y)

    guide = auto_class(model)

    full_size = 50
    batch_size = 20
    pyro.set_rng_seed(123456789)
    x = torch.randn(full_size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape

    pyro.get_param_store().clear()
    pyro.set_rng_seed(123456789)
    svi = SVI(model, guide, Adam({"lr": 0.02}), Trace_ELBO())
    for step in range(5):
        svi.step(x, y, batch_size=batch_size)


@pytest.mark.parametrize("init_fn", [None, init_to_mean, init_to_median])
@pytest.mark.parametrize("auto_class", [*OURS, AutoGuideList])
def test_subsample_guide(auto_class, init_fn):
    # The model from tutorial/source/easyguide.ipynb
    def model(batch, subsample, full_size):
        num_time_steps = len(batch)
        result = [None] * num_time_steps
        drift = pyro.sample("drift", dist.LogNormal(-1, 0.5))
        data_plate = pyro.plate("data", full_size, subsample=subsample)
        assert data_plate.size == 50
        with data_plate:
            z = 0.0
            for t in range(num_time_steps):
                z = pyro.sample(f"state_{t}", dist.Normal(z, drift))
                result[t] = pyro.sample(f"obs_{t}", dist.Bernoulli(logits=z), obs=batch[t])

        return torch.stack(result)

    def create_plates(batch, subsample, full_size):
        return pyro.plate("data", full_size, subsample=subsample)

    if auto_class == AutoGuideList:
        guide = AutoGuideList(model, create_plates=create_plates)
        guide.append(AutoDelta(poutine.block(model, expose=["drift"])))
        # ported: ours in place of AutoNormal
        guide.append(AutoFaithfulMADE(poutine.block(model, hide=["drift"])))
    else:
        guide = auto_class(model, create_plates=create_plates)

    full_size = 50
    batch_size = 20
    num_time_steps = 8
    pyro.set_rng_seed(123456789)
    data = model([None] * num_time_steps, torch.arange(full_size), full_size)
    assert data.shape == (num_time_steps, full_size)

    pyro.get_param_store().clear()
    pyro.set_rng_seed(123456789)
    svi = SVI(model, guide, Adam({"lr": 0.02}), Trace_ELBO())
    for epoch in range(2):
        beg = 0
        while beg < full_size:
            end = min(full_size, beg + batch_size)
            subsample = torch.arange(beg, end)
            batch = data[:, beg:end]
            beg = end
            svi.step(batch, subsample, full_size=full_size)


@pytest.mark.parametrize("independent", [True, False], ids=["independent", "dependent"])
@pytest.mark.parametrize("auto_class", OURS)
def test_subsample_guide_2(auto_class, independent):
    # Simplified from Model2 in tutorial/source/forecasting_iii.ipynb
    def model(data):
        size, size = data.shape
        origin_plate = pyro.plate("origin", size, dim=-2)
        destin_plate = pyro.plate("destin", size, dim=-1)
        with origin_plate, destin_plate:
            batch = pyro.subsample(data, event_dim=0)
            assert batch.size(0) == batch.size(1), batch.shape
            pyro.sample("obs", dist.Normal(0, 1), obs=batch)

    def create_plates(data):
        size, size = data.shape
        origin_plate = pyro.plate("origin", size, subsample_size=5, dim=-2)
        if independent:
            destin_plate = pyro.plate("destin", size, subsample_size=5, dim=-1)
        else:
            with origin_plate as subsample:
                pass
            destin_plate = pyro.plate("destin", size, subsample=subsample, dim=-1)
        return origin_plate, destin_plate

    guide = auto_class(model, create_plates=create_plates)
    svi = SVI(model, guide, Adam({"lr": 0.01}), Trace_ELBO())

    data = torch.randn(10, 10)
    for step in range(2):
        svi.step(data)


INIT_LOC_FNS = [init_to_feasible, init_to_mean, init_to_median, init_to_sample]


@pytest.mark.parametrize("auto_class", OURS)
@pytest.mark.parametrize("init_loc_fn", INIT_LOC_FNS)
def test_discrete_helpful_error(auto_class, init_loc_fn):
    def model():
        p = pyro.sample("p", dist.Beta(2.0, 2.0))
        x = pyro.sample("x", dist.Bernoulli(p))
        pyro.sample(
            "obs",
            dist.Bernoulli(p * x + (1 - p) * (1 - x)),
            obs=torch.tensor([1.0, 0.0]),
        )

    guide = auto_class(model, init_loc_fn=init_loc_fn)
    with pytest.raises(ValueError, match=".*enumeration.html.*"):
        guide()


@pytest.mark.parametrize("auto_class", OURS)
@pytest.mark.parametrize("init_loc_fn", INIT_LOC_FNS)
def test_sphere_helpful_error(auto_class, init_loc_fn):
    def model():
        x = pyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        y = pyro.sample("y", dist.ProjectedNormal(x))
        pyro.sample("obs", dist.Normal(y, 1), obs=torch.tensor([1.0, 0.0]))

    guide = auto_class(model, init_loc_fn=init_loc_fn)
    with pytest.raises(ValueError, match=".*ProjectedNormalReparam.*"):
        guide()


@pytest.mark.parametrize("auto_class", OURS)
@pytest.mark.parametrize("init_loc_fn", INIT_LOC_FNS)
def test_sphere_reparam_ok(auto_class, init_loc_fn):
    def model():
        x = pyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        y = pyro.sample("y", dist.ProjectedNormal(x))
        pyro.sample("obs", dist.Normal(y, 1).to_event(1), obs=torch.tensor([1.0, 0.0, 0.0]))

    model = poutine.reparam(model, {"y": ProjectedNormalReparam()})
    guide = auto_class(model)
    poutine.trace(guide).get_trace().compute_log_prob()


@pytest.mark.parametrize("Guide", OURS)
def test_exact(Guide):
    def model(data):
        loc = pyro.sample("loc", dist.Normal(0, 1))
        with pyro.plate("data", len(data)):
            pyro.sample("obs", dist.Normal(loc, 1), obs=data)
        return loc

    data = torch.randn(3)
    expected_mean = (0 + data.sum().item()) / (1 + len(data))
    expected_std = (1 + len(data)) ** (-0.5)
    g = Gaussian(
        log_normalizer=torch.zeros(()),
        info_vec=torch.zeros(4),
        precision=torch.tensor(
            [
                [4, -1, -1, -1],
                [-1, 1, 0, 0],
                [-1, 0, 1, 0],
                [-1, 0, 0, 1],
            ],
            dtype=data.dtype,
        ),
    )
    expected_loss = float(g.event_logsumexp() - g.condition(data).event_logsumexp())

    guide = Guide(model)
    # ported: AutoIterative's inner torch.autograd.grad cannot be jit-traced (it says so)
    Elbo = Trace_ELBO if Guide is AutoIterative else JitTrace_ELBO
    elbo = Elbo(num_particles=100, vectorize_particles=True, ignore_jit_warnings=True)
    num_steps = 500
    optim = ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / num_steps)})
    svi = SVI(model, guide, optim, elbo)
    for step in range(num_steps):
        svi.step(data)

    guide.requires_grad_(False)
    with torch.no_grad():
        # Check moments.
        vectorize = pyro.plate("particles", 10000, dim=-2)
        guide_trace = poutine.trace(vectorize(guide)).get_trace(data)
        samples = poutine.replay(vectorize(model), guide_trace)(data)
        actual_mean = samples.mean().item()
        actual_std = samples.std().item()
        assert_close(actual_mean, expected_mean, atol=0.05)
        assert_close(actual_std, expected_std, rtol=0.05)

        # Check ELBO loss.
        actual_loss = elbo.loss(model, guide, data)
        assert_close(actual_loss, expected_loss, atol=0.01)


@pytest.mark.parametrize("Guide", OURS)
def test_exact_batch(Guide, request):
    if Guide is AutoIterative:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="each call refines its parameters from one noisy draw of the ELBO "
                "gradient: the refined iterate jitters around the optimum, and its ELBO is "
                "0.018 from the exact one after the host's 500 steps (tolerance 0.01)",
            )
        )

    def model(data):
        with pyro.plate("data", len(data)):
            loc = pyro.sample("loc", dist.Normal(0, 1))
            pyro.sample("obs", dist.Normal(loc, 1), obs=data)
        return loc

    data = torch.randn(3)
    expected_mean = (0 + data) / (1 + 1)
    expected_std = (1 + torch.ones_like(data)) ** (-0.5)
    g = Gaussian(
        log_normalizer=torch.zeros(3),
        info_vec=torch.zeros(3, 2),
        precision=torch.tensor(
            [[[2, -1], [-1, 1]]] * 3,
            dtype=data.dtype,
        ),
    )
    expected_loss = float(
        g.event_logsumexp().sum() - g.condition(data[:, None]).event_logsumexp().sum()
    )

    guide = Guide(model)
    # ported: AutoIterative's inner torch.autograd.grad cannot be jit-traced (it says so)
    Elbo = Trace_ELBO if Guide is AutoIterative else JitTrace_ELBO
    elbo = Elbo(num_particles=100, vectorize_particles=True, ignore_jit_warnings=True)
    num_steps = 500
    optim = ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / num_steps)})
    svi = SVI(model, guide, optim, elbo)
    for step in range(num_steps):
        svi.step(data)

    guide.requires_grad_(False)
    with torch.no_grad():
        # Check moments.
        vectorize = pyro.plate("particles", 10000, dim=-2)
        guide_trace = poutine.trace(vectorize(guide)).get_trace(data)
        samples = poutine.replay(vectorize(model), guide_trace)(data)
        actual_mean = samples.mean(0)
        actual_std = samples.std(0)
        assert_close(actual_mean, expected_mean, atol=0.05)
        assert_close(actual_std, expected_std, rtol=0.05)

        # Check ELBO loss.
        actual_loss = elbo.loss(model, guide, data)
        assert_close(actual_loss, expected_loss, atol=0.01)


@pytest.mark.parametrize("Guide", OURS)
def test_exact_tree(Guide, request):
    if Guide is AutoFaithfulMADE_full:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="structure='full' gives every latent every earlier latent as input and "
                "converges more slowly: its ELBO is 0.017 from the exact one after the host's "
                "500 steps (tolerance 0.01); the NaMI structure passes",
            )
        )
    # ported: the host lists the guides that are not exact here (mean-field ones); the
    # faithful inverse of this tree, q(x | obs) q(y_i | x, obs_i), is exact for it.
    # AutoIterative is mean-field, as AutoNormal in the host's list.
    is_exact = Guide is not AutoIterative

    def model(data):
        x = pyro.sample("x", dist.Normal(0, 1))
        with pyro.plate("data", len(data)):
            y = pyro.sample("y", dist.Normal(x, 1))
            pyro.sample("obs", dist.Normal(y, 1), obs=data)
        return {"x": x, "y": y}

    data = torch.randn(2)
    g = Gaussian(
        log_normalizer=torch.zeros(()),
        info_vec=torch.zeros(5),
        precision=torch.tensor(
            [
                [3, -1, -1, 0, 0],  # x
                [-1, 2, 0, -1, 0],  # y[0]
                [-1, 0, 2, 0, -1],  # y[1]
                [0, -1, 0, 1, 0],  # obs[0]
                [0, 0, -1, 0, 1],  # obs[1]
            ],
            dtype=data.dtype,
        ),
    )
    g_cond = g.condition(data)
    mean = torch.linalg.solve(g_cond.precision, g_cond.info_vec)
    std = torch.inverse(g_cond.precision).diag().sqrt()
    expected_mean = {"x": mean[0], "y": mean[1:]}
    expected_std = {"x": std[0], "y": std[1:]}
    expected_loss = float(g.event_logsumexp() - g_cond.event_logsumexp())

    guide = Guide(model)
    # ported: AutoIterative's inner torch.autograd.grad cannot be jit-traced (it says so)
    Elbo = Trace_ELBO if Guide is AutoIterative else JitTrace_ELBO
    elbo = Elbo(num_particles=100, vectorize_particles=True, ignore_jit_warnings=True)
    num_steps = 500
    optim = ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / num_steps)})
    svi = SVI(model, guide, optim, elbo)
    for step in range(num_steps):
        svi.step(data)

    guide.train(False)
    guide.requires_grad_(False)
    with torch.no_grad():
        # Check moments.
        vectorize = pyro.plate("particles", 50000, dim=-2)
        guide_trace = poutine.trace(vectorize(guide)).get_trace(data)
        samples = poutine.replay(vectorize(model), guide_trace)(data)
        for name in ["x", "y"]:
            actual_mean = samples[name].mean(0).squeeze()
            actual_std = samples[name].std(0).squeeze()
            assert_close(actual_mean, expected_mean[name], atol=0.05)
            if is_exact:
                assert_close(actual_std, expected_std[name], rtol=0.05)

        if is_exact:
            # Check ELBO loss.
            actual_loss = elbo.loss(model, guide, data)
            assert_close(actual_loss, expected_loss, atol=0.01)
