"""Pictures (``faithful_guides.graph.draw``) and the command line (``faithful_guides.cli``)."""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import networkx as nx
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from faithful_guides import ModelGraph
from faithful_guides.cli import (
    demo,
    demo_picture,
    demo_structures,
    detect_backend,
    load_model,
    main,
)
from faithful_guides.graph import draw as draw_mod
from faithful_guides.graph.draw import draw, draw_many, edge_groups, layered_layout
from faithful_guides.graph.model_graph import PlateInfo, SiteInfo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STUDENT = [
    ("D", "G"),
    ("I", "G"),
    ("I", "S"),
    ("G", "H"),
    ("G", "L"),
    ("S", "J"),
    ("L", "J"),
    ("J", "H"),
]


@pytest.fixture
def student() -> ModelGraph:
    return ModelGraph.from_edges(STUDENT, observed={"J", "H"})


def tree(depth: int) -> ModelGraph:
    dag = nx.bfs_tree(nx.balanced_tree(2, depth - 1), 0)
    dag = nx.relabel_nodes(dag, {n: f"n{n}" for n in dag})
    return ModelGraph.from_edges(dag.edges, observed={n for n in dag if not dag.out_degree(n)})


def artists_with_gid(fig: Figure, gid: str) -> list:
    return [a for ax in fig.axes for a in (*ax.patches, *ax.collections) if a.get_gid() == gid]


def texts_with_gid(ax, prefix: str) -> list:
    return [t for t in ax.texts if (t.get_gid() or "").startswith(prefix)]


def plated(
    edges: list[tuple[str, str]],
    observed: set[str],
    plates: dict[str, list[tuple[str, int]]],
    event: dict[str, tuple[int, ...]] | None = None,
) -> ModelGraph:
    """A graph whose sites sit in plates (``plates[site]``: ``(name, size)``, outermost first)
    and have event shapes, as a tracer would record them."""
    base = ModelGraph.from_edges(edges, observed=observed)
    sites = {}
    for name, site in base.sites.items():
        ps = plates.get(name, [])
        infos = tuple(PlateInfo(p, n, -len(ps) + i, n) for i, (p, n) in enumerate(ps))
        batch = tuple(n for _, n in ps)
        ev = (event or {}).get(name, ())
        sites[name] = SiteInfo(
            name, site.observed, batch, ev, infos, "real", False, "Normal", site.order
        )
    return ModelGraph(sites=sites, dag=base.dag)


