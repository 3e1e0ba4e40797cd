"""Faithful inversion: the known test vectors, d-separation oracles on random DAGs, plates."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faithful_guides import ModelGraph, invert, is_faithful, is_minimal
from faithful_guides.graph import barren_latents

STUDENT = [("D", "G"), ("I", "G"), ("I", "S"), ("G", "H"), ("G", "L")]
STUDENT += [("S", "J"), ("L", "J"), ("J", "H")]


def binary_tree(depth: int) -> tuple[nx.DiGraph, set[str]]:
    """Heap-indexed tree, root at the top, leaves observed (the zoo's naming)."""
    n = 2**depth - 1

    def name(i: int) -> str:
        return f"x{i}" if 2 * i + 1 >= n else f"z{i}"

    g = nx.DiGraph()
    for i in range(n):
        g.add_node(name(i))
        for c in (2 * i + 1, 2 * i + 2):
            if c < n:
                g.add_edge(name(i), name(c))
    return g, {name(i) for i in range(n) if 2 * i + 1 >= n}


def parents(h: nx.DiGraph) -> dict[str, set[str]]:
    return {v: set(h.predecessors(v)) for v in h.nodes if h.in_degree(v)}


def test_student_network_test_vector():
    h = invert(nx.DiGraph(STUDENT), {"J", "H"}, order="topological")
    assert parents(h) == {
        "D": {"G", "I"},
        "I": {"G", "S"},
        "G": {"H", "J", "L"},
        "S": {"G", "J", "L"},
        "L": {"H", "J"},
    }


@pytest.mark.parametrize(
    "depth, topological, reverse, heuristic, full",
    [
        (4, 35, 30, 14, 77),
        (5, 135, 78, 30, 345),
        (6, 527, 190, 62, 1457),
        (7, 2079, 446, 126, 5985),
    ],
)
def test_binary_tree_edge_counts(depth, topological, reverse, heuristic, full):
    g, obs = binary_tree(depth)
    count = {
        "topological": invert(g, obs, order="topological").number_of_edges(),
        "reverse": invert(g, obs, order="reverse").number_of_edges(),
        "auto": invert(g, obs).number_of_edges(),
        "heuristic": invert(g, obs, method="heuristic").number_of_edges(),
        "full": invert(g, obs, method="full").number_of_edges(),
    }
    assert count == {
        "topological": topological,
        "reverse": reverse,
        "auto": min(topological, reverse),
        "heuristic": heuristic,
        "full": full,
    }


@pytest.mark.parametrize("depth", [3, 4, 5])
def test_tree_oracles_separate_the_methods(depth):
    g, obs = binary_tree(depth)
    nami, heur, full = (invert(g, obs, method=m) for m in ("nami", "heuristic", "full"))
    assert is_faithful(g, nami, obs) and is_minimal(g, nami, obs)
    verdict = is_faithful(g, heur, obs)
    assert not verdict and "not d-separated" in verdict.reason
    assert is_faithful(g, full, obs) and not is_minimal(g, full, obs)


def test_collider_couples_the_causes():
    g = nx.DiGraph([("z1", "z3"), ("z2", "z4"), ("z3", "x"), ("z4", "x")])
    h = invert(g, {"x"})
    assert is_faithful(g, h, {"x"}) and is_minimal(g, h, {"x"})
    assert h.has_edge("z3", "z4") or h.has_edge("z4", "z3")  # the fill-in moralization misses
    fills = {(u, v) for u, v, f in h.edges(data="fill") if f}
    assert fills and all(not g.has_edge(u, v) and not g.has_edge(v, u) for u, v in fills)


@st.composite
def random_dags(draw) -> tuple[nx.DiGraph, set[int]]:
    """DAGs up to 40 nodes: interior observed nodes and barren latents included."""
    n = draw(st.integers(2, 40))
    p = draw(st.floats(0.05, 0.35))
    coins = draw(st.lists(st.floats(0, 1), min_size=n * (n - 1) // 2, max_size=n * (n - 1) // 2))
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    pairs = [(i, j) for j in range(n) for i in range(j)]
    g.add_edges_from(pair for pair, c in zip(pairs, coins, strict=True) if c < p)
    observed = set(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)))
    return g, observed


@settings(max_examples=60, deadline=None)
@given(random_dags(), st.sampled_from(["topological", "reverse", "auto"]))
def test_nami_is_faithful_and_minimal_on_random_dags(dag_obs, order):
    g, observed = dag_obs
    h = invert(g, observed, order=order)
    assert set(h.nodes) == set(g.nodes)
    assert all(h.in_degree(x) == 0 for x in observed)
    assert is_faithful(g, h, observed), is_faithful(g, h, observed).reason
    assert is_minimal(g, h, observed), is_minimal(g, h, observed).reason


@settings(max_examples=30, deadline=None)
@given(random_dags())
def test_barren_latents_keep_their_forward_parents(dag_obs):
    g, observed = dag_obs
    h = invert(g, observed)
    for b in barren_latents(g, observed):
        assert set(h.predecessors(b)) == set(g.predecessors(b))


def test_large_tree_and_chains_invert():
    g, obs = binary_tree(12)
    assert invert(g, obs).number_of_edges() == invert(g, obs, order="reverse").number_of_edges()
    markov = nx.path_graph([f"z{t}" for t in range(5000)], create_using=nx.DiGraph)
    markov.add_edge("z4999", "x")
    h = invert(markov, {"x"})  # a chain observed at its end inverts to a chain
    assert h.number_of_edges() == 5000


def test_hmm_inverse_is_filtering_backward_sampling():
    """z_t given z_{t+1} depends on every earlier observation: quadratic by necessity."""
    g = nx.DiGraph()
    for t in range(1, 30):
        g.add_edge(f"z{t - 1}", f"z{t}")
        g.add_edge(f"z{t}", f"x{t}")
    obs = {f"x{t}" for t in range(1, 30)}
    h = invert(g, obs)
    assert is_faithful(g, h, obs) and is_minimal(g, h, obs)
    assert set(h.predecessors("z10")) == {"z11"} | {f"x{t}" for t in range(1, 11)}


# -- plates: site-level inversion, checked at the level of elements ------------------------


def expand(graph: nx.DiGraph, plates: dict[str, set[str]], size: int) -> nx.DiGraph:
    """Element-level graph: in-plate sites become `size` nodes; an edge between two plated
    sites links element i to element i, an edge across the plate boundary links all."""

    def elems(n: str) -> list:
        return [(n, i) for i in range(size)] if plates[n] else [n]

    out = nx.DiGraph()
    for n in graph.nodes:
        out.add_nodes_from(elems(n))
    for u, v in graph.edges:
        if plates[u] and plates[v]:
            out.add_edges_from(((u, i), (v, i)) for i in range(size))
        else:
            out.add_edges_from((a, b) for a in elems(u) for b in elems(v))
    return out


HIERARCHIES = {
    "eight_schools": ([("mu", "theta"), ("tau", "theta"), ("theta", "y")], {"theta", "y"}, {"y"}),
    "two_level": (
        [("a", "b"), ("a", "z"), ("b", "z"), ("z", "w"), ("z", "y"), ("w", "y"), ("b", "g")],
        {"z", "w", "y"},
        {"y", "g"},
    ),
    "regression": ([("m", "y"), ("s", "y"), ("m", "s2"), ("s2", "o")], {"y"}, {"y", "o"}),
}


@pytest.mark.parametrize("name", HIERARCHIES)
def test_plated_inverse_is_faithful_elementwise(name):
    edges, in_plate, observed = HIERARCHIES[name]
    g = nx.DiGraph(edges)
    plates = {n: ({"p"} if n in in_plate else set()) for n in g.nodes}
    h = invert(g, observed, plates=plates)
    for v in g.nodes:  # global latents never condition on local latents
        if not plates[v] and v not in observed:
            assert all(u in observed or not plates[u] for u in h.predecessors(v))
    big_g, big_h = expand(g, plates, 3), expand(h, plates, 3)
    big_obs = {n for n in big_g.nodes if (n[0] if isinstance(n, tuple) else n) in observed}
    assert is_faithful(big_g, big_h, big_obs), is_faithful(big_g, big_h, big_obs).reason


def test_model_graph_invert_uses_plates():
    g = ModelGraph.from_edges([("mu", "theta"), ("theta", "y")], observed={"y"})
    assert sorted(g.invert().edges) == [("theta", "mu"), ("y", "mu"), ("y", "theta")] or (
        is_faithful(g.dag, g.invert(), g.observed)
    )


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"method": "magic"}, ValueError, "Unknown method 'magic': expected one of nami"),
        ({"order": "sideways"}, ValueError, "Unknown order 'sideways'"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        invert(nx.DiGraph([("z", "x")]), {"x"}, **kwargs)


def test_bad_graphs():
    with pytest.raises(ValueError, match=r"cycle \(a -> b"):
        invert(nx.DiGraph([("a", "b"), ("b", "a")]), {"a"})
    with pytest.raises(ValueError, match=r"Observed nodes \['q'\] are not in the graph"):
        invert(nx.DiGraph([("z", "x")]), {"q"})
    with pytest.raises(TypeError, match=r"expects a networkx\.DiGraph, found Graph"):
        invert(nx.Graph([("z", "x")]), {"x"})


def test_crossed_plates_are_refused():
    g = nx.DiGraph([("a", "y"), ("b", "y")])
    plates = {"a": {"p"}, "b": {"q"}, "y": {"p", "q"}}
    with pytest.raises(ValueError, match="plates that are not nested"):
        invert(g, {"y"}, plates=plates)


def test_verdicts_name_the_problem():
    g = nx.DiGraph([("z", "x")])
    bad = nx.DiGraph([("z", "x")])
    verdict = is_faithful(g, bad, {"x"})
    assert not verdict and verdict.node == "x" and "observed node 'x' has parents" in str(verdict)
    extra = nx.DiGraph([("x", "z"), ("w", "z")])
    extra.add_node("w")
    g.add_node("w")
    verdict = is_minimal(g, extra, {"x"})
    assert not verdict and verdict.edge == ("w", "z")


def test_explicit_order_that_would_cross_plate_elements_is_refused():
    g = nx.DiGraph([("mu", "theta"), ("theta", "y")])
    plates = {"mu": set(), "theta": {"p"}, "y": {"p"}}
    with pytest.raises(ValueError, match=r"order='topological' cannot eliminate.*Use order='auto'"):
        invert(g, {"y"}, order="topological", plates=plates)
    assert invert(g, {"y"}, order="reverse", plates=plates).has_edge("mu", "theta")
