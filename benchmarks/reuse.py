r"""Reuse on new data: guides trained once, then asked for the posteriors of new data sets.

An amortized guide maps any data set to its posterior; ``AutoNormal`` learns one posterior,
that of the data it was trained on. Here each guide is trained once on an example's original
data and then, with no further training, evaluated on new data sets against NUTS on those.

Per example (host examples of :mod:`faithful_guides.zoo` on their small data where they have
one, ``Example.shrunk()``: stochastic volatility T=200, in every run):

1. NUTS on the original data (NumPyro's; for a Pyro example on its NumPyro twin, both as in
   ``benchmarks/host_examples.py``): its mean and sd are the original reference.
2. ``--datasets`` K new data sets, posterior-predictive replicates: data set ``i`` takes one
   draw of every latent from that NUTS run (index from numpy seed ``i``) and runs the
   example's own model with the latents fixed and its observed sites drawn anew (NumPyro
   ``seed(uncondition(substitute(model)), i)``, Pyro ``condition(uncondition(model))`` after
   ``pyro.set_rng_seed(i)``); a small per-example function (:data:`PUT`) writes the new
   observations into the example's ``(args, kwargs)``. NUTS on each is its reference.
3. Three guides trained on the original data by host_examples' ``train_pyro`` /
   ``train_numpyro`` (SVI, ``Trace_ELBO``, the example's Adam settings and steps): the host's
   ``AutoNormal``, ``AutoIterative(model)`` and ``AutoFaithfulMADE(model)``, no options.
4. Each trained guide, untouched, on the original data and on every new one: guide draws
   from ``Predictive`` called with that data set's ``(args, kwargs)`` (``AutoNormal``
   ignores them: its one learned posterior), scored by host_examples' ``accuracy``: ``err``
   the mean standardized error of the posterior mean (max over sites), ``sd`` the median
   ratio of guide sd to reference sd (1 is right).

Rows: one per (host, example, guide), a note line under a row where there is one (a guide
that raised gets its error there; the note under ``NUTS(orig)`` gives the example's SVI
steps, the NUTS divergences and the example's total time). ``NUTS(orig)`` is the original
NUTS posterior reused as it is: what a perfect non-amortized guide would score on the new
data sets, i.e. how far their posteriors lie from the original one. Columns: ``original``
err and sd; ``new data sets`` the mean err over the K sets, the worst (max) err, and the
mean sd ratio.

``--quick``: at most 300 SVI steps, NUTS 300 + 300, 200 guide draws (host_examples'
``--quick``); otherwise the example's own steps, NUTS 1000 + 2000, 1000 draws. Default
examples: :data:`DEFAULT`; ``--examples`` takes any of :data:`PUT` (all four baseball models).

Usage::

    python benchmarks/reuse.py [--quick] [--host pyro|numpyro|both] [--examples a,b]
        [--datasets K]

Reading (full runs). AutoIterative reused beats AutoNormal reused on 5 of the 7 default
examples with the current networks (ccdcc59), by small margins except Pyro's eight schools
(0.37 against 0.52) and NumPyro's non-centered one (1.41 against 1.65); it loses on
NumPyro's centered eight schools (1.17 against 0.94) and the regression (1.66 against
1.53); stochastic volatility, where all are far off, does not count. At c493908 (a
different masks rule) it was 3 of 7, and 6 of 7 with ``--quick`` (where AutoNormal is
far from converged after 300 steps: its error on the original data is as large as on the
new). Our guides follow new data where the latents that set the error are one per plate
cell: ``baseball_not_pooled`` (new err 0.17 / 0.30 against AutoNormal's 1.23 / 1.26, near
their original error), Pyro's ``eight_schools`` (its ``mu`` and ``tau`` are inside the
plate, one per school: 0.35 against 0.52), AutoFaithfulMADE on the logit baseball model.
Where a global latent sets it (``mu``, ``tau`` of NumPyro's eight schools, ``loc`` and
``scale``, the regression coefficients), AutoIterative's new err is about that of
``NUTS(orig)`` and AutoNormal: it returns roughly its training posterior. A check outside
this script (full settings, the guide's posterior-mean shift from the original to each new
data set regressed on NUTS's shift; 1 follows the data, 0 ignores it): AutoIterative within
0.02 of 0 for ``mu`` and ``tau`` of ``eight_schools_noncentered``, 0.00 for ``loc`` /
``scale`` and 0.66 to 1.43 for ``alpha`` of the logit baseball model, -0.36 to 0.14 for the
regression's sites; AutoFaithfulMADE 0.16 to 0.23 for ``mu``, 0.44 and 0.45 for ``loc`` (the
third set barely moves it), 0.8 to 1.1 for ``alpha``. Trained by SVI on one data set, a
guide can learn the map from data to posterior only where that data set has many cells to
learn it from; a global latent has one training pair. ``stochastic_volatility``: every guide
is far off on the original data already (``sigma``: AutoNormal's error 61 there, 3 for
``s``, 2.4 for ``nu``), a fit failure, not a reuse result. The centered eight-schools
references have many NUTS divergences (up to 780 of 2000), so those rows are judged against
biased references.

Results at faithful_guides c493908 (a made_masks change, reverted in ccdcc59, so our guides'
networks there differ from later commits; AutoNormal's and NUTS's rows do not), on 2 CPU
cores shared with other work (load average 5 to 7 during these runs, so the times are long).
``python benchmarks/reuse.py --quick --host both``, 9 min 10 s (8 min CPU)::

                                                                    original       new data sets
    host    example                              guide               err     sd    err  worst     sd
    numpyro eight_schools                        NUTS(orig)         0.00   1.00   1.88   3.13   0.81
        300 SVI steps; NUTS divergences: orig 8, new 24/5/1; 102 s
    numpyro eight_schools                        AutoNormal         1.67   0.13   1.47   1.57   0.10
    numpyro eight_schools                        AutoIterative      1.26   0.68   1.19   1.84   0.55
    numpyro eight_schools                        AutoFaithfulMADE   1.38   0.22   1.35   1.71   0.15
    numpyro eight_schools_noncentered            NUTS(orig)         0.00   1.00   1.19   2.20   0.89
        300 SVI steps; NUTS divergences: orig 0, new 0/0/0; 53 s
    numpyro eight_schools_noncentered            AutoNormal         0.57   0.94   0.90   1.54   0.76
    numpyro eight_schools_noncentered            AutoIterative      0.43   0.74   1.10   1.69   0.55
    numpyro eight_schools_noncentered            AutoFaithfulMADE   0.12   0.78   0.97   1.75   0.52
    numpyro baseball_partially_pooled_with_logit NUTS(orig)         0.00   1.00   0.83   1.39   0.72
        300 SVI steps; NUTS divergences: orig 28, new 3/16/0; 90 s
    numpyro baseball_partially_pooled_with_logit AutoNormal         4.61   2.07   3.43   5.34   1.43
    numpyro baseball_partially_pooled_with_logit AutoIterative      2.17   1.90   1.38   2.22   1.34
    numpyro baseball_partially_pooled_with_logit AutoFaithfulMADE   2.82   1.70   2.19   2.78   1.28
    numpyro stochastic_volatility                NUTS(orig)         0.00   1.00   1.16   1.41   0.81
        300 SVI steps; NUTS divergences: orig 0, new 0/0/0; 123 s
    numpyro stochastic_volatility                AutoNormal       108.39   4.80 151.05 194.67   3.72
    numpyro stochastic_volatility                AutoIterative     50.31   2.20  69.79  90.09   1.73
    numpyro stochastic_volatility                AutoFaithfulMADE 127.00   5.45 177.08 228.17   4.24
    pyro    eight_schools                        NUTS(orig)         0.00   1.00   0.82   1.93   1.41
        300 SVI steps; NUTS divergences: orig 7, new 224/7/9; 58 s
    pyro    eight_schools                        AutoNormal         0.33   0.39   0.82   1.74   0.61
    pyro    eight_schools                        AutoIterative      0.37   0.77   0.80   1.57   0.97
    pyro    eight_schools                        AutoFaithfulMADE   0.41   0.81   0.82   1.57   1.00
    pyro    baseball_partially_pooled_with_logit NUTS(orig)         0.00   1.00   0.92   1.29   0.81
        300 SVI steps; NUTS divergences: orig 28, new 6/3/0; 56 s
    pyro    baseball_partially_pooled_with_logit AutoNormal         2.04   1.68   1.59   2.77   1.31
    pyro    baseball_partially_pooled_with_logit AutoIterative      1.75   1.70   1.36   2.20   1.38
    pyro    baseball_partially_pooled_with_logit AutoFaithfulMADE   2.42   1.86   1.91   3.29   1.46
    pyro    bayesian_regression                  NUTS(orig)         0.00   1.00   1.22   1.79   1.02
        300 SVI steps; NUTS divergences: orig 0, new 0/0/0; 58 s
    pyro    bayesian_regression                  AutoNormal        38.13   1.67  38.75  44.21   1.81
    pyro    bayesian_regression                  AutoIterative      2.90   0.59   2.94   4.11   0.64
    pyro    bayesian_regression                  AutoFaithfulMADE   0.96   0.64   1.68   2.36   0.65
    AutoIterative reused beats AutoNormal reused (new err) on 6 of 7
    AutoFaithfulMADE reused beats AutoNormal reused (new err) on 3 of 7
    (542 s in all)

``python benchmarks/reuse.py`` at ccdcc59 (the masks change reverted: the code of later
commits), 38 min 35 s on cores shared with a test run::

                                                                    original       new data sets
    host    example                              guide               err     sd    err  worst     sd
    numpyro eight_schools                        NUTS(orig)         0.00   1.00   1.34   1.83   0.82
        5000 SVI steps; NUTS divergences: orig 85, new 118/18/4; 298 s
    numpyro eight_schools                        AutoNormal         0.80   0.66   0.94   1.22   0.54
    numpyro eight_schools                        AutoIterative      0.84   0.90   1.17   1.68   0.75
    numpyro eight_schools                        AutoFaithfulMADE   0.30   0.83   1.24   1.63   0.63
    numpyro eight_schools_noncentered            NUTS(orig)         0.00   1.00   1.63   3.13   0.82
        5000 SVI steps; NUTS divergences: orig 0, new 0/0/0; 153 s
    numpyro eight_schools_noncentered            AutoNormal         0.39   0.79   1.65   3.09   0.65
    numpyro eight_schools_noncentered            AutoIterative      0.22   1.02   1.41   2.76   0.67
    numpyro eight_schools_noncentered            AutoFaithfulMADE   0.17   0.86   1.38   2.61   0.62
    numpyro baseball_partially_pooled_with_logit NUTS(orig)         0.00   1.00   0.91   1.65   1.02
        5000 SVI steps; NUTS divergences: orig 30, new 16/0/25; 175 s
    numpyro baseball_partially_pooled_with_logit AutoNormal         0.90   1.06   1.25   1.93   1.09
    numpyro baseball_partially_pooled_with_logit AutoIterative      0.95   1.06   1.10   1.38   1.09
    numpyro baseball_partially_pooled_with_logit AutoFaithfulMADE   0.58   1.04   0.78   0.94   1.07
    numpyro stochastic_volatility                NUTS(orig)         0.00   1.00   1.15   1.54   0.88
        5000 SVI steps; NUTS divergences: orig 0, new 0/0/0; 383 s
    numpyro stochastic_volatility                AutoNormal        61.41   2.48  39.73  47.95   2.20
    numpyro stochastic_volatility                AutoIterative     32.72   1.37  20.94  25.42   1.18
    numpyro stochastic_volatility                AutoFaithfulMADE  83.61   3.18  54.23  65.32   2.82
    pyro    eight_schools                        NUTS(orig)         0.00   1.00   0.47   0.61   1.04
        1000 SVI steps; NUTS divergences: orig 87, new 157/112/780; 381 s
    pyro    eight_schools                        AutoNormal         0.31   0.49   0.52   0.63   0.49
    pyro    eight_schools                        AutoIterative      0.27   0.76   0.37   0.42   0.79
    pyro    eight_schools                        AutoFaithfulMADE   0.26   0.98   0.43   0.52   0.95
    pyro    baseball_partially_pooled_with_logit NUTS(orig)         0.00   1.00   1.11   1.64   1.09
        5000 SVI steps; NUTS divergences: orig 30, new 42/32/37; 765 s
    pyro    baseball_partially_pooled_with_logit AutoNormal         0.84   1.11   1.55   1.91   1.21
    pyro    baseball_partially_pooled_with_logit AutoIterative      0.90   1.09   1.48   1.59   1.19
    pyro    baseball_partially_pooled_with_logit AutoFaithfulMADE   0.67   1.08   1.06   1.20   1.20
    pyro    bayesian_regression                  NUTS(orig)         0.00   1.00   1.58   2.57   0.97
        1000 SVI steps; NUTS divergences: orig 0, new 0/0/0; 154 s
    pyro    bayesian_regression                  AutoNormal         0.13   0.70   1.53   2.51   0.65
    pyro    bayesian_regression                  AutoIterative      0.44   0.62   1.66   2.44   0.62
    pyro    bayesian_regression                  AutoFaithfulMADE   0.57   0.74   1.89   2.91   0.71

    AutoIterative reused beats AutoNormal reused (new err) on 5 of 7
    AutoFaithfulMADE reused beats AutoNormal reused (new err) on 4 of 7
    (2315 s in all)

``python benchmarks/reuse.py --examples baseball_not_pooled`` (both hosts) at c493908, 3 min 56 s::

                                                                    original       new data sets
    host    example                              guide               err     sd    err  worst     sd
    numpyro baseball_not_pooled                  NUTS(orig)         0.00   1.00   1.20   1.27   1.00
        5000 SVI steps; NUTS divergences: orig 0, new 0/0/0; 60 s
    numpyro baseball_not_pooled                  AutoNormal         0.10   0.99   1.23   1.31   1.00
    numpyro baseball_not_pooled                  AutoIterative      0.11   1.02   0.17   0.18   0.99
    numpyro baseball_not_pooled                  AutoFaithfulMADE   0.19   0.92   0.21   0.21   0.92
    pyro    baseball_not_pooled                  NUTS(orig)         0.00   1.00   1.24   1.48   1.01
        5000 SVI steps; NUTS divergences: orig 0, new 0/0/0; 167 s
    pyro    baseball_not_pooled                  AutoNormal         0.10   0.99   1.26   1.47   1.04
    pyro    baseball_not_pooled                  AutoIterative      0.19   1.06   0.30   0.34   1.06
    pyro    baseball_not_pooled                  AutoFaithfulMADE   0.15   1.02   0.27   0.31   1.02
    AutoIterative reused beats AutoNormal reused (new err) on 2 of 2
    AutoFaithfulMADE reused beats AutoNormal reused (new err) on 2 of 2
    (230 s in all)
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse
import sys
import textwrap
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host_examples import (
    Settings,
    _err,
    _nuts,
    accuracy,
    guide_classes,
    numpyro_twin,
    registry,
    train_numpyro,
    train_pyro,
)

# --------------------------------------------------------------------------------------
# Where the new observations go: (host, example) -> put(args, kwargs, obs) -> (args, kwargs),
# ``obs`` the simulated observed sites (host arrays), the result in the example's own format.
# --------------------------------------------------------------------------------------


def _eight_schools_pyro(a, k, obs):  # data: columns y and sigma
    import torch

    return (torch.stack([obs["obs"], a[0][:, 1]], dim=1),), k


PUT: dict[tuple[str, str], Callable] = {
    ("numpyro", "eight_schools"): lambda a, k, obs: (a, {**k, "y": obs["obs"]}),
    ("numpyro", "eight_schools_noncentered"): lambda a, k, obs: (a, {**k, "y": obs["obs"]}),
    ("numpyro", "stochastic_volatility"): lambda a, k, obs: ((obs["r"],), k),
    ("pyro", "eight_schools"): _eight_schools_pyro,
    ("pyro", "bayesian_regression"): lambda a, k, obs: (a, {**k, "log_gdp": obs["obs"]}),
}
for _host in ("numpyro", "pyro"):  # baseball: (at_bats, hits), every variant
    for _name in ("fully_pooled", "not_pooled", "partially_pooled", "partially_pooled_with_logit"):
        PUT[_host, f"baseball_{_name}"] = lambda a, k, obs: ((a[0], obs["obs"]), k)

DEFAULT = {
    "numpyro": (
        "eight_schools",
        "eight_schools_noncentered",
        "baseball_partially_pooled_with_logit",
        "stochastic_volatility",
    ),
    "pyro": ("eight_schools", "baseball_partially_pooled_with_logit", "bayesian_regression"),
}


# --------------------------------------------------------------------------------------
# Data sets and references
# --------------------------------------------------------------------------------------


@dataclass
class DataSet:
    """One data set in the example's ``(args, kwargs)``, its reference and NUTS divergences."""

    args: tuple
    kwargs: dict
    ref: dict
    divergences: int


