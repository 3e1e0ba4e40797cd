r"""Pictures of a model's forward graph next to its faithful inverse.

Pure matplotlib + networkx (no system graphviz). The picture is a plate diagram:

* nodes are placed in layers from :func:`networkx.topological_generations` of the forward
  graph (roots on top), ordered inside each layer by barycentre sweeps (crossing reduction,
  :func:`layered_layout`), and both panels share the positions, so the inverse reads as "the
  same nodes, rewired";
* each node is an ellipse sized to its label: the site name (names longer than
  :data:`NAME_LIMIT` characters are cut with an ellipsis and listed in full in a "full names"
  legend under the forward panel) and, for a site whose value is not a scalar, the shape of one
  plate element under the name (``"s\n(2517,)"``); observed sites are shaded grey;
* every plate is a rounded box around its sites labelled with its name and size
  (``"data  N=100"``); nested plates are nested boxes, plates side by side separate boxes (the
  layout packs the sites of a plate into one horizontal band, so that no other site falls
  inside the box);
* inverse edges that are not edges of the forward graph in either direction (the fill-in of
  moralization and elimination) are dashed red, and a legend says so;
* the figure grows with the number of nodes and layers (a layout unit is :data:`UNIT`
  inches), and titles sit in margins kept free for them, so they never cover the drawing.

Artists carry a ``gid`` so that tests and users can check what was drawn: edges
``"forward"``, ``"inverse"`` or ``"fill-in"`` (:func:`edge_groups` returns the same grouping as
data), nodes ``"node:<name>"`` with labels ``"label:<name>"``, plate boxes ``"plate:<name>"``
with labels ``"plate-label:<name>"``, and the legends ``"styles"`` and ``"names"``.

Example:
    >>> from faithful_guides import ModelGraph
    >>> g = ModelGraph.from_edges([("z1", "x"), ("z2", "x")], observed={"x"})
    >>> fig = draw(g)
    >>> sorted(t.get_text() for t in fig.axes[0].texts)
    ['x', 'z1', 'z2']
    >>> fig.axes[1].get_title()
    'faithful inverse (NaMI)\n(3 edges, 1 fill-in)'
    >>> fig = g.draw(path="graphs.png")  # the same, saved as a PNG  # doctest: +SKIP
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from faithful_guides.graph.model_graph import ModelGraph

__all__ = [
    "LABEL_LIMIT",
    "NAME_LIMIT",
    "UNIT",
    "draw",
    "draw_many",
    "edge_groups",
    "layered_layout",
]

#: Graphs with more nodes than this are drawn without node labels (small dots).
LABEL_LIMIT = 100
#: Graphs with more edges than this get plain lines instead of arrow patches (speed).
ARROW_LIMIT = 600
#: Node labels longer than this many characters are cut with an ellipsis.
NAME_LIMIT = 14
#: Inches per layout unit in a figure :func:`draw` makes itself.
UNIT = 0.6
#: Widest panel, in inches, of a figure :func:`draw` makes (bigger layouts are scaled down).
MAX_PANEL = 40.0

_FONT = 9.0  # node labels, points
_PLATE_FONT = 8.0
_OBSERVED = "#c8c8c8"
_LATENT = "#ffffff"
_FORWARD = "#333333"
_INVERSE = "#1f77b4"
_FILL = "#d62728"
_PLATE = "#555555"

# geometry, in layout units (UNIT inches each)
_HGAP = 0.35  # between neighbouring nodes / boxes of a layer
_MIN_GAP = 0.7  # between the bottom of one layer and the top of the next
_ARROW_ROOM = 0.45  # free vertical room for arrows between stacked plate edges
_PAD_X = 0.2  # plate box around its content, left and right
_PAD_TOP = 0.18
_PAD_BOTTOM = 0.14  # below the content, plus the label's height
_ROUND = 0.12  # corner radius of plate boxes

Pos = dict[Hashable, tuple[float, float]]
Rect = tuple[float, float, float, float]  # x0, y0, x1, y1


def layered_layout(dag: nx.DiGraph, key: Callable[[Hashable], Any] | None = None) -> Pos:
    """Positions in rows by topological generation (roots at ``y = 0``, then downwards).

    Rows are ordered by barycentre sweeps (down, up, down: each node goes to the mean rank of
    its neighbours in the row above or below; ties by ``key``, default the graph's node
    order) and spread evenly over the width of the widest row, so trees look like trees.
    :func:`draw` starts from these positions and then packs plates into boxes.

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
    """Draw the forward graph and its inverse side by side, as plate diagrams.

    Args:
        graph: the traced model.
        method, order: passed to :meth:`ModelGraph.invert` (ignored when ``inverse`` is given).
        inverse: an inverse DAG to draw instead of computing one.
        ax: two matplotlib axes to draw into (forward, inverse); a new figure when omitted.
            Labels are scaled down to fit when the axes are smaller than the layout needs.
        path: save the figure there as a PNG.
        figsize: size of a new figure in inches (by default it grows with the graph, so that
            labels keep their size; a given size scales the drawing to fit).
        title: a figure title (suptitle).

    Returns:
        The matplotlib figure. Edge artists carry ``gid`` ``"forward"``, ``"inverse"`` or
        ``"fill-in"``; see the module docstring for the other gids.

    Example:
        >>> from faithful_guides import ModelGraph
        >>> g = ModelGraph.from_edges([("z", "x")], observed={"x"})
        >>> fig = draw(g, path="z_x.png")  # doctest: +SKIP
    """
    if inverse is None:
        inverse = graph.invert(method=method, order=order)
    scene = _Scene.build(graph, inverse)
    groups = edge_groups(graph.dag, inverse)
    titles = _titles(graph, inverse, method, len(groups["fill-in"]))
    own = ax is None
    if own:
        frame = _frame(scene, title, _title_width(titles), figsize)
        fig = _new_figure((frame.width, frame.height))
        ax_f, ax_i = frame.add_axes(fig)
    else:
        axes = list(ax)  # type: ignore[arg-type]
        if len(axes) != 2:
            raise ValueError(f"draw(ax=...) expects two axes (forward, inverse); got {len(axes)}")
        ax_f, ax_i = axes
        fig = ax_f.figure
    _render(graph, inverse, scene, (ax_f, ax_i), titles, title, title_size=12 if own else None)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def draw_many(
    graphs: Sequence[tuple[str, ModelGraph]],
    *,
    method: str = "nami",
    order: str = "auto",
    path: str | Path | None = None,
) -> Figure:
    """Several models in one figure: one row (forward, inverse) per ``(title, graph)``, each
    row at the size :func:`draw` would give it alone (what ``python -m faithful_guides demo``
    saves).

    Example:
        >>> from faithful_guides import ModelGraph
        >>> a = ModelGraph.from_edges([("z", "x")], observed={"x"})
        >>> b = ModelGraph.from_edges([("z1", "x"), ("z2", "x")], observed={"x"})
        >>> fig = draw_many([("chain", a), ("collider", b)])
        >>> [sub.get_suptitle() for sub in fig.subfigs]
        ['chain', 'collider']
    """
    rows = []
    for title, graph in graphs:
        inverse = graph.invert(method=method, order=order)
        scene = _Scene.build(graph, inverse)
        n_fill = len(edge_groups(graph.dag, inverse)["fill-in"])
        titles = _titles(graph, inverse, method, n_fill)
        rows.append(
            (title, graph, inverse, scene, titles, _frame(scene, title, _title_width(titles)))
        )
    width = max((r[-1].width for r in rows), default=4.0)
    heights = [r[-1].height for r in rows] or [1.0]
    fig = _new_figure((width, sum(heights)))
    subs = fig.subfigures(len(heights), 1, height_ratios=heights, squeeze=False)[:, 0]
    for sub, (title, graph, inverse, scene, titles, frame) in zip(subs, rows, strict=False):
        frame.left += (width - frame.width) / 2  # each row centred under its title
        frame.width = width
        axes = frame.add_axes(sub)
        _render(graph, inverse, scene, axes, titles, title, title_size=12)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _render(
    graph: ModelGraph,
    inverse: nx.DiGraph,
    scene: _Scene,
    axes: Sequence[Axes],
    titles: tuple[str, str],
    title: str | None,
    *,
    title_size: float | None,
) -> None:
    ax_f, ax_i = axes
    groups = edge_groups(graph.dag, inverse)
    factor = _fit(scene, ax_f)
    _panel(ax_f, scene, graph.dag, [(groups["forward"], _FORWARD, "forward", False)], factor)
    edges = [
        (groups["inverse"], _INVERSE, "inverse", False),
        (groups["fill-in"], _FILL, "fill-in", True),
    ]
    _panel(ax_i, scene, inverse, edges, factor)
    for a, t in zip(axes, titles, strict=True):
        a.set_title(t, fontsize=title_size)
    _style_legend(ax_i, bool(scene.plates))
    _names_legend(ax_f, scene)
    if title:
        ax_f.figure.suptitle(title, fontsize=13)


