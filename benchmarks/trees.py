r"""Binary-tree Gaussian BNs: the experiment of Webb et al. (2018), with exact posteriors.

Two tables per host:

1. **Amortized** (``AutoFaithfulMADE`` with structure nami / heuristic / full, at equal
   hidden width): the tree sits in a data plate, every step draws a fresh batch of rows
   from the model and takes an ELBO step; the guide is then evaluated on 100 held-out rows:
   mean KL(q(z|x) ‖ p(z|x)) (Monte Carlo over q, exact Gaussian posterior), next to the
   structural floor of that structure (the best KL any guide over it can reach).
2. **One observation**, same process: our guide (nami) next to the host's own guides
   (AutoNormal, AutoMultivariateNormal, AutoIAFNormal): final KL, steps until KL < 0.1
   nats (i.e. the ELBO within 0.1 of the exact log p(x)), median step time as a ratio to
   AutoNormal's.

Weights are drawn once from U[0.5, 2] (seed 0), unit noise, leaves observed.

Usage::

    python benchmarks/trees.py             # depths 4-7, both hosts (tens of minutes)
    python benchmarks/trees.py --quick     # depth 4, few steps (about a minute)
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from faithful_guides import ModelGraph, invert
from faithful_guides.autoguides import build_made_plan
from faithful_guides.exact import LinearGaussianBN
from faithful_guides.zoo import binary_tree

STRUCTURES = ("nami", "heuristic", "full")


@dataclass
class Trained:
    """What a training run leaves: a sampler of (z, log q) and timings."""

    draw: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (x, seed) -> z, log q
    step_times: list[float]
    params: int
    kl_trace: list[tuple[int, float]]


def tree_weights(depth: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0.5, 2.0, size=2**depth - 1)


def mc_kl(bn: LinearGaussianBN, trained: Trained, x: np.ndarray, draws: int = 64) -> float:
    """Mean over rows of E_q[log q(z|x) - log p(z|x)], exact Gaussian posterior."""
    mean, cov = bn.posterior(x)
    prec = np.linalg.inv(cov)
    logdet = np.linalg.slogdet(cov)[1]
    k = mean.shape[-1]
    total = np.zeros(len(x))
    for s in range(draws):
        z, logq = trained.draw(x, s)
        d = z - mean
        logp = -0.5 * (np.einsum("ni,ij,nj->n", d, prec, d) + logdet + k * np.log(2 * np.pi))
        total += logq - logp
    return float(np.mean(total / draws))


# ---- Pyro --------------------------------------------------------------------------------


def pyro_train(bn, depth, guide_fn, steps, lr, batch, amortized, eval_x, eval_every):
    import pyro
    import torch
    from pyro import poutine
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    rows = batch if amortized else None
    model, _, _ = binary_tree("pyro", depth, weights=tree_weights(depth), num_rows=rows)
    guide = guide_fn(model)
    svi = SVI(model, guide, Adam({"lr": lr}), Trace_ELBO())
    rng = np.random.default_rng(1)
    latents = bn.latent

    def draw(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        pyro.set_rng_seed(10_000 + seed)
        arg = torch.as_tensor(x if amortized else x[0], dtype=torch.float32)
        with torch.no_grad():
            tr = poutine.trace(guide).get_trace(arg)
            logq = sum(
                s["fn"].log_prob(s["value"]) for s in tr.nodes.values() if s["type"] == "sample"
            )
            z = torch.stack([tr.nodes[n]["value"] for n in latents], -1)
        return z.reshape(-1, len(latents)).double().numpy(), np.atleast_1d(logq.double().numpy())

    times, kl_trace = [], []
    trained = Trained(draw, times, 0, kl_trace)
    for step in range(1, steps + 1):
        x = bn.sample(rng, batch)[1] if amortized else eval_x
        arg = torch.as_tensor(x if amortized else x[0], dtype=torch.float32)
        t = time.perf_counter()
        svi.step(arg)
        times.append(time.perf_counter() - t)
        if eval_every and step % eval_every == 0:
            kl_trace.append((step, mc_kl(bn, trained, eval_x, draws=16)))
    trained.params = pyro_effective_params(guide)
    return trained


def pyro_effective_params(guide) -> int:
    """Trainable numbers, masked-out weights excluded (they never change)."""
    total = 0
    for module in guide.modules():
        mask = getattr(module, "mask", None)
        for name, p in module.named_parameters(recurse=False):
            total += int(mask.sum()) if name == "weight" and mask is not None else p.numel()
    return total


def pyro_guides() -> dict[str, Callable]:
    from pyro.infer.autoguide import AutoIAFNormal, AutoMultivariateNormal, AutoNormal

    from faithful_guides.pyro import AutoFaithfulMADE

    return {
        "AutoNormal": AutoNormal,
        "AutoMultivariateNormal": AutoMultivariateNormal,
        "AutoIAFNormal": AutoIAFNormal,
        "AutoFaithfulMADE": AutoFaithfulMADE,
    }


# ---- NumPyro -----------------------------------------------------------------------------


def numpyro_train(bn, depth, guide_fn, steps, lr, batch, amortized, eval_x, eval_every):
    import jax
    import jax.numpy as jnp
    from numpyro import handlers
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.optim import Adam

    rows = batch if amortized else None
    model, _, _ = binary_tree("numpyro", depth, weights=tree_weights(depth), num_rows=rows)
    guide = guide_fn(model)
    svi = SVI(model, guide, Adam(lr), Trace_ELBO())
    rng = np.random.default_rng(1)
    first = bn.sample(rng, batch)[1] if amortized else eval_x
    state = svi.init(jax.random.PRNGKey(0), jnp.asarray(first if amortized else first[0]))
    update = jax.jit(svi.update)
    latents = bn.latent

    @jax.jit
    def trace_guide(params, x, key):
        tr = handlers.trace(handlers.seed(handlers.substitute(guide, params), key)).get_trace(x)
        logq = sum(s["fn"].log_prob(s["value"]) for s in tr.values() if s["type"] == "sample")
        return jnp.stack([tr[n]["value"] for n in latents], -1), logq

    def draw(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        params = svi.get_params(state)
        arg = jnp.asarray(x if amortized else x[0])
        z, logq = trace_guide(params, arg, jax.random.PRNGKey(10_000 + seed))
        return np.asarray(z, dtype=np.float64).reshape(-1, len(latents)), np.atleast_1d(logq)

    times, kl_trace = [], []
    trained = Trained(draw, times, 0, kl_trace)
    for step in range(1, steps + 1):
        x = bn.sample(rng, batch)[1] if amortized else eval_x
        arg = jnp.asarray(x if amortized else x[0], dtype=jnp.float32)
        t = time.perf_counter()
        state, loss = update(state, arg)
        loss.block_until_ready()
        times.append(time.perf_counter() - t)
        if eval_every and step % eval_every == 0:
            kl_trace.append((step, mc_kl(bn, trained, eval_x, draws=16)))
    trained.params = numpyro_effective_params(guide, svi.get_params(state))
    return trained


def numpyro_effective_params(guide, params: dict) -> int:
    """Trainable numbers, masked-out weights of AutoFaithfulMADE's MADEs excluded."""
    masks = {}
    plan = getattr(guide, "plan", None)
    for group in ("global", "local"):
        g = getattr(plan, "global_" if group == "global" else "local", None)
        for k, m in enumerate(g.masks if g else ()):
            masks[f"{guide.prefix}_made_{group}_W{k}"] = int(m.sum())
    return int(sum(masks.get(n, np.size(v)) for n, v in params.items()))