def _posterior(model: Callable, args: tuple, kwargs: dict, s: Settings) -> tuple[dict, int]:
    """NUTS draws (numpy) of every latent and deterministic site, as host_examples' _nuts
    runs it (which keeps only their mean and sd), and the number of divergences."""
    import jax
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(model), num_warmup=s.num_warmup, num_samples=s.num_samples, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), *args, **kwargs)
    div = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return {k: np.asarray(v) for k, v in mcmc.get_samples().items()}, div


def _simulate(ex, draw: dict, seed: int) -> dict:
    """The example's observed sites drawn anew (host arrays) by its own model, the latents
    fixed to ``draw``."""
    if ex.host == "pyro":
        import pyro
        import torch
        from pyro import poutine

        pyro.set_rng_seed(seed)
        data = {n: torch.as_tensor(np.array(v)) for n, v in draw.items()}
        run = poutine.condition(poutine.uncondition(ex.model), data=data)
        sites = poutine.trace(run).get_trace(*ex.args, **ex.kwargs).nodes
    else:
        from numpyro import handlers

        run = handlers.seed(handlers.uncondition(handlers.substitute(ex.model, data=draw)), seed)
        sites = handlers.trace(run).get_trace(*ex.args, **ex.kwargs)
    return {n: v["value"] for n, v in sites.items() if (v.get("infer") or {}).get("was_observed")}