# ----------------------------------------------------------------------------- layout


@dataclass
class _Block:
    """A plate's content (or the whole graph, ``key == ()``), laid out in its own x-frame."""

    key: tuple[str, ...]
    nodes: list[Hashable] = field(default_factory=list)  # every node inside, nested ones too
    lo: int = 0  # first and last layer
    hi: int = 0
    width: float = 0.0
    x: dict[Hashable, float] = field(default_factory=dict)  # node centres, from the left edge
    left: dict[tuple[str, ...], float] = field(default_factory=dict)  # nested blocks' left edges
    ext_top: float = 0.0  # how far the box reaches above / below its first / last layer
    ext_bottom: float = 0.0


@dataclass
class _Scene:
    """Everything both panels share: node geometry, positions and plate boxes."""

    pos: Pos
    size: dict[Hashable, tuple[float, float]]  # node ellipse width, height
    text: dict[Hashable, str]
    full_names: dict[str, str]  # cut label -> full name
    observed: frozenset
    plates: dict[str, tuple[Rect, str]]  # plate name -> box, label
    bounds: Rect
    labelled: bool
    rads: dict[tuple[Hashable, Hashable], float] = field(default_factory=dict)  # edge routes
    names: dict[Hashable, int] = field(default_factory=dict)
    centres: Any = None  # node centres and inflated semi-axes as arrays, for routing
    axes: Any = None

    @classmethod
    def build(cls, graph: ModelGraph, inverse: nx.DiGraph | None = None) -> _Scene:
        """Lay out ``graph``; the bounds hold the bent edges of ``graph`` and ``inverse``."""
        dag = graph.dag
        key = _site_order(graph)
        layer = {n: d for d, row in enumerate(nx.topological_generations(dag)) for n in row}
        labelled = dag.number_of_nodes() <= LABEL_LIMIT
        text, full = _labels(graph, key) if labelled else ({}, {})
        size = {n: _node_size(text.get(n)) for n in dag}
        rough = layered_layout(dag, key=key)
        paths, plate_labels = _plate_paths(graph)

        # the block tree: a trie over the nodes' plate paths (outermost plate first)
        blocks: dict[tuple[str, ...], _Block] = {(): _Block(())}
        direct: dict[tuple[str, ...], list[Hashable]] = {(): []}
        for n in sorted(dag, key=key):
            path = paths.get(n, ())
            for i in range(1, len(path) + 1):
                if path[:i] not in blocks:
                    blocks[path[:i]] = _Block(path[:i])
                    direct[path[:i]] = []
            direct[path].append(n)
        children: dict[tuple[str, ...], list[tuple[str, ...]]] = {k: [] for k in blocks}
        for k in blocks:
            if k:
                children[k[:-1]].append(k)
        slot = sum(w for w, _ in size.values()) / max(len(size), 1) + _HGAP

        def pack(block: _Block) -> None:
            items = []  # (desired centre, lo, hi, width, node or block)
            for n in direct[block.key]:
                block.nodes.append(n)
                items.append((rough[n][0] * slot, layer[n], layer[n], size[n][0], n))
            for k in children[block.key]:
                child = blocks[k]
                pack(child)
                block.nodes.extend(child.nodes)
                centre = sum(rough[n][0] for n in child.nodes) / len(child.nodes) * slot
                items.append((centre, child.lo, child.hi, child.width, child))
            items.sort(key=lambda it: (it[0], it[1]))
            frontier: dict[int, float] = {}
            placed = []
            for centre, lo, hi, width, item in items:
                left = centre - width / 2
                for d in range(lo, hi + 1):
                    if d in frontier:
                        left = max(left, frontier[d] + _HGAP)
                for d in range(lo, hi + 1):
                    frontier[d] = left + width
                placed.append((left, width, item))
            x0 = min(left for left, _, _ in placed)
            inner = max(left + width for left, width, _ in placed) - x0
            block.lo = min(layer[n] for n in block.nodes)
            block.hi = max(layer[n] for n in block.nodes)
            pad = _PAD_X if block.key else 0.0
            width = inner + 2 * pad
            if block.key:
                label_w = _text_size(plate_labels[block.key[-1]], _PLATE_FONT)[0] / UNIT
                width = max(width, label_w + 2 * _PAD_X)
            shift = (width - inner) / 2 - x0
            block.width = width
            for left, w, item in placed:
                if isinstance(item, _Block):
                    block.left[item.key] = left + shift
                    for n, x in item.x.items():
                        block.x[n] = left + shift + x
                    for k, sub in item.left.items():
                        block.left[k] = left + shift + sub
                else:
                    block.x[item] = left + shift + w / 2
            if block.key:
                label_h = _text_size(plate_labels[block.key[-1]], _PLATE_FONT)[1] / UNIT
                tops = [blocks[k].ext_top for k in children[block.key] if blocks[k].lo == block.lo]
                bots = [
                    blocks[k].ext_bottom for k in children[block.key] if blocks[k].hi == block.hi
                ]
                block.ext_top = _PAD_TOP + max(tops, default=0.0)
                block.ext_bottom = _PAD_BOTTOM + label_h + max(bots, default=0.0)

        root = blocks[()]
        pack(root)

        # layer heights: room for the nodes, plus the plate edges that pass between layers
        depth = max(layer.values(), default=-1) + 1
        half = [0.0] * depth
        for n, d in layer.items():
            half[d] = max(half[d], size[n][1] / 2)
        ys = [0.0] * depth
        for d in range(1, depth):
            below = max(
                (b.ext_bottom for b in blocks.values() if b.key and b.hi == d - 1), default=0
            )
            above = max((b.ext_top for b in blocks.values() if b.key and b.lo == d), default=0)
            gap = max(_MIN_GAP, below + above + _ARROW_ROOM if below or above else _MIN_GAP)
            ys[d] = ys[d - 1] - half[d - 1] - gap - half[d]
        pos = {n: (root.x[n], ys[layer[n]]) for n in dag}

        plates: dict[str, tuple[Rect, str]] = {}
        for k, left in root.left.items():
            b = blocks[k]
            rect = (
                left,
                ys[b.hi] - half[b.hi] - b.ext_bottom,
                left + b.width,
                ys[b.lo] + half[b.lo] + b.ext_top,
            )
            name = k[-1]
            if name in plates:  # crossing plates: one box around all of the plate's blocks
                rect = _union(plates[name][0], rect)
            plates[name] = (rect, plate_labels[name])

        rects = [
            (x - size[n][0] / 2, y - size[n][1] / 2, x + size[n][0] / 2, y + size[n][1] / 2)
            for n, (x, y) in pos.items()
        ]
        rects += [r for r, _ in plates.values()]
        bounds = _margin(_union(*rects) if rects else (0.0, 0.0, 1.0, 1.0), 0.25)
        scene = cls(pos, size, text, full, graph.observed, plates, bounds, labelled)
        scene.bounds = _limits(scene, [dag] if inverse is None else [dag, inverse])
        return scene

    def extend(self, points: Iterable[tuple[float, float]]) -> Rect:
        """The bounds, grown to hold ``points`` (the bulges of bent edges)."""
        x0, y0, x1, y1 = self.bounds
        for x, y in points:
            x0, x1, y0, y1 = (
                min(x0, x - 0.15),
                max(x1, x + 0.15),
                min(y0, y - 0.15),
                max(y1, y + 0.15),
            )
        return (x0, y0, x1, y1)