def numpyro_guides() -> dict[str, Callable]:
    from numpyro.infer.autoguide import AutoIAFNormal, AutoMultivariateNormal, AutoNormal

    from faithful_guides.numpyro import AutoFaithfulMADE

    return {
        "AutoNormal": AutoNormal,
        "AutoMultivariateNormal": AutoMultivariateNormal,
        "AutoIAFNormal": AutoIAFNormal,
        "AutoFaithfulMADE": AutoFaithfulMADE,
    }


HOSTS = {"pyro": (pyro_train, pyro_guides), "numpyro": (numpyro_train, numpyro_guides)}


# ---- tables ------------------------------------------------------------------------------


def made_params(bn: LinearGaussianBN, structure: str, width: int) -> int:
    """Effective (unmasked) weights and biases of the MADE for ``structure``."""
    graph = ModelGraph.from_edges(bn.dag.edges, bn.observed)
    sizes = dict.fromkeys(graph.sites, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = build_made_plan(graph, sizes=sizes, hidden=(width, width), structure=structure)
    return sum(int(m.sum()) + m.shape[0] for m in plan.global_.masks)


def width_for(bn: LinearGaussianBN, structure: str, target: int) -> int:
    """The hidden width whose parameter count is closest to ``target``."""
    lo, hi = 1, 64 * len(bn.nodes)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if made_params(bn, structure, mid) < target else (lo, mid)
    return min((lo, max(lo - 1, 1)), key=lambda w: abs(made_params(bn, structure, w) - target))


def amortized_table(host: str, depths, steps: int, batch: int, lr: float) -> None:
    train, guides = HOSTS[host]
    made = guides()["AutoFaithfulMADE"]
    print(f"\n[{host}] amortized AutoFaithfulMADE, {steps} steps x {batch} fresh rows, lr {lr}")
    cols = ("depth", "structure", "width", "params", "KL held-out", "floor", "s/step")
    widths = (5, 10, 6, 8, 12, 7, 8)
    print(" ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True)))
    for depth in depths:
        bn = LinearGaussianBN.tree(depth, tree_weights(depth))
        held_out = bn.sample(np.random.default_rng(99), batch)[1]
        width = max(32, 2 * len(bn.nodes))  # wide enough for every structure's singletons
        budget = made_params(bn, "nami", width)
        runs = [(s, width) for s in STRUCTURES]  # equal hidden width
        runs += [(s, width_for(bn, s, budget)) for s in STRUCTURES[1:]]  # equal parameters
        for structure, w in runs:
            floor = bn.structural_kl(invert(bn.dag, bn.observed, method=structure))

            def guide_fn(model, structure=structure, w=w):
                return made(model, structure=structure, hidden_dims=(w, w))

            trained = train(bn, depth, guide_fn, steps, lr, batch, True, held_out, 0)
            kl = mc_kl(bn, trained, held_out)
            step = float(np.median(trained.step_times))
            print(
                f"{depth:>5} {structure:>10} {w:>6} {trained.params:>8} {kl:>12.3f} "
                f"{floor:>7.3f} {step:>8.4f}",
                flush=True,
            )


def single_table(host: str, depths, steps: int, lr: float, every: int) -> None:
    train, guides = HOSTS[host]
    print(f"\n[{host}] one observation, {steps} steps, lr {lr}; KL checked every {every} steps")
    header = (
        f"{'depth':>5} {'guide':>24} {'params':>8} {'final KL':>9} {'steps<0.1':>9} {'step/AN':>8}"
    )
    print(header)
    for depth in depths:
        bn = LinearGaussianBN.tree(depth, tree_weights(depth))
        x = bn.sample(np.random.default_rng(7), 1)[1]
        base = None
        for name, cls in guides().items():
            try:
                trained = train(bn, depth, cls, steps, lr, 1, False, x, every)
            except Exception as e:  # a host guide that cannot run here is reported, not fatal
                print(f"{depth:>5} {name:>24}  failed: {type(e).__name__}: {e}"[:120])
                continue
            kl = mc_kl(bn, trained, x, draws=256)
            step = float(np.median(trained.step_times))
            base = step if name == "AutoNormal" else base
            within = next((s for s, k in trained.kl_trace if k < 0.1), None)
            print(
                f"{depth:>5} {name:>24} {trained.params:>8} {kl:>9.3f} "
                f"{within if within else '-':>9} {step / base if base else float('nan'):>8.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--hosts", nargs="+", default=list(HOSTS), choices=list(HOSTS))
    parser.add_argument("--depths", nargs="+", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    depths = args.depths or ([4] if args.quick else [4, 5, 6, 7])
    steps = args.steps or (300 if args.quick else 3000)
    for host in args.hosts:
        amortized_table(host, depths, steps, batch=100, lr=3e-3)
        single_table(host, depths, steps if args.quick else 2000, lr=1e-2, every=50)


if __name__ == "__main__":
    main()