def datasets(ex, k: int, s: Settings) -> tuple[DataSet, list[DataSet], dict]:
    """The original data set, ``k`` replicates (each with its NUTS reference), and the
    original NUTS draws."""
    if ex.host == "numpyro":
        model, conv = ex.model, lambda a, kw: (a, kw)
    else:
        model, conv = numpyro_twin(ex.name)
    a0, k0 = conv(ex.args, ex.kwargs)
    post, div = _posterior(model, a0, k0, s)
    ref0 = {n: (post[n].mean(0), post[n].std(0)) for n in ex.latents}
    original = DataSet(ex.args, ex.kwargs, ref0, div)
    new = []
    for i in range(k):
        idx = int(np.random.default_rng(i).integers(s.num_samples))
        obs = _simulate(ex, {n: v[idx] for n, v in post.items()}, seed=i)
        args, kwargs = PUT[ex.host, ex.name](ex.args, ex.kwargs, obs)
        ref = _nuts(model, *conv(args, kwargs), ex.latents, s)
        div = int(ref.pop("_method").split(", ")[1].split()[0])  # "NUTS a+b, d divergences"
        new.append(DataSet(args, kwargs, ref, div))
    return original, new, post


# --------------------------------------------------------------------------------------
# Guides
# --------------------------------------------------------------------------------------