def _site_order(graph: ModelGraph) -> Callable[[Hashable], tuple[int, str]]:
    def key(n: Hashable) -> tuple[int, str]:
        site = graph.sites.get(n)  # type: ignore[call-overload]
        return (site.order if site is not None else -1, str(n))

    return key


def _plate_paths(graph: ModelGraph) -> tuple[dict[Hashable, tuple[str, ...]], dict[str, str]]:
    """Each site's plates, outermost (most sites) first, and each plate's label."""
    count: dict[str, int] = {}
    first: dict[str, int] = {}
    labels: dict[str, str] = {}
    for site in graph.sites.values():
        for p in site.plates:
            count[p.name] = count.get(p.name, 0) + 1
            first.setdefault(p.name, len(first))
            if p.name not in labels:
                sub = f" (subsample {p.subsample_size})" if p.subsampled else ""
                labels[p.name] = f"{p.name}  N={p.size}{sub}"
    paths = {
        n: tuple(sorted(site.plate_names, key=lambda p: (-count[p], first[p])))
        for n, site in graph.sites.items()
    }
    return paths, labels


def _element_shape(site: Any) -> tuple[int, ...]:
    """The shape of one plate element of the site's value (plate dimensions dropped)."""
    batch = list(site.batch_shape)
    drop = {
        len(batch) + p.dim for p in site.plates if p.dim is not None and -len(batch) <= p.dim < 0
    }
    return tuple(s for i, s in enumerate(batch) if i not in drop) + tuple(site.event_shape)


