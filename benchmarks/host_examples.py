r"""The hosts' own examples: our guides against the host's AutoNormal, judged by NUTS.

For every example of :mod:`faithful_guides.zoo.examples_numpyro` and
:mod:`faithful_guides.zoo.examples_pyro` (models copied verbatim from NumPyro and Pyro):

1. a reference posterior: the exact one where the example knows it (funnel, coin flips),
   else NUTS. NumPyro examples run NumPyro's NUTS on the model itself; Pyro examples run
   NumPyro's NUTS on a NumPyro twin of the model written below (the same densities, site
   names and data; Pyro's own NUTS takes minutes on these). The VAE has no reference (its
   decoder is learned). References are cached in ``benchmarks/references/<host>_<name>.npz``
   (``_quick`` appended for those of ``--quick``), posterior mean and sd of each
   compared site; ``--refresh`` recomputes them.
2. the host's ``AutoNormal(model)`` and ours (``--family made``: ``AutoFaithfulMADE(model)``,
   ``--family iterative``: ``AutoIterative(model)``; no options), each
   trained in this process with SVI, ``Trace_ELBO`` and the example's own Adam settings
   (learning rate, steps, further Adam arguments; minibatches cycled where the example has
   them). Pyro steps are eager ``svi.step`` (torch pinned to one thread); NumPyro steps are
   ``jax.jit`` of ``svi.update`` closed over the data.
3. a table, one row per example: the mean error (for each compared site the average over its
   elements of ``|mean - ref_mean| / ref_sd``, then the max over sites) and the sd ratio (median
   over all elements of ``guide_sd / ref_sd``) of each guide, from guide draws through
   ``Predictive``; whether a loss was NaN; the median step time of ours over AutoNormal's;
   the first-call time (guide construction, ``svi.init`` and compilation where there is one,
   and the first step) of ours over AutoNormal's; the final loss (mean of the last tenth) of
   each. A guide that raises gets its error type and message in the row's notes.

``--quick`` runs each example on its small data (``Example.shrunk()``: stochastic volatility
T=200, hierarchical regression 20 patients, VAE 600 images), at most 300 SVI steps,
NUTS 300 + 300 and 200 guide draws.

Usage::

    python benchmarks/host_examples.py [--quick] [--host pyro|numpyro|both]
        [--examples a,b] [--refresh] [--steps N] [--family made|iterative]
"""

from __future__ import annotations

import argparse
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REFERENCES = Path(__file__).resolve().parent / "references"


@dataclass
class Settings:
    """What one run uses (from the command line)."""

    quick: bool = False
    steps: int | None = None
    refresh: bool = False
    num_warmup: int = 1000
    num_samples: int = 2000
    guide_draws: int = 1000
    family: str = "made"

    @classmethod
    def make(cls, quick: bool, steps: int | None, refresh: bool) -> Settings:
        if quick:
            return cls(quick, steps or 300, refresh, 300, 300, 200)
        return cls(quick, steps, refresh)


@dataclass
class GuideResult:
    """One trained guide: its accuracy against the reference, its losses and times."""

    mean_err: float | None = None
    sd_ratio: float | None = None
    nan: bool = False
    step_s: float | None = None
    first_s: float | None = None
    final_loss: float | None = None
    error: str | None = None
    guide: object = field(default=None, repr=False)
    """The trained guide (for reuse on other data)."""
    params: object = field(default=None, repr=False)
    """NumPyro: its trained params (Pyro: in the param store until the next training)."""


@dataclass
class Row:
    example: str
    host: str
    steps: int
    lr: float
    results: dict[str, GuideResult] = field(default_factory=dict)
    note: str = ""


def _err(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:220]}"


# --------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------


def _nuts(model: Callable, args: tuple, kwargs: dict, sites: tuple, s: Settings) -> dict:
    import jax
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(model),
        num_warmup=s.num_warmup,
        num_samples=s.num_samples,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), *args, **kwargs)
    samples = mcmc.get_samples()
    div = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    out = {k: (np.asarray(samples[k]).mean(0), np.asarray(samples[k]).std(0)) for k in sites}
    out["_method"] = f"NUTS {s.num_warmup}+{s.num_samples}, {div} divergences"
    return out