def train(ex, cls, steps: int, s: Settings, ref0: dict):
    """host_examples' ``train_<host>``: its result, scored on the original data, with the
    trained guide and (NumPyro) params."""
    trained = train_pyro if ex.host == "pyro" else train_numpyro
    r = trained(ex, cls, steps, s, ref0)
    return r, r.guide, r.params


def guide_draws(ex, guide, params, data: DataSet, s: Settings) -> dict:
    """``s.guide_draws`` draws of the compared latents, the guide called with ``data``."""
    if ex.host == "pyro":
        import torch
        from pyro.infer import Predictive

        pred = Predictive(ex.model, guide=guide, num_samples=s.guide_draws, return_sites=ex.latents)
        with torch.no_grad():
            draws = pred(*data.args, **data.kwargs)
        return {k: v.detach().numpy() for k, v in draws.items()}
    import jax
    from numpyro.infer import Predictive

    pred = Predictive(
        ex.model,
        guide=guide,
        params=params,
        num_samples=s.guide_draws,
        return_sites=list(ex.latents),
        parallel=True,  # vmap: compiles nothing per data set (lax.map would)
    )
    return pred(jax.random.PRNGKey(1), *data.args, **data.kwargs)


@dataclass
class Row:
    host: str
    example: str
    guide: str
    orig: tuple[float, float] | None = None
    new: list[tuple[float, float]] = field(default_factory=list)
    note: str = ""