def _labels(graph: ModelGraph, key: Callable) -> tuple[dict[Hashable, str], dict[str, str]]:
    """Node label texts (name, and the element shape when not scalar) and the cut names."""
    text: dict[Hashable, str] = {}
    full: dict[str, str] = {}
    for n in sorted(graph.dag, key=key):
        name = str(n)
        if len(name) > NAME_LIMIT:
            short, i = name[: NAME_LIMIT - 1] + "\u2026", 1
            while short in full:  # two long names with one prefix
                i += 1
                short = f"{name[: NAME_LIMIT - 1 - len(str(i))]}\u2026{i}"
            full[short] = name
            name = short
        site = graph.sites.get(n)  # type: ignore[call-overload]
        shape = _element_shape(site) if site is not None else ()
        text[n] = f"{name}\n{shape}" if shape else name
    return text, full


def _text_size(text: str, fontsize: float) -> tuple[float, float]:
    """Width and height in inches of ``text`` (one line) at ``fontsize``."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties(size=fontsize)
    w, _, _ = text_to_path.get_text_width_height_descent(text, prop, ismath=False)
    return w / 72.0, fontsize * 1.25 / 72.0


def _node_size(text: str | None) -> tuple[float, float]:
    """Width and height (layout units) of an ellipse that holds ``text`` at :data:`_FONT`."""
    if text is None:
        return (0.3, 0.3)
    lines = text.split("\n")
    tw = max(_text_size(line, _FONT)[0] for line in lines) + 0.08  # inches, with padding
    th = len(lines) * _FONT * 1.2 / 72.0 + 0.04
    b = max(0.21, th / 2 * 1.3)  # semi-axes: the text's corners lie inside the ellipse
    a = max(b, tw / 2 / math.sqrt(1.0 - (th / 2 / b) ** 2))
    return (2 * a / UNIT, 2 * b / UNIT)


def _union(*rects: Rect) -> Rect:
    return (
        min(r[0] for r in rects),
        min(r[1] for r in rects),
        max(r[2] for r in rects),
        max(r[3] for r in rects),
    )


def _margin(r: Rect, m: float) -> Rect:
    return (r[0] - m, r[1] - m, r[2] + m, r[3] + m)


# ----------------------------------------------------------------------------- figure


_RADS = (0.0, 0.15, -0.15, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6)


def _bent(scene: _Scene, u: Hashable, v: Hashable) -> float:
    """The arc3 ``rad`` of the edge ``u -> v``: the least bent of a few arcs that passes
    through the fewest other nodes (straight when nothing is in the way)."""
    import numpy as np

    if (u, v) in scene.rads:
        return scene.rads[(u, v)]
    if scene.centres is None:
        names = list(scene.pos)
        scene.names = {n: i for i, n in enumerate(names)}
        scene.centres = np.array([scene.pos[n] for n in names], dtype=float)
        scene.axes = np.array([scene.size[n] for n in names], dtype=float) / 2 + 0.1
    a, b = np.array(scene.pos[u], dtype=float), np.array(scene.pos[v], dtype=float)
    d = b - a
    perp = np.array([d[1], -d[0]])
    t = np.linspace(0.06, 0.94, 23)[:, None]
    others = np.ones(len(scene.centres), dtype=bool)
    others[[scene.names[u], scene.names[v]]] = False
    centres, axes = scene.centres[others], scene.axes[others]
    best, best_score = 0.0, math.inf
    for rad in _RADS:
        c = (a + b) / 2 + rad * perp
        pts = (1 - t) ** 2 * a + 2 * (1 - t) * t * c + t**2 * b  # (23, 2)
        inside = (((pts[:, None, :] - centres[None]) / axes[None]) ** 2).sum(-1) < 1.0
        score = inside.sum() + abs(rad)
        if score < best_score:
            best, best_score = rad, score
    scene.rads[(u, v)] = best
    return best


def _bulge(scene: _Scene, u: Hashable, v: Hashable, rad: float) -> tuple[float, float]:
    """The middle of an arc3 edge (a quadratic Bézier curve; equal aspect)."""
    (x0, y0), (x1, y1) = scene.pos[u], scene.pos[v]
    cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
    return (0.25 * x0 + 0.5 * cx + 0.25 * x1, 0.25 * y0 + 0.5 * cy + 0.25 * y1)


def _limits(scene: _Scene, graphs: Iterable[nx.DiGraph]) -> Rect:
    points = []
    for g in graphs:
        if g.number_of_edges() > ARROW_LIMIT:  # drawn as straight lines
            continue
        for u, v in g.edges:
            rad = _bent(scene, u, v)
            if rad:
                points.append(_bulge(scene, u, v, rad))
    return scene.extend(points)


@dataclass
class _Frame:
    """Where a figure of one graph puts things, in inches."""

    width: float
    height: float
    panel: tuple[float, float]  # width, height of each panel
    left: float = 0.15
    gap: float = 0.4  # between the panels
    bottom: float = 0.15

    def add_axes(self, fig: Any) -> list[Axes]:
        """The two panels' axes, added to ``fig`` (a figure or a subfigure of this size)."""
        (pw, ph), w, h = self.panel, self.width, self.height
        return [
            fig.add_axes((x / w, self.bottom / h, pw / w, ph / h))
            for x in (self.left, self.left + pw + self.gap)
        ]