def numpyro_twin(name: str) -> tuple[Callable, Callable[[tuple, dict], tuple[tuple, dict]]]:
    """A NumPyro model with the posterior of the Pyro example ``name`` (same site names),
    and the map from the Pyro example's ``(args, kwargs)`` to its own."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    from faithful_guides.zoo import examples_numpyro as nx

    def np_args(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        conv = lambda v: jnp.asarray(v.detach().numpy()) if hasattr(v, "detach") else v  # noqa: E731
        return tuple(conv(a) for a in args), {k: conv(v) for k, v in kwargs.items()}

    def eight_schools_svi(data):
        y, sigma = data[:, 0], data[:, 1]
        with numpyro.plate("data", 8):
            eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
            mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
            tau = numpyro.sample("tau", dist.HalfCauchy(25.0))
            numpyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)

    def eight_schools_mcmc(sigma, y):
        eta = numpyro.sample("eta", dist.Normal(jnp.zeros(8), 1.0).to_event(1))
        mu = numpyro.sample("mu", dist.Normal(jnp.zeros(1), 10.0).to_event(1))
        tau = numpyro.sample("tau", dist.HalfCauchy(25.0 * jnp.ones(1)).to_event(1))
        numpyro.sample("obs", dist.Normal(mu + tau * eta, sigma).to_event(1), obs=y)

    def regression(is_cont_africa, ruggedness, log_gdp=None):
        a = numpyro.sample("a", dist.Normal(0.0, 10.0))
        b_a = numpyro.sample("bA", dist.Normal(0.0, 1.0))
        b_r = numpyro.sample("bR", dist.Normal(0.0, 1.0))
        b_ar = numpyro.sample("bAR", dist.Normal(0.0, 1.0))
        sigma = numpyro.sample("sigma", dist.Uniform(0.0, 10.0))
        mean = a + b_a * is_cont_africa + b_r * ruggedness + b_ar * is_cont_africa * ruggedness
        with numpyro.plate("data", len(ruggedness)):
            numpyro.sample("obs", dist.Normal(mean, sigma), obs=log_gdp)

    def regression_module(x, y=None):
        sigma = numpyro.sample("sigma", dist.Uniform(0.0, 10.0))
        w = numpyro.sample("linear.weight", dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))
        b = numpyro.sample("linear.bias", dist.Normal(0.0, 10.0).expand([1]).to_event(1))
        mean = (x @ w.T + b).squeeze(-1)
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("obs", dist.Normal(mean, sigma), obs=y)

    twins = {
        "eight_schools": eight_schools_svi,
        "eight_schools_mcmc": eight_schools_mcmc,
        "baseball_fully_pooled": nx.fully_pooled,
        "baseball_not_pooled": nx.not_pooled,
        "baseball_partially_pooled": nx.partially_pooled,
        "baseball_partially_pooled_with_logit": nx.partially_pooled_with_logit,
        "bayesian_regression": regression,
        "bayesian_regression_module": regression_module,
    }
    return twins[name], np_args


def reference(ex, s: Settings) -> tuple[dict | None, str]:
    """``({site: (mean, sd)}, how)`` of the example's posterior, or ``(None, why)``."""
    if ex.exact is not None:
        return {k: (np.asarray(m), np.asarray(sd)) for k, (m, sd) in ex.exact.items()}, "exact"
    if not ex.latents:
        return None, "no reference (no compared latents)"
    suffix = "_quick" if s.quick else ""
    path = REFERENCES / f"{ex.host}_{ex.name}{suffix}.npz"
    if path.exists() and not s.refresh:
        z = np.load(path)
        return {k: (z[f"{k}__mean"], z[f"{k}__sd"]) for k in ex.latents}, str(z["_method"])
    if ex.host == "numpyro":
        model, args, kwargs = ex.model, ex.args, ex.kwargs
    else:
        model, conv = numpyro_twin(ex.name)
        args, kwargs = conv(ex.args, ex.kwargs)
    ref = _nuts(model, args, kwargs, ex.latents, s)
    method = ref.pop("_method")
    REFERENCES.mkdir(parents=True, exist_ok=True)
    arrays = {f"{k}__{q}": v[i] for k, v in ref.items() for i, q in enumerate(("mean", "sd"))}
    np.savez(path, _method=np.array(method), **arrays)
    return ref, method + " (new)"