GUIDES = ("AutoNormal", "AutoIterative", "AutoFaithfulMADE")


def run_example(ex, k: int, s: Settings) -> list[Row]:
    ex = ex.shrunk()
    steps = min(ex.num_steps, s.steps) if s.steps else ex.num_steps
    t0 = time.perf_counter()
    original, new, post = datasets(ex, k, s)
    base = Row(ex.host, ex.name, "NUTS(orig)", (0.0, 1.0))
    base.new = [accuracy(post, d.ref, ex.latents) for d in new]
    divs = "/".join(str(d.divergences) for d in new)
    base.note = f"{steps} SVI steps; NUTS divergences: orig {original.divergences}, new {divs}"
    rows = [base]
    classes = {
        "AutoNormal": guide_classes(ex.host)["AutoNormal"],
        "AutoIterative": guide_classes(ex.host, "iterative")["ours"],
        "AutoFaithfulMADE": guide_classes(ex.host, "made")["ours"],
    }
    for label, cls in classes.items():
        row = Row(ex.host, ex.name, label)
        rows.append(row)
        if isinstance(cls, BaseException):
            row.note = f"import: {_err(cls)}"
            continue
        r, guide, params = train(ex, cls, steps, s, original.ref)
        if r.error is not None:
            row.note = r.error
            continue
        row.orig = (r.mean_err, r.sd_ratio)
        row.note = "NaN loss" if r.nan else ""
        try:
            row.new = [
                accuracy(guide_draws(ex, guide, params, d, s), d.ref, ex.latents) for d in new
            ]
        except Exception as e:
            row.note = f"new data: {_err(e)}"
    base.note += f"; {time.perf_counter() - t0:.0f} s"
    return rows