def rendered(fig: Figure):
    """Draw the figure with Agg; return the renderer (for window extents)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def inside(a, b, tol: float = 0.5) -> bool:
    """Bbox ``a`` inside ``b``."""
    return a.x0 >= b.x0 - tol and a.x1 <= b.x1 + tol and a.y0 >= b.y0 - tol and a.y1 <= b.y1 + tol


NESTED = plated(
    [("mu", "group_mean"), ("tau", "group_mean"), ("group_mean", "y")],
    {"y"},
    {"group_mean": [("groups", 10)], "y": [("groups", 10), ("data", 100)]},
)
SIDE = plated(
    [
        ("mu", "u"),
        ("u", "x"),
        ("mu", "item_effect_with_a_long_name"),
        ("s", "item_effect_with_a_long_name"),
        ("item_effect_with_a_long_name", "y"),
    ],
    {"x", "y"},
    {
        "u": [("users", 50)],
        "x": [("users", 50)],
        "item_effect_with_a_long_name": [("items", 30)],
        "y": [("items", 30)],
    },
    event={"s": (2517,)},
)


# ----------------------------------------------------------------------------- draw


def test_draw_two_axes_and_png(student: ModelGraph, tmp_path: Path) -> None:
    path = tmp_path / "student.png"
    fig = draw(student, path=path)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert path.read_bytes()[:8] == PNG_MAGIC
    inverse = student.invert()
    assert f"({inverse.number_of_edges()} edges" in fig.axes[1].get_title()
    assert "(8 edges)" in fig.axes[0].get_title()
    # every node labelled on both panels, and a legend that names the fill-in style
    assert len(fig.axes[0].texts) == len(fig.axes[1].texts) == 7
    assert {t.get_text() for t in texts_with_gid(fig.axes[0], "label:")} == set("DIGSLJH")
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "fill-in edge" in legend and "observed" in legend


def test_draw_marks_fill_in_edges(student: ModelGraph) -> None:
    inverse = student.invert()
    fill = {(u, v) for u, v, f in inverse.edges(data="fill") if f}
    assert fill, "the student network's inverse has fill-in edges"
    groups = edge_groups(student.dag, inverse)
    assert set(groups["fill-in"]) == fill
    assert len(groups["inverse"]) + len(fill) == inverse.number_of_edges()
    fig = draw(student, inverse=inverse)
    patches = artists_with_gid(fig, "fill-in")
    assert len(patches) == len(fill)
    assert all(p.get_linestyle() != "-" for p in patches)  # dashed
    assert len(artists_with_gid(fig, "forward")) == student.dag.number_of_edges()


def test_draw_big_graph_uses_line_collections_without_labels(monkeypatch) -> None:
    monkeypatch.setattr(draw_mod, "ARROW_LIMIT", 5)
    monkeypatch.setattr(draw_mod, "LABEL_LIMIT", 40)
    g = tree(6)  # 63 nodes > LABEL_LIMIT
    inverse = g.invert()
    fig = draw(g, inverse=inverse)
    (coll,) = artists_with_gid(fig, "fill-in")
    assert isinstance(coll, LineCollection)
    assert len(coll.get_segments()) == sum(1 for *_, f in inverse.edges(data="fill") if f)
    assert all(len(ax.texts) == 0 for ax in fig.axes)


def test_draw_into_given_axes(student: ModelGraph) -> None:
    fig = Figure()
    axes = fig.subplots(1, 2)
    assert draw(student, ax=axes) is fig
    with pytest.raises(ValueError, match="expects two axes"):
        draw(student, ax=[axes[0]])


def test_plates_are_labelled_boxes_nested_and_side_by_side() -> None:
    for graph, labels in (
        (NESTED, {"groups": "groups  N=10", "data": "data  N=100"}),
        (SIDE, {"users": "users  N=50", "items": "items  N=30"}),
    ):
        fig = draw(graph)
        rendered(fig)
        for ax in fig.axes:
            boxes = {
                p.get_gid()[6:]: p for p in ax.patches if (p.get_gid() or "").startswith("plate:")
            }
            assert sorted(boxes) == sorted(labels)  # one box per plate
            texts = {t.get_gid()[12:]: t.get_text() for t in texts_with_gid(ax, "plate-label:")}
            assert texts == labels
            ext = {name: box.get_window_extent() for name, box in boxes.items()}
            for box in boxes.values():  # rounded rectangles
                assert "round" in type(box.get_boxstyle()).__name__.lower()
            nodes = {
                p.get_gid()[5:]: p for p in ax.patches if (p.get_gid() or "").startswith("node:")
            }
            for name, node in nodes.items():  # a node is in exactly the boxes of its plates
                centre = node.get_window_extent()
                cx, cy = (centre.x0 + centre.x1) / 2, (centre.y0 + centre.y1) / 2
                mine = graph.sites[name].plate_names
                for plate, e in ext.items():
                    assert (e.x0 < cx < e.x1 and e.y0 < cy < e.y1) == (plate in mine), (name, plate)
            for t in texts_with_gid(ax, "plate-label:"):  # labels inside their own box
                assert inside(t.get_window_extent(), ext[t.get_gid()[12:]])
        if graph is NESTED:
            assert inside(ext["data"], ext["groups"]) and not inside(ext["groups"], ext["data"])
        else:
            assert not overlap(ext["users"], ext["items"])


def test_node_labels_shapes_shading_and_full_names() -> None:
    fig = draw(SIDE)
    rendered(fig)
    ax = fig.axes[0]
    labels = {t.get_gid()[6:]: t for t in texts_with_gid(ax, "label:")}
    assert labels["s"].get_text() == "s\n(2517,)"  # vector site: its shape under the name
    assert labels["u"].get_text() == "u"  # the plate dimension is the box, not a shape
    cut = labels["item_effect_with_a_long_name"].get_text()
    assert cut.endswith("\u2026") and len(cut) <= draw_mod.NAME_LIMIT
    names = next(
        a for a in ax.get_children() if getattr(a, "get_gid", None) and a.get_gid() == "names"
    )
    assert f"{cut} = item_effect_with_a_long_name" in [t.get_text() for t in names.get_texts()]
    nodes = {p.get_gid()[5:]: p for p in ax.patches if (p.get_gid() or "").startswith("node:")}
    for name, text in labels.items():  # every label inside its node
        assert inside(text.get_window_extent(), nodes[name].get_window_extent()), name
    shade = {name: nodes[name].get_facecolor() for name in ("x", "y", "u", "s")}
    assert shade["x"] == shade["y"] != shade["u"] == shade["s"]
    assert not any(t.get_gid() == "names" for t in fig.axes[1].get_children())


def test_draw_25_nodes_labels_apart_titles_clear() -> None:
    dag = nx.gnp_random_graph(25, 0.15, seed=3, directed=True)
    dag = nx.DiGraph([(f"site_{u}", f"site_{v}") for u, v in dag.edges if u < v])
    dag.add_nodes_from(f"site_{i}" for i in range(25))
    sinks = {n for n in dag if not dag.out_degree(n)}
    plates = {n: [("data", 100)] for n in sinks}
    for graph in (
        ModelGraph.from_edges(dag.edges, sinks, nodes=dag.nodes),
        plated(list(dag.edges), sinks, plates),
    ):
        graph.dag.add_nodes_from(dag.nodes)
        fig = draw(graph, title="twenty-five sites")
        renderer = rendered(fig)
        for ax in fig.axes:
            boxes = [t.get_window_extent(renderer) for t in texts_with_gid(ax, "label:")]
            assert len(boxes) == 25
            for i, a in enumerate(boxes):
                for b in boxes[:i]:
                    assert not overlap(a, b)
        content = [
            a.get_window_extent(renderer) for ax in fig.axes for a in (*ax.patches, *ax.texts)
        ]
        titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
        titles.append(fig._suptitle.get_window_extent(renderer))
        for t in titles:
            assert not any(overlap(t, c) for c in content)
        assert not overlap(titles[0], titles[1]) and not overlap(titles[2], titles[0])
        axes_box = [ax.get_window_extent(renderer) for ax in fig.axes]
        for ax, box in zip(fig.axes, axes_box, strict=True):  # the drawing stays in its panel
            for a in (*ax.patches, *ax.texts):
                assert inside(a.get_window_extent(renderer), box, tol=2.0)


def test_figure_grows_with_the_graph() -> None:
    small, big = draw(tree(3)), draw(tree(5))
    assert big.get_figwidth() > 2 * small.get_figwidth()
    assert big.get_figheight() > small.get_figheight()


def test_draw_many_rows(tmp_path: Path) -> None:
    path = tmp_path / "many.png"
    fig = draw_many(
        [("student", ModelGraph.from_edges(STUDENT, observed={"J", "H"})), ("nested", NESTED)],
        path=path,
    )
    assert [sub.get_suptitle() for sub in fig.subfigs] == ["student", "nested"]
    assert [len(sub.axes) for sub in fig.subfigs] == [2, 2]
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_edge_groups_without_fill_attribute() -> None:
    forward = nx.DiGraph([("z1", "x"), ("z2", "x")])
    inverse = nx.DiGraph([("x", "z1"), ("x", "z2"), ("z2", "z1")])
    groups = edge_groups(forward, inverse)
    assert groups["fill-in"] == [("z2", "z1")]
    assert sorted(groups["inverse"]) == [("x", "z1"), ("x", "z2")]


def test_layered_layout_roots_on_top_and_trees_uncrossed() -> None:
    g = tree(4)
    pos = layered_layout(g.dag)
    assert pos["n0"][1] == 0.0 and pos["n7"][1] == -3.0
    for u, v in g.dag.edges:  # children left of their sibling's children
        assert pos[u][1] == pos[v][1] + 1
    xs = [pos[f"n{i}"][0] for i in (3, 4, 5, 6)]
    assert xs == sorted(xs)


# ----------------------------------------------------------------------------- CLI

PYRO_MODEL = """
import torch
import pyro
import pyro.distributions as dist

