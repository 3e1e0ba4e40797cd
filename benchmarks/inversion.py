r"""Time to trace and to invert growing models: binary trees, HMM chains, latent grids.

Usage::

    .venv/bin/python benchmarks/inversion.py            # about 10 minutes
    .venv/bin/python benchmarks/inversion.py --quick    # under a minute

For each family and size it prints two tables:

- **trace**: our Pyro and NumPyro tracers (``faithful_guides.<host>.trace_model``) on the
  zoo's model, next to the hosts' own ``get_dependencies`` (``pyro.infer.inspect`` and
  ``numpyro.infer.inspect``);
- **invert**: :func:`faithful_guides.invert` (NaMI) on the same graph built directly with
  networkx, with ``order="auto"`` and with each elimination order alone, and the growth
  ratio per doubling of the node count, ``(t2 / t1) ** (log 2 / log(n2 / n1))``
  (``time(2n) / time(n)`` when sizes double; 2 means linear).

Every cell has a time budget (``--budget``, default 15 s per trace cell and twice that per
invert cell): sizes run in increasing order, a cell is skipped when the
previous sizes predict it to take longer than the budget (the log-log slope of the last two),
and a cell that overruns is cut off (SIGALRM) and ends its column. A total deadline
skips what is left. Single-threaded (torch and XLA) for stable numbers.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse
import gc
import importlib
import importlib.util
import math
import platform
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from faithful_guides import invert

Graph = tuple[nx.DiGraph, set[str]]


# ----------------------------------------------------------------------------- the models


def tree_graph(depth: int) -> Graph:
    """Heap-indexed binary tree, edges to the leaves; leaves observed (zoo names)."""
    n, n_internal = 2**depth - 1, 2 ** (depth - 1) - 1
    name = [f"z{i}" if i < n_internal else f"x{i}" for i in range(n)]
    dag = nx.DiGraph()
    dag.add_nodes_from(name)
    dag.add_edges_from((name[(i - 1) // 2], name[i]) for i in range(1, n))
    return dag, set(name[n_internal:])


def hmm_graph(T: int) -> Graph:
    """``z_{t-1} -> z_t -> x_t`` with every ``x_t`` observed (zoo names)."""
    dag = nx.DiGraph()
    for t in range(T):
        dag.add_edge(f"z{t}", f"x{t}")
        if t:
            dag.add_edge(f"z{t - 1}", f"z{t}")
    return dag, {f"x{t}" for t in range(T)}


def grid_graph(n: int) -> Graph:
    """``z[i-1,j] -> z[i,j] <- z[i,j-1]`` and ``z[i,j] -> x[i,j]`` observed (zoo names)."""
    dag = nx.DiGraph()
    for i in range(n):
        for j in range(n):
            dag.add_edge(f"z_{i}_{j}", f"x_{i}_{j}")
            if i:
                dag.add_edge(f"z_{i - 1}_{j}", f"z_{i}_{j}")
            if j:
                dag.add_edge(f"z_{i}_{j - 1}", f"z_{i}_{j}")
    return dag, {f"x_{i}_{j}" for i in range(n) for j in range(n)}


def _zoo(name: str) -> Callable[[str, int], Any]:
    def build(host: str, size: int) -> Any:
        return getattr(importlib.import_module("faithful_guides.zoo"), name)(host, size)

    return build


@dataclass(frozen=True)
class Family:
    title: str
    size_name: str
    sizes: Sequence[int]
    quick_sizes: Sequence[int]
    graph: Callable[[int], Graph]
    zoo: Callable[[str, int], Any]


FAMILIES = [
    Family("binary tree", "depth", range(5, 18), range(5, 10), tree_graph, _zoo("binary_tree")),
    Family(
        "HMM chain",
        "T",
        [100 * 2**k for k in range(11)],  # 100 ... 102400
        [100 * 2**k for k in range(4)],
        hmm_graph,
        _zoo("hmm_chain"),
    ),
    Family("latent grid", "n", [8, 11, 16, 22, 30], [4, 6, 8], grid_graph, _zoo("latent_grid")),
]


# ----------------------------------------------------------------------------- timing


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


@dataclass
class Column:
    """One column of a table: its history of (nodes, seconds) and whether it has stopped."""

    budget: float
    points: list[tuple[int, float]] = field(default_factory=list)
    stopped: str = ""

    def predict(self, nodes: int) -> float:
        if not self.points:
            return 0.0
        n1, t1 = self.points[-1]
        slope = 1.5  # a guess until there are two points
        if len(self.points) > 1:
            n0, t0 = self.points[-2]
            if t0 > 0.02 and n1 > n0:  # tiny times are noise
                slope = min(max(math.log(t1 / t0) / math.log(n1 / n0), 1.0), 3.0)
        return t1 * (nodes / n1) ** slope

    def ratio(self) -> str:
        """Growth per doubling of nodes between the last two sizes."""
        if len(self.points) < 2:
            return ""
        (n0, t0), (n1, t1) = self.points[-2:]
        if t0 <= 0 or n1 <= n0:
            return ""
        return f"{(t1 / t0) ** (math.log(2) / math.log(n1 / n0)):.2f}"


@dataclass
class Clock:
    deadline: float

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def timed(column: Column, nodes: int, clock: Clock, fn: Callable[[], Any]) -> tuple[str, Any]:
    """Run ``fn`` within the column's budget; the cell's text and ``fn``'s result."""
    if column.stopped:
        return column.stopped, None
    if clock.left() <= 0:
        return "skipped (deadline)", None
    if column.predict(nodes) > column.budget:
        column.stopped = f"skipped (>{column.budget:g} s)"
        return column.stopped, None
    limit = min(column.budget * 1.5, clock.left())
    gc.collect()
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        best, result, runs = math.inf, None, 0
        while runs < 3 and (runs == 0 or best < 0.05):  # repeat tiny runs, keep the best
            start = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - start)
            runs += 1
    except _Timeout:
        _reset_hosts()
        column.stopped = f"skipped (>{limit:.3g} s)"
        return column.stopped, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    column.points.append((nodes, best))
    return _seconds(best), result


