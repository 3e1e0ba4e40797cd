r"""Pictures of a model's forward graph next to its faithful inverse.

Pure matplotlib + networkx (no system graphviz). Nodes are placed in layers from
:func:`networkx.topological_generations` of the forward graph (roots on top), and both
panels share the positions, so the inverse reads as "the same nodes, rewired": observed
sites are shaded grey, latents white, and inverse edges that are not edges of the forward
graph in either direction (the fill-in of moralization and elimination) are dashed red.

Every edge artist carries a ``gid`` (``"forward"``, ``"inverse"`` or ``"fill-in"``) and
:func:`edge_groups` returns the same grouping as data, so tests and users can check what
was drawn.

Example:
    >>> from faithful_guides import ModelGraph
    >>> g = ModelGraph.from_edges([("z1", "x"), ("z2", "x")], observed={"x"})
    >>> fig = draw(g)                    # doctest: +SKIP
    >>> fig = g.draw(path="graphs.png")  # the same, saved as a PNG  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from faithful_guides.graph.model_graph import ModelGraph

__all__ = ["LABEL_LIMIT", "draw", "edge_groups", "layered_layout"]

#: Graphs with more nodes than this are drawn without labels.
LABEL_LIMIT = 60
#: Graphs with more edges than this get plain lines instead of arrow patches (speed).
ARROW_LIMIT = 600

_OBSERVED = "#9e9e9e"
_LATENT = "#ffffff"
_FORWARD = "#333333"
_INVERSE = "#1f77b4"
_FILL = "#d62728"

Pos = dict[Hashable, tuple[float, float]]


def layered_layout(dag: nx.DiGraph, key: Callable[[Hashable], Any] | None = None) -> Pos:
    """Positions in rows by topological generation (roots at ``y = 0``, then downwards).

    Rows are ordered by barycentre sweeps (down, up, down: each node goes to the mean rank of
    its neighbours in the row above or below; ties by ``key``, default the graph's node
    order) and spread evenly over the width of the widest row, so trees look like trees.

    Example:
        >>> pos = layered_layout(nx.DiGraph([("a", "b"), ("a", "c")]))
        >>> pos["a"][1] > pos["b"][1], pos["b"][0] < pos["a"][0] < pos["c"][0]
        (True, True)
    """
    if key is None:
        index = {n: i for i, n in enumerate(dag.nodes)}
        key = index.__getitem__
    layers = [sorted(layer, key=key) for layer in nx.topological_generations(dag)]
    rank = {n: (i + 0.5) / len(layer) for layer in layers for i, n in enumerate(layer)}

    def sweep(rows: list[list[Hashable]], neighbours: Callable[[Hashable], Iterable]) -> None:
        for row in rows:

            def barycentre(n: Hashable, row: list[Hashable] = row) -> tuple[float, Any]:
                rs = [rank[m] for m in neighbours(n)]
                return (sum(rs) / len(rs) if rs else rank[n], key(n))

            row.sort(key=barycentre)
            rank.update({n: (i + 0.5) / len(row) for i, n in enumerate(row)})

    sweep(layers[1:], dag.predecessors)
    sweep(layers[-2::-1], dag.successors)
    sweep(layers[1:], dag.predecessors)
    widest = max((len(layer) for layer in layers), default=1)
    return {n: ((rank[n] - 0.5) * widest, -float(d)) for d, row in enumerate(layers) for n in row}


def edge_groups(
    forward: nx.DiGraph, inverse: nx.DiGraph
) -> dict[str, list[tuple[Hashable, Hashable]]]:
    """The edges :func:`draw` draws, by style: ``forward``, ``inverse`` (reused or reversed
    forward edges) and ``fill-in`` (inverse edges absent from the forward graph).

    An inverse edge is fill-in when its ``fill`` attribute says so; without the attribute,
    when neither ``u -> v`` nor ``v -> u`` is a forward edge.

    Example:
        >>> fwd = nx.DiGraph([("z1", "x"), ("z2", "x")])
        >>> inv = nx.DiGraph([("x", "z1"), ("x", "z2"), ("z1", "z2")])
        >>> edge_groups(fwd, inv)["fill-in"]
        [('z1', 'z2')]
    """
    regular, fill = [], []
    for u, v, data in inverse.edges(data=True):
        is_fill = data.get("fill")
        if is_fill is None:
            is_fill = not (forward.has_edge(u, v) or forward.has_edge(v, u))
        (fill if is_fill else regular).append((u, v))
    return {"forward": list(forward.edges()), "inverse": regular, "fill-in": fill}


def draw(
    graph: ModelGraph,
    *,
    method: str = "nami",
    order: str = "auto",
    inverse: nx.DiGraph | None = None,
    ax: Sequence[Axes] | None = None,
    path: str | Path | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw the forward graph and its inverse side by side.

    Args:
        graph: the traced model.
        method, order: passed to :meth:`ModelGraph.invert` (ignored when ``inverse`` is given).
        inverse: an inverse DAG to draw instead of computing one.
        ax: two matplotlib axes to draw into (forward, inverse); a new figure when omitted.
        path: save the figure there as a PNG.
        figsize: size of a new figure in inches (grows with the graph by default).
        title: a figure title (suptitle).

    Returns:
        The matplotlib figure. Edge artists carry ``gid`` ``"forward"``, ``"inverse"`` or
        ``"fill-in"``.

    Example:
        >>> from faithful_guides import ModelGraph
        >>> g = ModelGraph.from_edges([("z", "x")], observed={"x"})
        >>> fig = draw(g, path="z_x.png")  # doctest: +SKIP
    """
    if inverse is None:
        inverse = graph.invert(method=method, order=order)
    forward = graph.dag
    groups = edge_groups(forward, inverse)
    pos = layered_layout(forward, key=_site_order(graph))
    fig, (ax_f, ax_i) = _axes(ax, figsize or _default_size(pos))
    observed = graph.observed
    label = method if method != "nami" else "NaMI"

    _draw_nodes(ax_f, forward, pos, observed)
    _draw_edges(ax_f, forward, pos, groups["forward"], color=_FORWARD, gid="forward")
    ax_f.set_title(f"forward model ({forward.number_of_edges()} edges)")

    _draw_nodes(ax_i, inverse, pos, observed)
    _draw_edges(ax_i, inverse, pos, groups["inverse"], color=_INVERSE, gid="inverse")
    _draw_edges(ax_i, inverse, pos, groups["fill-in"], color=_FILL, gid="fill-in", dashed=True)
    n_fill = len(groups["fill-in"])
    ax_i.set_title(f"{label} inverse ({inverse.number_of_edges()} edges, {n_fill} fill-in)")

    for a in (ax_f, ax_i):
        a.set_axis_off()
        a.margins(0.08)
    _legend(ax_i)
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _default_size(pos: Pos) -> tuple[float, float]:
    if not pos:
        return (8.0, 3.0)
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    width = min(max(max(xs) - min(xs), 5.0) * 0.55 + 1.5, 11.0)
    height = min(max(max(ys) - min(ys), 1.0) * 0.9 + 1.5, 10.0)
    return (2 * width, height)