def _frame(
    scene: _Scene, title: str | None, title_w: float, figsize: tuple[float, float] | None = None
) -> _Frame:
    """Panels of the layout's size with fixed margins for the titles (above) and the legends
    (right: styles; below: full names); a given ``figsize`` squeezes the panels instead."""
    x0, y0, x1, y1 = scene.bounds
    w_units, h_units = x1 - x0, y1 - y0
    unit = min(UNIT, MAX_PANEL / w_units)
    top = 0.62 + (0.4 if title else 0.0)
    bottom = 0.15 + (0.35 + 0.2 * len(scene.full_names) if scene.full_names else 0.0)
    left, gap, right = 0.15, 0.4, 1.9
    if figsize is None:
        pw, ph = max(w_units * unit, title_w), max(h_units * unit, 1.6)
        width, height = left + 2 * pw + gap + right, bottom + ph + top
    else:
        width, height = figsize
        pw = max((width - left - gap - right) / 2, 0.5)
        ph = max(height - top - bottom, 0.5)
    return _Frame(width, height, (pw, ph), left, gap, bottom)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    if "matplotlib.pyplot" in sys.modules:  # the user works with pyplot: let it manage the figure
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize)
    from matplotlib.figure import Figure  # no pyplot, no GUI backend: a bare figure (Agg)

    return Figure(figsize=figsize)