def _seconds(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 0.1 else f"{t:.2f} s"


def _reset_hosts() -> None:
    """A tracer cut off by the alarm may leave its effect handlers on the host's stack."""
    if "pyro" in sys.modules:
        from pyro.poutine.runtime import _PYRO_STACK

        _PYRO_STACK.clear()
    if "numpyro" in sys.modules:
        from numpyro.primitives import _PYRO_STACK as _NUMPYRO_STACK

        _NUMPYRO_STACK.clear()


def _table(title: str, rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [title, "  ".join(c.rjust(w) for c, w in zip(rows[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows[1:]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the runs


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _tracers() -> dict[str, Callable[[Any], Any]]:
    """Column title -> ``fn(model, *args, **kwargs)``, for the hosts installed here."""
    out: dict[str, Callable[..., Any]] = {}
    for host in ("pyro", "numpyro"):
        if not _have(host):
            continue
        if _have(f"faithful_guides.{host}"):
            mod = importlib.import_module(f"faithful_guides.{host}")
            if hasattr(mod, "trace_model"):
                out[f"{host} trace"] = mod.trace_model
        deps = importlib.import_module(f"{host}.infer.inspect").get_dependencies
        out[f"{host} get_dependencies"] = lambda m, *a, _d=deps, **k: _d(m, a, k)
    return out


def bench_trace(family: Family, sizes: Sequence[int], budget: float, clock: Clock) -> str:
    tracers = _tracers()
    if not tracers:
        return f"trace: {family.title}: no host installed"
    columns = {name: Column(budget) for name in tracers}
    rows = [[family.size_name, "nodes", *tracers]]
    for size in sizes:
        nodes = family.graph(size)[0].number_of_nodes()
        row = [str(size), str(nodes)]
        for name, fn in tracers.items():
            host = name.split()[0]
            if columns[name].stopped or clock.left() <= 0:
                row.append(columns[name].stopped or "skipped (deadline)")
                continue
            model, args, kwargs = family.zoo(host, size)
            if not columns[name].points:  # warm-up: the first call imports and compiles
                warm_model, warm_args, warm_kwargs = family.zoo(host, sizes[0])
                fn(warm_model, *warm_args, **warm_kwargs)
            call = lambda fn=fn, m=model, a=args, k=kwargs: fn(m, *a, **k)  # noqa: E731
            cell, _ = timed(columns[name], nodes, clock, call)
            row.append(cell)
        rows.append(row)
        print(".", end="", flush=True, file=sys.stderr)
    return _table(f"TRACE {family.title} (seconds per call)", rows)


def bench_invert(family: Family, sizes: Sequence[int], budget: float, clock: Clock) -> str:
    orders = ("auto", "topological", "reverse")
    columns = {o: Column(budget) for o in orders}
    head = [family.size_name, "nodes", "edges", "auto", "inv edges", "x/2n"]
    rows = [[*head, "topological", "reverse", "topo x/2n", "rev x/2n"]]
    for size in sizes:
        dag, observed = family.graph(size)
        row = [str(size), str(dag.number_of_nodes()), str(dag.number_of_edges())]
        cells: dict[str, str] = {}
        for order in orders:
            text, inverse = timed(
                columns[order],
                dag.number_of_nodes(),
                clock,
                lambda g=dag, x=observed, order=order: invert(g, x, order=order),
            )
            if inverse is not None:
                text = f"{text} ({inverse.number_of_edges()})" if order != "auto" else text
                if order == "auto":
                    cells["edges"] = str(inverse.number_of_edges())
            cells[order] = text
        ratio = {o: columns[o].ratio() if cells[o][0].isdigit() else "" for o in orders}
        row += [cells["auto"], cells.get("edges", ""), ratio["auto"]]
        row += [cells[o] for o in orders[1:]] + [ratio[o] for o in orders[1:]]
        rows.append(row)
        print(".", end="", flush=True, file=sys.stderr)
    title = (
        f"INVERT {family.title}: nami, seconds (inverse edges); x/2n = growth per doubling of nodes"
    )
    return _table(title, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds per trace cell, twice that per invert cell (default 15, quick 1)",
    )
    parser.add_argument("--deadline", type=float, help="seconds in all (default 570, quick 50)")
    parser.add_argument("--only", choices=["trace", "invert"], help="run one part")
    args = parser.parse_args(argv)
    budget = args.budget or (1.0 if args.quick else 15.0)
    start = time.perf_counter()
    clock = Clock(start + (args.deadline or (50.0 if args.quick else 570.0)))
    if _have("torch"):
        import torch

        torch.set_num_threads(1)
    print(f"python {platform.python_version()}, networkx {nx.__version__}, {platform.machine()}")
    print(f"budget {budget:g} s per trace cell, {2 * budget:g} s per invert cell; 1 thread\n")
    for family in FAMILIES:
        sizes = family.quick_sizes if args.quick else family.sizes
        if args.only != "trace":
            table = bench_invert(family, sizes, 2 * budget, clock)
            print(file=sys.stderr)
            print(table, end="\n\n", flush=True)
        if args.only != "invert":
            table = bench_trace(family, sizes, budget, clock)
            print(file=sys.stderr)
            print(table, end="\n\n", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