def _axes(ax: Sequence[Axes] | None, figsize: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    if ax is not None:
        axes = list(ax)
        if len(axes) != 2:
            raise ValueError(f"draw(ax=...) expects two axes (forward, inverse); got {len(axes)}")
        return axes[0].figure, axes
    if "matplotlib.pyplot" in sys.modules:  # the user works with pyplot: let it manage the figure
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize)
    else:  # no pyplot, no GUI backend needed: a bare figure renders with Agg
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
    return fig, list(fig.subplots(1, 2))


def _node_size(n: int) -> float:
    return 600.0 if n <= 20 else 350.0 if n <= LABEL_LIMIT else max(20.0, 9000.0 / n)


def _draw_nodes(ax: Axes, g: nx.DiGraph, pos: Pos, observed: Iterable[Hashable]) -> None:
    observed = set(observed)
    nodes = list(g.nodes)
    size = _node_size(len(nodes))
    colors = [_OBSERVED if n in observed else _LATENT for n in nodes]
    nx.draw_networkx_nodes(
        g, pos, nodelist=nodes, ax=ax, node_color=colors, edgecolors="black", node_size=size
    )
    if len(nodes) <= LABEL_LIMIT:
        nx.draw_networkx_labels(g, pos, ax=ax, font_size=9 if len(nodes) <= 20 else 7)


def _draw_edges(
    ax: Axes,
    g: nx.DiGraph,
    pos: Pos,
    edges: list[tuple[Hashable, Hashable]],
    *,
    color: str,
    gid: str,
    dashed: bool = False,
) -> None:
    if not edges:
        return
    size = _node_size(g.number_of_nodes())
    style = "--" if dashed else "-"
    if g.number_of_edges() > ARROW_LIMIT:  # one LineCollection: fast for big graphs
        coll = nx.draw_networkx_edges(
            g, pos, edgelist=edges, ax=ax, edge_color=color, style=style, arrows=False, width=0.6
        )
        coll.set_gid(gid)
        return
    # edges within a row, or skipping rows, are bent so that they do not run through nodes
    straight = [e for e in edges if abs(pos[e[0]][1] - pos[e[1]][1]) == 1.0]
    bent = [e for e in edges if abs(pos[e[0]][1] - pos[e[1]][1]) != 1.0]
    for group, conn in ((straight, "arc3"), (bent, "arc3,rad=0.25")):
        if not group:
            continue
        patches = nx.draw_networkx_edges(
            g,
            pos,
            edgelist=group,
            ax=ax,
            edge_color=color,
            style=style,
            arrows=True,
            arrowsize=10,
            node_size=size,
            connectionstyle=conn,
            width=1.2 if dashed else 1.0,
        )
        for p in patches:
            p.set_gid(gid)


def _legend(ax: Axes) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", mfc=_LATENT, mec="black", ms=9, label="latent"),
        Line2D([], [], marker="o", ls="", mfc=_OBSERVED, mec="black", ms=9, label="observed"),
        Line2D([], [], color=_FORWARD, label="forward edge"),
        Line2D([], [], color=_INVERSE, label="inverse edge"),
        Line2D([], [], color=_FILL, ls="--", label="fill-in edge"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)


def _site_order(graph: ModelGraph) -> Callable[[Hashable], tuple[int, str]]:
    def key(n: Hashable) -> tuple[int, str]:
        site = graph.sites.get(n)  # type: ignore[call-overload]
        return (site.order if site is not None else -1, str(n))

    return key