def accuracy(samples: dict, ref: dict, sites: tuple) -> tuple[float, float]:
    """(max over sites of the mean standardized error, median sd ratio)."""
    errs, ratios = [], []
    for k in sites:
        x = np.asarray(samples[k], dtype=float)
        x = x.reshape(x.shape[0], -1)
        m, sd = (np.asarray(v, dtype=float).reshape(-1) for v in ref[k])
        if m.size == 1 and x.shape[1] > 1:  # a scalar reference of a broadcast site
            m, sd = np.full(x.shape[1], m[0]), np.full(x.shape[1], sd[0])
        if m.size != x.shape[1]:
            raise ValueError(f"site {k}: {x.shape[1]} guide elements, {m.size} reference")
        errs.append(float(np.mean(np.abs(x.mean(0) - m) / sd)))
        ratios.append(x.std(0) / sd)
    return max(errs), float(np.median(np.concatenate(ratios)))


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def train_pyro(ex, guide_cls, steps: int, s: Settings, ref: dict | None) -> GuideResult:
    import pyro
    import torch
    from pyro.infer import SVI, Predictive, Trace_ELBO
    from pyro.optim import Adam

    torch.set_num_threads(1)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    r = GuideResult()
    batches = ex.minibatches()
    losses, times = [], []
    try:
        t0 = time.perf_counter()
        model = ex.new_model()
        guide = r.guide = guide_cls(model)
        svi = SVI(model, guide, Adam({"lr": ex.lr, **ex.optim_kwargs}), Trace_ELBO())
        for i in range(steps):
            a, k = batches[i % len(batches)]
            t = time.perf_counter()
            losses.append(svi.step(*a, **k))
            times.append(time.perf_counter() - t)
            if i == 0:
                r.first_s = time.perf_counter() - t0
    except Exception as e:
        r.error = f"step {len(losses)}: {_err(e)}"
    _summarize(r, losses, times)
    if r.error is None and ref is not None:
        try:
            pred = Predictive(
                model, guide=guide, num_samples=s.guide_draws, return_sites=ex.latents
            )
            with torch.no_grad():
                draws = pred(*ex.args, **ex.kwargs)
            r.mean_err, r.sd_ratio = accuracy(
                {k: v.detach().numpy() for k, v in draws.items()}, ref, ex.latents
            )
        except Exception as e:
            r.error = f"Predictive: {_err(e)}"
    return r


def train_numpyro(ex, guide_cls, steps: int, s: Settings, ref: dict | None) -> GuideResult:
    import jax
    from numpyro.infer import SVI, Predictive, Trace_ELBO
    from numpyro.optim import Adam

    r = GuideResult()
    losses, times = [], []
    args, kwargs = ex.args, ex.kwargs
    betas = ex.optim_kwargs.get("betas", (0.9, 0.999))
    try:
        t0 = time.perf_counter()
        guide = r.guide = guide_cls(ex.model)
        svi = SVI(ex.model, guide, Adam(ex.lr, b1=betas[0], b2=betas[1]), Trace_ELBO())
        state = svi.init(jax.random.PRNGKey(0), *args, **kwargs)
        update = jax.jit(lambda st: svi.update(st, *args, **kwargs))
        for i in range(steps):
            t = time.perf_counter()
            state, loss = update(state)
            losses.append(float(loss))
            times.append(time.perf_counter() - t)
            if i == 0:
                r.first_s = time.perf_counter() - t0
    except Exception as e:
        r.error = f"step {len(losses)}: {_err(e)}"
    _summarize(r, losses, times)
    if r.error is None:
        r.params = svi.get_params(state)
    if r.error is None and ref is not None:
        try:
            pred = Predictive(
                ex.model,
                guide=guide,
                params=r.params,
                num_samples=s.guide_draws,
                return_sites=list(ex.latents),
            )
            draws = pred(jax.random.PRNGKey(1), *args, **kwargs)
            r.mean_err, r.sd_ratio = accuracy(draws, ref, ex.latents)
        except Exception as e:
            r.error = f"Predictive: {_err(e)}"
    return r