def model():
    z1 = pyro.sample("z1", dist.Normal(0.0, 1.0))
    z2 = pyro.sample("z2", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(z1 + z2, 1.0), obs=torch.tensor(0.5))

def chain():
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    y = pyro.sample("y", dist.Normal(z, 1.0))
    pyro.sample("x", dist.Normal(y, 1.0), obs=torch.tensor(0.5))

def needs_data(data, scale=1.0):
    pyro.sample("x", dist.Normal(0.0, scale), obs=data)

not_a_function = 3
"""

NUMPYRO_MODEL = """
import numpyro
import numpyro.distributions as dist

def model():
    z1 = numpyro.sample("z1", dist.Normal(0.0, 1.0))
    z2 = numpyro.sample("z2", dist.Normal(0.0, 1.0))
    numpyro.sample("x", dist.Normal(z1 + z2, 1.0), obs=0.5)

def chain():
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    y = numpyro.sample("y", dist.Normal(z, 1.0))
    numpyro.sample("x", dist.Normal(y, 1.0), obs=0.5)
"""

SOURCES = {"pyro": PYRO_MODEL, "numpyro": NUMPYRO_MODEL}


@pytest.fixture(params=["pyro", "numpyro"])
def model_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    host = request.param
    pytest.importorskip(host)
    path = tmp_path / f"{host}_model.py"
    path.write_text(textwrap.dedent(SOURCES[host]))
    return host, path


def inverse_edges(stdout: str) -> list[str]:
    """The edge lines of the ``nami inverse`` section of ``inspect``'s output."""
    section = stdout.split("nami inverse", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in section.splitlines()[1:]]


