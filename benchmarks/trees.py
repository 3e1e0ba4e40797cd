r"""Binary-tree Gaussian BNs: the experiment of Webb et al. (2018), with exact posteriors.

Two tables per host:

1. **Amortized** (``AutoFaithfulMADE`` with structure nami / heuristic / full, at equal
   hidden width and at nami's parameter count): the tree sits in a data plate, every step
   draws a fresh batch of rows from the model and takes an ELBO step (``--objective
   forward``: a ForwardKL step on joint draws); the guide is evaluated on 100 held-out rows
   after 1/4, 1/2, 3/4 and all of the steps: mean KL(q(z|x) ‖ p(z|x)) (Monte Carlo over q,
   exact Gaussian posterior), next to the structural floor of that structure
   (``LinearGaussianBN.structural_kl``: the forward KL of the best guide over it, zero for
   a faithful structure; an ELBO-trained guide over a structure that is not faithful can
   go below it, since the reverse-KL optimum differs), the training wall time and the
   median step time.
2. **One observation**, same process: our guide (nami) next to the host's own guides
   (AutoNormal, AutoMultivariateNormal, AutoIAFNormal, Pyro's AutoGaussian): final KL,
   steps until KL < 0.1 nats (i.e. the ELBO within 0.1 of the exact log p(x)), median
   step time as a ratio to AutoNormal's.

Weights are drawn once from U[0.5, 2] (seed 0), unit noise, leaves observed.

Usage::

    python benchmarks/trees.py             # depths 4-7, both hosts (tens of minutes)
    python benchmarks/trees.py --quick     # depth 4, few steps (about a minute)
    python benchmarks/trees.py --hosts numpyro --depths 5 7 --tables amortized
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from faithful_guides import ModelGraph, invert
from faithful_guides.autoguides import build_made_plan, build_structure
from faithful_guides.autoguides.layout import SiteLayout
from faithful_guides.exact import LinearGaussianBN
from faithful_guides.zoo.experiments import FINAL_LR_FACTOR, HOSTS, mc_kl, tree_weights

STRUCTURES = ("nami", "heuristic", "full")


def made_params(bn: LinearGaussianBN, structure: str, width: int) -> int:
    """Effective (unmasked) weights and biases of the MADE for ``structure``, direct
    connections included."""
    graph = ModelGraph.from_edges(bn.dag.edges, bn.observed)
    layouts = {n: SiteLayout(n, (), 0, (), ()) for n in graph.sites}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure_ = build_structure(graph, layouts, structure=structure)
        plan = build_made_plan(structure_, hidden=(width, width))
    return plan.effective_params()


def width_for(bn: LinearGaussianBN, structure: str, target: int) -> int:
    """The hidden width whose parameter count is closest to ``target``."""
    lo, hi = 1, 64 * len(bn.nodes)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if made_params(bn, structure, mid) < target else (lo, mid)
    return min((lo, max(lo - 1, 1)), key=lambda w: abs(made_params(bn, structure, w) - target))


def amortized_table(
    host: str, depths, steps: int, batch: int, lr: float, objective: str = "elbo"
) -> None:
    train, guides = HOSTS[host]
    made = guides()["AutoFaithfulMADE"]
    print(
        f"\n[{host}] amortized AutoFaithfulMADE, {steps} steps x {batch} fresh rows, "
        f"{objective}, Adam lr {lr} decayed to {lr * FINAL_LR_FACTOR:g}; "
        "KL(q || p) on 100 held-out rows after 1/4, 1/2, 3/4 and all of the steps"
    )
    cols = ("depth", "structure", "width", "params", "KL 1/4", "KL 1/2", "KL 3/4", "KL end")
    cols += ("floor", "train s", "ms/step")
    widths = (5, 10, 6, 8, 7, 7, 7, 7, 7, 8, 8)
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

            trained = train(
                bn, depth, guide_fn, steps, lr, batch, True, held_out, max(steps // 4, 1),
                objective=objective,
            )  # fmt: skip
            trace = [k for _, k in trained.kl_trace[:3]]
            trace += [float("nan")] * (3 - len(trace))
            kl = mc_kl(bn, trained, held_out)
            step = float(np.median(trained.step_times))
            print(
                f"{depth:>5} {structure:>10} {w:>6} {trained.params:>8} "
                + " ".join(f"{k:>7.3f}" for k in [*trace, kl])
                + f" {floor:>7.3f} {sum(trained.step_times):>8.1f} {1e3 * step:>8.2f}",
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
                print(f"{depth:>5} {name:>24}  failed: {type(e).__name__}: {e}"[:120], flush=True)
                continue
            kl = mc_kl(bn, trained, x, draws=256)
            step = float(np.median(trained.step_times))
            base = step if name == "AutoNormal" else base
            within = next((s for s, k in trained.kl_trace if k < 0.1), None)
            print(
                f"{depth:>5} {name:>24} {trained.params:>8} {kl:>9.3f} "
                f"{within if within else '-':>9} {step / base if base else float('nan'):>8.2f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--hosts", nargs="+", default=list(HOSTS), choices=list(HOSTS))
    parser.add_argument("--depths", nargs="+", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=1e-2, help="amortized runs' initial lr")
    parser.add_argument("--objective", choices=("elbo", "forward"), default="elbo")
    parser.add_argument(
        "--tables", nargs="+", choices=("amortized", "single"), default=["amortized", "single"]
    )
    args = parser.parse_args()
    depths = args.depths or ([4] if args.quick else [4, 5, 6, 7])
    steps = args.steps or (300 if args.quick else 3000)
    for host in args.hosts:
        if "amortized" in args.tables:
            amortized_table(host, depths, steps, batch=100, lr=args.lr, objective=args.objective)
        if "single" in args.tables:
            single_table(host, depths, steps if args.quick else 2000, lr=1e-2, every=50)


if __name__ == "__main__":
    main()