def _summarize(r: GuideResult, losses: list, times: list) -> None:
    arr = np.asarray(losses, dtype=float)
    r.nan = bool(arr.size and not np.all(np.isfinite(arr)))
    if len(times) > 1:
        r.step_s = float(np.median(times[1:]))
    if arr.size:
        tail = arr[-max(1, arr.size // 10) :]
        r.final_loss = float(np.mean(tail))


FAMILY_CLASSES = {"made": "AutoFaithfulMADE", "iterative": "AutoIterative"}


def guide_classes(host: str, family: str = "made") -> dict[str, type | BaseException]:
    """The host's AutoNormal and our guide of ``family`` (the import error in its place)."""
    import importlib

    if host == "pyro":
        from pyro.infer.autoguide import AutoNormal
    else:
        from numpyro.infer.autoguide import AutoNormal
    ours: type | BaseException
    try:
        ours = getattr(importlib.import_module(f"faithful_guides.{host}"), FAMILY_CLASSES[family])
    except Exception as e:
        ours = e
    return {"AutoNormal": AutoNormal, "ours": ours}


def run_example(ex, s: Settings) -> Row:
    if s.quick:
        ex = ex.shrunk()
    steps = min(ex.num_steps, s.steps) if s.steps else ex.num_steps
    row = Row(ex.name, ex.host, steps, ex.lr)
    try:
        ref, how = reference(ex, s)
    except Exception as e:
        ref, how = None, f"reference failed: {_err(e)}"
        traceback.print_exc()
    row.note = how
    train = train_pyro if ex.host == "pyro" else train_numpyro
    for label, cls in guide_classes(ex.host, s.family).items():
        if isinstance(cls, BaseException):
            row.results[label] = GuideResult(error=f"import: {_err(cls)}")
        else:
            row.results[label] = train(ex, cls, steps, s, ref)
    return row


# --------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------

HEADER = (
    "| example | host | steps | lr | AutoNormal err | AutoNormal sd | ours err | ours sd"
    " | NaN? AN/ours | step ours/AN | first ours/AN | loss AN | loss ours | notes |"
)


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def format_row(row: Row) -> str:
    an, us = row.results["AutoNormal"], row.results["ours"]
    notes = [row.note]
    notes += [f"{k}: {v.error}" for k, v in row.results.items() if v.error]
    if an.step_s is not None and us.step_s is not None:
        notes.append(f"ms/step AN {an.step_s * 1e3:.2f}, ours {us.step_s * 1e3:.2f}")
    cells = [
        row.example,
        row.host,
        str(row.steps),
        f"{row.lr:g}",
        _f(an.mean_err),
        _f(an.sd_ratio),
        _f(us.mean_err),
        _f(us.sd_ratio),
        f"{'yes' if an.nan else 'no'}/{'yes' if us.nan else 'no'}",
        _ratio(us.step_s, an.step_s),
        _ratio(us.first_s, an.first_s),
        _f(an.final_loss, "{:.4g}"),
        _f(us.final_loss, "{:.4g}"),
        "; ".join(n for n in notes if n).replace("|", "/"),
    ]
    return "| " + " | ".join(cells) + " |"


def registry(host: str) -> dict:
    if host == "pyro":
        from faithful_guides.zoo.examples_pyro import EXAMPLES
    else:
        from faithful_guides.zoo.examples_numpyro import EXAMPLES
    return EXAMPLES


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small data, <=300 steps, short NUTS")
    p.add_argument("--host", choices=["pyro", "numpyro", "both"], default="both")
    p.add_argument("--examples", default="", help="comma-separated names (default: all)")
    p.add_argument("--refresh", action="store_true", help="recompute cached NUTS references")
    p.add_argument("--steps", type=int, default=None, help="cap the SVI steps")
    p.add_argument("--family", choices=list(FAMILY_CLASSES), default="made", help="our guide")
    a = p.parse_args(argv)
    s = Settings.make(a.quick, a.steps, a.refresh)
    s.family = a.family  # (not part of make: the reference cache does not depend on it)
    hosts = ["numpyro", "pyro"] if a.host == "both" else [a.host]
    wanted = [n for n in a.examples.split(",") if n]
    rows: list[Row] = []
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    known = {n for h in hosts for n in registry(h)}
    if unknown := [n for n in wanted if n not in known]:
        raise SystemExit(f"unknown examples: {unknown}")
    for host in hosts:
        for name, ex in registry(host).items():
            if wanted and name not in wanted:
                continue
            row = run_example(ex, s)
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
