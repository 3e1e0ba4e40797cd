r"""SVI step time of AutoFaithfulMADE as a ratio to the host's AutoNormal, same process.

Models: the depth-7 binary tree (63 latents) and the T=50 linear-Gaussian state-space
model, each on one observation (no plate), Trace_ELBO, Adam. Pyro steps are eager
(torch pinned to one thread); NumPyro steps are ``jax.jit(svi.update)``. The median of
``--steps`` timed steps after ``--warmup`` untimed ones.

Usage::

    python benchmarks/step_time.py [--steps 200] [--warmup 20] [--hosts pyro numpyro]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from faithful_guides.zoo import binary_tree, hmm_chain
from faithful_guides.zoo.experiments import HOSTS

MODELS: dict[str, Callable[[str], tuple]] = {
    "tree depth 7": lambda host: binary_tree(host, 7),
    "state space T=50": lambda host: hmm_chain(host, 50),
}


def pyro_median_step(model, args, guide_cls, steps: int, warmup: int) -> float:
    import pyro
    import torch
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    torch.set_num_threads(1)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = SVI(model, guide_cls(model), Adam({"lr": 1e-2}), Trace_ELBO())
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        svi.step(*args)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def numpyro_median_step(model, args, guide_cls, steps: int, warmup: int) -> float:
    import jax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.optim import Adam

    svi = SVI(model, guide_cls(model), Adam(1e-2), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), *args)
    update = jax.jit(svi.update)
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        state, loss = update(state, *args)
        loss.block_until_ready()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def guides(host: str) -> dict[str, type]:
    """AutoNormal and AutoFaithfulMADE from the shared registry of the tree experiments."""
    registry = HOSTS[host][1]()
    return {name: registry[name] for name in ("AutoNormal", "AutoFaithfulMADE")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--hosts", nargs="+", default=["pyro", "numpyro"])
    args = parser.parse_args()
    runner = {"pyro": pyro_median_step, "numpyro": numpyro_median_step}
    print(f"{'host':<8} {'model':<18} {'AutoNormal':>11} {'Faithful':>10} {'ratio':>6}")
    for host in args.hosts:
        for title, build in MODELS.items():
            model, margs, _ = build(host)
            t = {
                name: runner[host](model, margs, cls, args.steps, args.warmup)
                for name, cls in guides(host).items()
            }
            ratio = t["AutoFaithfulMADE"] / t["AutoNormal"]
            print(
                f"{host:<8} {title:<18} {1e3 * t['AutoNormal']:>9.2f}ms "
                f"{1e3 * t['AutoFaithfulMADE']:>8.2f}ms {ratio:>6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
