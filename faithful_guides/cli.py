r"""Command line: look at a model's dependency graph and its faithful inverse.

Usage::

    python -m faithful_guides inspect FILE.py:FUNCTION [--backend pyro|numpyro] [--png OUT.png]
    python -m faithful_guides demo [--png demo_graphs.png] [--hosts pyro numpyro]

``inspect`` imports ``FILE.py``, traces ``FUNCTION`` (a model that takes no required
arguments) with the host's tracer, and prints the sites, the forward edges, the NaMI
inverse (fill-in edges marked ``*``) and a comparison of the inversion methods. ``demo``
does the same for models of the zoo in both hosts.

Example:
    >>> main(["inspect", "my_model.py:model", "--png", "graphs.png"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import inspect as pyinspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import networkx as nx

from faithful_guides.graph.model_graph import ModelGraph

__all__ = [
    "DEMO_MODELS",
    "DEMO_SECTIONS",
    "HOSTS",
    "DemoState",
    "demo",
    "detect_backend",
    "format_edges",
    "inspect_model",
    "load_model",
    "main",
    "method_table",
    "trace",
]

HOSTS = ("pyro", "numpyro")
METHODS = ("nami", "heuristic", "full")


# ----------------------------------------------------------------------------- loading


def load_model(target: str) -> tuple[Callable[[], Any], Path]:
    """Import ``FILE.py:FUNCTION`` and return the function and the file's path.

    Raises:
        ValueError: a malformed target, a missing file or function, something that is not
            callable, or a function with required arguments.

    Example:
        >>> model, path = load_model("examples/student.py:model")  # doctest: +SKIP
    """
    file, sep, name = target.rpartition(":")
    if not sep or not file or not name:
        raise ValueError(f"expected FILE.py:FUNCTION, got {target!r} (e.g. 'model.py:model')")
    path = Path(file)
    if not path.is_file():
        raise ValueError(f"model file not found: {str(path)!r}")
    module_name = f"_faithful_guides_inspect_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))  # sibling imports of the model file
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.resolve().parent))
    if not hasattr(module, name):
        found = sorted(
            k
            for k, v in vars(module).items()
            if pyinspect.isfunction(v) and v.__module__ == module_name and not k.startswith("_")
        )
        raise ValueError(
            f"no function {name!r} in {str(path)!r}; functions defined there: "
            f"{', '.join(found) or '(none)'}"
        )
    fn = getattr(module, name)
    if not callable(fn):
        raise ValueError(f"{name!r} in {str(path)!r} is a {type(fn).__name__}, not a function")
    _check_no_required_args(fn, name)
    return fn, path


def _check_no_required_args(fn: Callable[..., Any], name: str) -> None:
    try:
        params = pyinspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    kinds = (pyinspect.Parameter.VAR_POSITIONAL, pyinspect.Parameter.VAR_KEYWORD)
    required = [p.name for p in params if p.default is p.empty and p.kind not in kinds]
    if required:
        raise ValueError(
            f"model {name!r} has required arguments ({', '.join(required)}); inspect calls it "
            f"with none. Give them defaults, or add a wrapper such as "
            f"'def {name}_example(): return {name}({', '.join(required)}=...)'"
        )


def detect_backend(path: str | Path) -> str:
    """``"pyro"`` or ``"numpyro"``, from the imports at the top of a model file.

    Raises:
        ValueError: the file imports both hosts or neither.

    Example:
        >>> detect_backend("numpyro_model.py")  # a file with `import numpyro`  # doctest: +SKIP
        'numpyro'
    """
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            # `from faithful_guides.numpyro import ...` also says which host
            roots = [parts[1] if parts[0] == "faithful_guides" and len(parts) > 1 else parts[0]]
        else:
            continue
        found.update(r for r in roots if r in HOSTS)
    if len(found) == 1:
        return found.pop()
    which = "both pyro and numpyro" if found else "neither pyro nor numpyro"
    raise ValueError(f"{str(path)!r} imports {which}; pass --backend pyro or --backend numpyro")


def trace(model: Callable[..., Any], backend: str, *args: Any, **kwargs: Any) -> ModelGraph:
    """Trace ``model(*args, **kwargs)`` with the tracer of ``backend`` (``"pyro"``/``"numpyro"``).

    Example:
        >>> graph = trace(model, "pyro")  # doctest: +SKIP
    """
    if backend not in HOSTS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(HOSTS)}")
    if importlib.util.find_spec(backend) is None:
        extra = "pyro" if backend == "pyro" else "numpyro"
        raise ValueError(
            f"backend {backend!r} is not installed: pip install 'faithful-guides[{extra}]'"
        )
    host = importlib.import_module(f"faithful_guides.{backend}")
    return host.trace_model(model, *args, **kwargs)


# ----------------------------------------------------------------------------- reporting


def _order_key(graph: ModelGraph) -> Callable[[Any], tuple[int, str]]:
    return lambda n: (graph.sites[n].order if n in graph.sites else -1, str(n))


def format_edges(graph: ModelGraph, dag: nx.DiGraph, *, limit: int = 0) -> str:
    """One ``u -> v`` line per edge, ``fill=True`` edges marked ``*``, in the order a guide
    samples: by the child's, then the parent's position in a topological order of ``dag``
    (ties by trace order). ``limit > 0`` shows at most that many lines.

    Example:
        >>> g = ModelGraph.from_edges([("z", "x")], observed={"x"})
        >>> print(format_edges(g, g.dag))
          z -> x
    """
    topo = nx.lexicographical_topological_sort(dag, key=_order_key(graph))
    rank = {n: i for i, n in enumerate(topo)}
    edges = sorted(dag.edges(data=True), key=lambda e: (rank[e[1]], rank[e[0]]))
    shown = edges[:limit] if limit > 0 else edges
    lines = [f"  {u} -> {v}{' *' if d.get('fill') else ''}" for u, v, d in shown]
    if len(shown) < len(edges):
        lines.append(f"  ... {len(edges) - len(shown)} more")
    return "\n".join(lines) if lines else "  (none)"


def format_parents(graph: ModelGraph, dag: nx.DiGraph) -> str:
    """One line per latent: ``v <- parents`` in trace order, fill-in parents marked ``*``.

    Example:
        >>> g = ModelGraph.from_edges([("z", "x")], observed={"x"})
        >>> print(format_parents(g, g.invert()))
          z <- x
    """
    key = _order_key(graph)
    lines = []
    for v in graph.latent:
        parents = sorted(dag.predecessors(v), key=key)
        marked = [f"{u}{'*' if dag.edges[u, v].get('fill') else ''}" for u in parents]
        lines.append(f"  {v} <- {', '.join(marked) or '(nothing)'}")
    return "\n".join(lines) if lines else "  (no latent sites)"


def method_table(graph: ModelGraph, *, order: str = "auto") -> str:
    """Edge counts and the faithful/minimal verdicts of each inversion method.

    Minimality (no edge can be dropped) is only defined for a faithful graph: ``n/a`` otherwise.

    Example:
        >>> g = ModelGraph.from_edges([("z1", "x"), ("z2", "x")], observed={"x"})
        >>> print(method_table(g))  # doctest: +NORMALIZE_WHITESPACE
        method     edges  fill-in  faithful  minimal
        nami           3        1  yes       yes
        heuristic      2        0  no        n/a
        full           3        1  yes       yes
    """
    from faithful_guides.graph.verify import is_faithful, is_minimal

    rows = [("method", "edges", "fill-in", "faithful", "minimal")]
    for method in METHODS:
        inv = graph.invert(method=method, order=order)
        n_fill = sum(1 for *_, f in inv.edges(data="fill") if f)
        faithful = is_faithful(graph.dag, inv, graph.observed)
        minimal = _yes(is_minimal(graph.dag, inv, graph.observed)) if faithful else "n/a"
        row = (method, inv.number_of_edges(), n_fill, _yes(faithful), minimal)
        rows.append(tuple(str(c) for c in row))
    return _table(rows, right=(1, 2))


def _yes(verdict: Any) -> str:
    return "yes" if verdict else "no"


def _table(rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def fmt(r: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join(fmt(r) for r in rows)


def inspect_model(
    target: str,
    *,
    backend: str | None = None,
    png: str | Path | None = None,
    max_edges: int = 500,
    out: TextIO | None = None,
) -> ModelGraph:
    """What ``python -m faithful_guides inspect`` does; returns the traced graph.

    Example:
        >>> graph = inspect_model("model.py:model", png="model.png")  # doctest: +SKIP
    """
    out = out or sys.stdout
    model, path = load_model(target)
    backend = backend or detect_backend(path)
    graph = trace(model, backend)
    inverse = graph.invert()
    n_fill = sum(1 for *_, f in inverse.edges(data="fill") if f)
    print(
        f"{target} traced with {backend}: {len(graph.sites)} sites, "
        f"{len(graph.latent)} latent, {len(graph.observed)} observed\n",
        file=out,
    )
    print(graph.summary(), file=out)
    print(f"\nforward edges ({graph.dag.number_of_edges()}):", file=out)
    print(format_edges(graph, graph.dag, limit=max_edges), file=out)
    print(
        f"\nnami inverse ({inverse.number_of_edges()} edges, {n_fill} fill-in marked *):", file=out
    )
    print(format_edges(graph, inverse, limit=max_edges), file=out)
    print("\n" + method_table(graph), file=out)
    if png is not None:
        graph.draw(inverse=inverse, path=png, title=f"{target} ({backend})")
        print(f"\nwrote {png}", file=out)
    return graph


# ----------------------------------------------------------------------------- demo


def _student(host: str) -> tuple[Callable[..., Any], tuple, dict]:
    from faithful_guides.zoo import student

    return student(host)


def _tree5(host: str) -> tuple[Callable[..., Any], tuple, dict]:
    from faithful_guides.zoo import binary_tree

    return binary_tree(host, 5)


#: The models the demo shows: title -> builder taking a host name, returning
#: ``(model, args, kwargs)`` like the zoo's builders.
DEMO_MODELS: dict[str, Callable[[str], tuple[Callable[..., Any], tuple, dict]]] = {
    "student network": _student,
    "binary tree, depth 5": _tree5,
}


@dataclass
class DemoState:
    """What the demo's sections share: options, output, and what earlier sections made.

    Attributes:
        hosts: the hosts to run (``"pyro"``, ``"numpyro"``).
        png: where the picture goes (``None``: no picture).
        out: the text stream.
        graphs: ``graphs[title][host]``, the traced :class:`ModelGraph` of each demo model.
        extra: free room for later sections (e.g. trained guides).
    """

    hosts: tuple[str, ...] = HOSTS
    png: str | Path | None = "demo_graphs.png"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    graphs: dict[str, dict[str, ModelGraph]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def say(self, *lines: str) -> None:
        print(*lines, sep="\n", file=self.out)


def demo_structures(state: DemoState) -> None:
    """Trace each demo model in each host; print the sites, the NaMI inverse and the table."""
    for title, build in DEMO_MODELS.items():
        for host_name in state.hosts:
            model, args, kwargs = build(host_name)
            graph = trace(model, host_name, *args, **kwargs)
            state.graphs.setdefault(title, {})[host_name] = graph
            inverse = graph.invert()
            observed = sorted(graph.observed, key=_order_key(graph))
            state.say(
                f"== {title} ({host_name}) ==",
                f"latent sites ({len(graph.latent)}): {' '.join(graph.latent)}",
                f"observed sites ({len(observed)}): {' '.join(observed)}",
                f"nami inverse ({inverse.number_of_edges()} edges), parents of each latent "
                "(* = fill-in):",
                format_parents(graph, inverse),
                "",
                method_table(graph),
                "",
            )
        hosts = list(state.graphs.get(title, {}).values())
        if len(hosts) > 1:
            same = all(nx.utils.edges_equal(hosts[0].dag.edges, g.dag.edges) for g in hosts[1:])
            state.say(f"{title}: {' and '.join(state.hosts)} graphs identical: {_yes(same)}", "")


def demo_picture(state: DemoState) -> None:
    """Forward and inverse graph of each demo model, one row per model, in one PNG."""
    if state.png is None or not state.graphs:
        return
    from faithful_guides.graph.draw import draw_many

    rows = []
    for title, per_host in state.graphs.items():
        host, graph = next(iter(per_host.items()))
        rows.append((f"{title} ({host})", graph))
    fig = draw_many(rows)
    fig.savefig(state.png, dpi=100, bbox_inches="tight")
    state.say(f"wrote {state.png}")


def demo_guides(state: DemoState) -> None:
    """Swap AutoNormal for AutoFaithfulMADE on a depth-4 tree; print the KL table."""
    from faithful_guides.exact import LinearGaussianBN
    from faithful_guides.graph.inversion import invert
    from faithful_guides.zoo.experiments import guide_comparison, tree_weights

    bn = LinearGaussianBN.tree(4, tree_weights(4))
    floor = bn.structural_kl(invert(bn.dag, bn.observed, method="heuristic"))
    state.say(
        "== guides on a depth-4 linear-Gaussian tree (7 latents, weights U[0.5, 2]) ==",
        "KL(q || exact posterior) in nats; AutoNormal is fitted to one observation x,",
        "AutoFaithfulMADE is trained once on fresh rows and then applied with no more steps.",
        f"structural floor of the heuristic inverse: {floor:.3f}; of nami: 0",
        "",
    )
    for host in state.hosts:
        steps = 3000  # the same on both hosts: amortized training needs them
        state.say(f"[{host}] {steps} steps each")
        state.say(f"{'guide':<28} {'trained on':<11} {'KL on x':>8} {'KL on new x':>12}")
        for guide, data, kl_x, kl_new in guide_comparison(host, steps=steps):
            new = "-" if kl_new != kl_new else f"{kl_new:.3f}"  # NaN: not amortized
            state.say(f"{guide:<28} {data:<11} {kl_x:>8.3f} {new:>12}")
        state.say("")


#: The demo, section by section; each takes the shared :class:`DemoState`. Extend by
#: appending.
DEMO_SECTIONS: list[Callable[[DemoState], None]] = [demo_structures, demo_picture, demo_guides]


def demo(
    *,
    hosts: Sequence[str] = HOSTS,
    png: str | Path | None = "demo_graphs.png",
    out: TextIO | None = None,
    sections: Sequence[Callable[[DemoState], None]] | None = None,
) -> DemoState:
    """Run ``sections`` (default: every section of :data:`DEMO_SECTIONS`) and return their
    shared state.

    Example:
        >>> sorted(demo(hosts=("pyro",), png=None).graphs)  # doctest: +SKIP
        ['binary tree, depth 5', 'student network']
    """
    state = DemoState(hosts=tuple(hosts), png=png, out=out or sys.stdout)
    for section in DEMO_SECTIONS if sections is None else sections:
        section(state)
    return state


# ----------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m faithful_guides",
        description="Faithful inverses of Pyro and NumPyro models (NaMI).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="trace a model and print its graph and faithful inverse")
    p.add_argument("target", metavar="FILE.py:FUNCTION", help="a model taking no arguments")
    p.add_argument("--backend", choices=HOSTS, help="the host (default: from the file's imports)")
    p.add_argument("--png", metavar="OUT.png", help="also draw forward and inverse graphs")
    p.add_argument("--max-edges", type=int, default=500, help="edges listed (0: all)")
    d = sub.add_parser("demo", help="the README demo: zoo models in both hosts")
    d.add_argument("--png", default="demo_graphs.png", help="where to save the picture")
    d.add_argument("--hosts", nargs="+", choices=HOSTS, default=list(HOSTS))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m faithful_guides`` and ``faithful-guides``; returns the exit
    code (2 for bad input, with the message on stderr)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "inspect":
            inspect_model(args.target, backend=args.backend, png=args.png, max_edges=args.max_edges)
        else:
            demo(hosts=args.hosts, png=args.png)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