# --------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------

_KEY = "{:<7} {:<36} {:<16}"
HEADER = (
    f"{'':61}{'original':^14}{'new data sets':^21}".rstrip()
    + "\n"
    + _KEY.format("host", "example", "guide")
    + "".join(f" {c:>6}" for c in ("err", "sd", "err", "worst", "sd"))
)


def format_row(row: Row) -> str:
    """The row's numbers on one line, its note (if any) indented on the next."""
    errs, sds = [e for e, _ in row.new], [r for _, r in row.new]
    cells = [*(row.orig or (None, None))]
    cells += [np.mean(errs), max(errs), np.mean(sds)] if row.new else [None] * 3
    line = _KEY.format(row.host, row.example, row.guide)
    line += "".join("      -" if x is None else f" {x:6.2f}" for x in cells)
    note = textwrap.fill(row.note, 96, initial_indent="    ", subsequent_indent="    ")
    return line + ("\n" + note if row.note else "")


def summary(rows: list[Row]) -> str:
    """For each of ours: on how many examples its mean new-data error is below AutoNormal's."""
    by = {(r.host, r.example, r.guide): r for r in rows}
    mean_new = lambda r: float(np.mean([e for e, _ in r.new]))  # noqa: E731
    lines = []
    for ours in GUIDES[1:]:
        pairs = [(an, by.get((an.host, an.example, ours))) for an in rows if an.guide == GUIDES[0]]
        pairs = [(an, us) for an, us in pairs if an.new and us is not None and us.new]
        wins = sum(mean_new(us) < mean_new(an) for an, us in pairs)
        lines.append(f"{ours} reused beats AutoNormal reused (new err) on {wins} of {len(pairs)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="<=300 SVI steps, short NUTS")
    p.add_argument("--host", choices=["pyro", "numpyro", "both"], default="both")
    p.add_argument("--examples", default="", help="comma-separated names (default: DEFAULT)")
    p.add_argument("--datasets", type=int, default=3, help="new data sets per example")
    a = p.parse_args(argv)
    s = Settings.make(a.quick, None, False)
    hosts = ["numpyro", "pyro"] if a.host == "both" else [a.host]
    wanted = [n for n in a.examples.split(",") if n]
    if unknown := [n for n in wanted if not any((h, n) in PUT for h in hosts)]:
        raise SystemExit(
            f"unknown examples: {unknown} (known: {sorted({n for h, n in PUT if h in hosts})})"
        )
    if "pyro" in hosts:
        import torch

        torch.set_num_threads(1)
    print(HEADER, flush=True)
    rows: list[Row] = []
    t0 = time.perf_counter()
    for host in hosts:
        for name in wanted or DEFAULT[host]:
            if (host, name) not in PUT:
                continue
            try:
                new_rows = run_example(registry(host)[name], a.datasets, s)
            except Exception as e:  # references or data sets failed: one note row
                traceback.print_exc()
                new_rows = [Row(host, name, "-", note=f"failed: {_err(e)}")]
            for row in new_rows:
                rows.append(row)
                print(format_row(row), flush=True)
    print(f"\n{summary(rows)}\n({time.perf_counter() - t0:.0f} s in all)")
    return rows


if __name__ == "__main__":
    main()