def _title_width(titles: Iterable[str]) -> float:
    return max(_text_size(line, 12.0)[0] for t in titles for line in t.split("\n")) + 0.3


def _titles(graph: ModelGraph, inverse: nx.DiGraph, method: str, n_fill: int) -> tuple[str, str]:
    label = "faithful inverse (NaMI)" if method == "nami" else f"{method} inverse"
    return (
        f"forward model\n({graph.dag.number_of_edges()} edges)",
        f"{label}\n({inverse.number_of_edges()} edges, {n_fill} fill-in)",
    )


def _fit(scene: _Scene, ax: Axes) -> float:
    """How much labels shrink to fit the layout into a given axes (at most 1)."""
    x0, y0, x1, y1 = scene.bounds
    box = ax.get_window_extent()
    dpi = ax.figure.dpi
    scale = min(box.width / dpi / (x1 - x0), box.height / dpi / (y1 - y0))
    return max(0.2, min(1.0, scale / UNIT))


def _panel(
    ax: Axes,
    scene: _Scene,
    g: nx.DiGraph,
    edge_sets: list[tuple[list, str, str, bool]],
    factor: float,
) -> None:
    from matplotlib.patches import Ellipse, FancyBboxPatch

    for name, ((x0, y0, x1, y1), label) in scene.plates.items():
        box = FancyBboxPatch(
            (x0, y0),
            x1 - x0,
            y1 - y0,
            boxstyle=f"round,pad=0,rounding_size={_ROUND}",
            facecolor="#f7f7f7",
            edgecolor=_PLATE,
            linewidth=1.0,
            zorder=0,
            gid=f"plate:{name}",
        )
        ax.add_patch(box)
        ax.text(
            x1 - 0.1,
            y0 + 0.07,
            label,
            ha="right",
            va="bottom",
            fontsize=_PLATE_FONT * factor,
            color=_PLATE,
            zorder=0.5,
            gid=f"plate-label:{name}",
        )
    patches: dict[Hashable, Patch] = {}
    for n in g:
        (x, y), (w, h) = scene.pos[n], scene.size[n]
        node = Ellipse(
            (x, y),
            w,
            h,
            facecolor=_OBSERVED if n in scene.observed else _LATENT,
            edgecolor="black",
            linewidth=1.0,
            zorder=2,
            gid=f"node:{n}",
        )
        ax.add_patch(node)
        patches[n] = node
        if scene.labelled:
            ax.text(
                x,
                y,
                scene.text[n],
                ha="center",
                va="center",
                multialignment="center",
                fontsize=_FONT * factor,
                linespacing=1.0,
                zorder=3,
                gid=f"label:{n}",
            )
    arrows = g.number_of_edges() <= ARROW_LIMIT
    for edges, color, gid, dashed in edge_sets:
        if not edges:
            continue
        style = "--" if dashed else "-"
        if not arrows:  # one LineCollection: fast for big graphs
            from matplotlib.collections import LineCollection

            segments = [(scene.pos[u], scene.pos[v]) for u, v in edges]
            coll = LineCollection(
                segments, colors=color, linestyles=style, linewidths=0.6, zorder=1
            )
            coll.set_gid(gid)
            ax.add_collection(coll)
            continue
        _arrows(ax, scene, edges, patches, color=color, gid=gid, style=style, factor=factor)
    x0, y0, x1, y1 = scene.bounds
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()