def test_detect_backend(model_file: tuple[str, Path], tmp_path: Path) -> None:
    host, path = model_file
    assert detect_backend(path) == host
    neither = tmp_path / "plain.py"
    neither.write_text("import math\n")
    with pytest.raises(ValueError, match="imports neither pyro nor numpyro; pass --backend"):
        detect_backend(neither)
    both = tmp_path / "both.py"
    both.write_text("import pyro\nfrom numpyro import sample\n")
    with pytest.raises(ValueError, match="imports both"):
        detect_backend(both)


def test_inspect_chain(model_file: tuple[str, Path], tmp_path: Path, capsys) -> None:
    host, path = model_file
    png = tmp_path / "chain.png"
    assert main(["inspect", f"{path}:chain", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"traced with {host}" in out
    assert "z -> y" in out and "y -> x" in out  # forward edges
    assert inverse_edges(out) == ["x -> y", "y -> z"]  # in sampling order
    assert re.search(r"^nami\s+2\s+0\s+yes\s+yes$", out, flags=re.M)
    assert re.search(r"^heuristic\s+2\s+0\s+yes\s+yes$", out, flags=re.M)
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_inspect_marks_fill_in(model_file: tuple[str, Path], capsys) -> None:
    host, path = model_file
    assert main(["inspect", f"{path}:model", "--backend", host]) == 0
    edges = inverse_edges(capsys.readouterr().out)
    assert sorted(e for e in edges if not e.endswith("*")) == ["x -> z1", "x -> z2"]
    (fill,) = [e for e in edges if e.endswith("*")]
    assert fill in ("z1 -> z2 *", "z2 -> z1 *")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{path}:nope", r"no function 'nope' in .*; functions defined there: chain, model"),
        ("{path}:needs_data", r"model 'needs_data' has required arguments \(data\)"),
        ("{path}:not_a_function", r"'not_a_function' in .* is a int, not a function"),
        ("{dir}/missing.py:model", r"model file not found: .*missing\.py"),
        ("{path}", r"expected FILE\.py:FUNCTION"),
    ],
)
def test_inspect_errors(tmp_path: Path, capsys, target: str, message: str) -> None:
    path = tmp_path / "errs.py"
    path.write_text(textwrap.dedent(PYRO_MODEL).replace("import torch\n", ""))
    target = target.format(path=path, dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        load_model(target)
    assert main(["inspect", target, "--backend", "pyro"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert re.search(message, err)


def test_demo_prints_tables_and_saves_png(tmp_path: Path) -> None:
    pytest.importorskip("pyro")
    out = io.StringIO()
    sections = [demo_structures, demo_picture]  # demo_guides trains: covered by guide tests
    state = demo(hosts=("pyro",), png=tmp_path / "demo.png", out=out, sections=sections)
    assert sorted(state.graphs) == ["binary tree, depth 5", "student network"]
    text = out.getvalue()
    assert "nami inverse (78 edges)" in text  # the depth-5 tree, reverse mode wins
    assert re.search(r"^nami\s+78\s+48\s+yes\s+yes$", text, flags=re.M)
    assert re.search(r"^full\s+345\s+", text, flags=re.M)
    assert (tmp_path / "demo.png").read_bytes()[:8] == PNG_MAGIC
