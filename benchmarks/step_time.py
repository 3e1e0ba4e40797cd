r"""SVI step time of AutoFaithfulMADE as a ratio to the host's AutoNormal, same process.

Models: the depth-7 binary tree (63 latents) and the T=50 linear-Gaussian state-space
model, each on one observation (no plate), Trace_ELBO, Adam. Pyro steps are eager
(torch pinned to one thread); NumPyro steps are ``jax.jit(svi.update)``. The two guides
step in turns (the order alternating), so that a change in the machine's load hits both
alike; each column is the median of ``--steps`` timed steps after ``--warmup`` untimed
ones (NumPyro: after compilation).

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

Step = Callable[[], None]


def pyro_stepper(model, args, guide_cls) -> Step:
    """One eager ``svi.step`` per call."""
    import pyro
    import torch
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    torch.set_num_threads(1)
    pyro.set_rng_seed(0)  # parameter names differ between the guides: one store serves both
    svi = SVI(model, guide_cls(model), Adam({"lr": 1e-2}), Trace_ELBO())
    return lambda: svi.step(*args)


def numpyro_stepper(model, args, guide_cls) -> Step:
    """One jitted ``svi.update`` per call (compiled here)."""
    import jax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.optim import Adam

    svi = SVI(model, guide_cls(model), Adam(1e-2), Trace_ELBO())
    update = jax.jit(svi.update)
    state = [svi.init(jax.random.PRNGKey(0), *args)]

    def step() -> None:
        state[0], loss = update(state[0], *args)
        loss.block_until_ready()

    step()  # compile
    return step


def median_steps(steppers: dict[str, Step], steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per step of each stepper, stepping them in turns."""
    times: dict[str, list[float]] = {name: [] for name in steppers}
    order = list(steppers)
    for i in range(warmup + steps):
        for name in order if i % 2 else order[::-1]:
            t = time.perf_counter()
            steppers[name]()
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts)) for name, ts in times.items()}


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
    stepper = {"pyro": pyro_stepper, "numpyro": numpyro_stepper}
    print(f"{'host':<8} {'model':<18} {'AutoNormal':>11} {'Faithful':>10} {'ratio':>6}")
    for host in args.hosts:
        for title, build in MODELS.items():
            model, margs, _ = build(host)
            steppers = {
                name: stepper[host](model, margs, cls) for name, cls in guides(host).items()
            }
            t = median_steps(steppers, args.steps, args.warmup)
            ratio = t["AutoFaithfulMADE"] / t["AutoNormal"]
            print(
                f"{host:<8} {title:<18} {1e3 * t['AutoNormal']:>9.2f}ms "
                f"{1e3 * t['AutoFaithfulMADE']:>8.2f}ms {ratio:>6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