def _arrows(
    ax: Axes,
    scene: _Scene,
    edges: list[tuple[Hashable, Hashable]],
    patches: dict[Hashable, Patch],
    *,
    color: str,
    gid: str,
    style: str,
    factor: float,
) -> None:
    from matplotlib.patches import FancyArrowPatch

    for u, v in edges:
        rad = _bent(scene, u, v)
        arrow = FancyArrowPatch(
            scene.pos[u],
            scene.pos[v],
            patchA=patches.get(u),
            patchB=patches.get(v),
            arrowstyle="-|>",
            mutation_scale=11 * factor,
            connectionstyle=f"arc3,rad={rad}",
            shrinkA=1.0,
            shrinkB=1.0,
            color=color,
            linestyle=style,
            linewidth=1.2 if style == "--" else 1.0,
            zorder=1,
            gid=gid,
        )
        ax.add_patch(arrow)


def _style_legend(ax: Axes, plates: bool) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], marker="o", ls="", mfc=_LATENT, mec="black", ms=9, label="latent"),
        Line2D([], [], marker="o", ls="", mfc=_OBSERVED, mec="black", ms=9, label="observed"),
        Line2D([], [], color=_FORWARD, label="forward edge"),
        Line2D([], [], color=_INVERSE, label="inverse edge"),
        Line2D([], [], color=_FILL, ls="--", label="fill-in edge"),
    ]
    if plates:
        handles.append(Patch(facecolor="#f7f7f7", edgecolor=_PLATE, label="plate  N=size"))
    legend = ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        fontsize=8,
    )
    legend.set_gid("styles")


def _names_legend(ax: Axes, scene: _Scene) -> None:
    """The full names of the labels cut with an ellipsis, under the forward panel."""
    if not scene.full_names:
        return
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls="", label=f"{short} = {name}") for short, name in scene.full_names.items()
    ]
    legend = ax.legend(
        handles=handles,
        title="full names",
        loc="upper left",
        bbox_to_anchor=(0.0, 0.0),
        borderaxespad=0.3,
        fontsize=8,
        title_fontsize=8,
        handlelength=0,
        handletextpad=0,
        alignment="left",
    )
    legend.set_gid("names")
