r"""Faithful inversion of a generative model's DAG (NaMI, Webb et al. 2018).

Given a DAG :math:`G` over latents :math:`Z` and observations :math:`X`, :func:`invert`
returns a DAG :math:`H` in which every observed node is a root and

.. math:: q(z \mid x) = \prod_{v \in Z} q(z_v \mid \mathrm{Pa}_H(z_v))

can represent the exact posterior for every distribution that factorizes over :math:`G`
(faithful), with no removable edge (minimal). It simulates variable elimination on the
moral graph of :math:`G`: each eliminated latent takes its not-yet-eliminated neighbours
as inverse parents, and the guide samples latents in reverse elimination order.

Barren latents (no observed descendant) are taken out first and put back with their
forward parents, since :math:`p(b \mid x, \ldots) = p(b \mid \mathrm{Pa}_G(b))`.

With ``plates``, the graph is read at the level of sites: an edge between sites in the
same plate links element ``i`` to element ``i``. Elimination is then restricted so that
no fill-in crosses plate elements: a latent is eliminated only once every latent
neighbour that sits in a plate it does not share is gone. Local latents are thus
eliminated before the globals they touch, and the guide samples globals first, each
conditioned on the observations in a plate through a permutation-invariant summary.

References:
    Webb, Goliński, Zinkov, Siddharth, Rainforth, Teh, Wood (2018). Faithful inversion
    of generative models for effective amortized inference. NeurIPS.
    https://arxiv.org/abs/1712.00287

Example:
    >>> import networkx as nx
    >>> g = nx.DiGraph([("z1", "z3"), ("z2", "z4"), ("z3", "x"), ("z4", "x")])
    >>> h = invert(g, {"x"})
    >>> {v: sorted(h.predecessors(v)) for v in ["z1", "z2", "z3", "z4"]}
    {'z1': ['z3'], 'z2': ['z4'], 'z3': ['x', 'z4'], 'z4': ['x']}
    >>> h.edges["z4", "z3"]["fill"]  # the coupling that moralization alone misses
    True
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Hashable, Mapping

import networkx as nx

Node = Hashable
METHODS = ("nami", "heuristic", "full")
ORDERS = ("auto", "topological", "reverse")


def invert(
    dag: nx.DiGraph,
    observed: Collection[Node],
    *,
    method: str = "nami",
    order: str = "auto",
    plates: Mapping[Node, Collection[str]] | None = None,
    key: Callable[[Node], object] | None = None,
) -> nx.DiGraph:
    """Invert ``dag`` given the ``observed`` nodes.

    Args:
        dag: the forward model, edges parent -> child.
        observed: the observed nodes; they become roots of the inverse.
        method: ``"nami"`` (faithful and minimal), ``"heuristic"`` (reverse every edge,
            Stuhlmüller et al. 2013; not faithful in general) or ``"full"`` (each latent
            depends on every earlier latent and every observation).
        order: the NaMI elimination mode: ``"topological"``, ``"reverse"``, or
            ``"auto"`` (run both and keep the one with fewer edges).
        plates: optional plate names per node, for plated (site-level) graphs.
        key: deterministic tie-break key per node (default: the order in which
            nodes were added to ``dag``, never hash order).

    Returns:
        The inverse DAG over all nodes of ``dag``; node attribute ``observed``;
        edge attribute ``fill`` is True for edges absent from ``dag`` in both directions.

    Raises:
        ValueError: unknown method or order, a cycle, observed nodes missing from
            ``dag``, or plates that cross in the posterior.
    """
    observed = _check_inputs(dag, observed, method, order)
    rank = _ranks(dag, key)
    if method == "heuristic":
        parents = _heuristic_parents(dag, observed)
    elif method == "full":
        parents = _full_parents(dag, observed, rank)
    else:
        parents = _nami_parents(dag, observed, order, plates or {}, rank)
    return _build(dag, observed, parents)


def _check_inputs(
    dag: nx.DiGraph, observed: Collection[Node], method: str, order: str
) -> frozenset[Node]:
    if not isinstance(dag, nx.DiGraph):
        raise TypeError(f"invert expects a networkx.DiGraph, found {type(dag).__name__}.")
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}: expected one of {', '.join(METHODS)}.")
    if order not in ORDERS:
        raise ValueError(f"Unknown order {order!r}: expected one of {', '.join(ORDERS)}.")
    missing = sorted(map(str, set(observed) - set(dag.nodes)))
    if missing:
        raise ValueError(
            f"Observed nodes {missing} are not in the graph; pass only nodes of `dag`."
        )
    if not nx.is_directed_acyclic_graph(dag):
        cycle = " -> ".join(str(u) for u, _ in nx.find_cycle(dag))
        raise ValueError(f"The model graph has a cycle ({cycle}); a generative model is a DAG.")
    return frozenset(observed)


def _ranks(dag: nx.DiGraph, key: Callable[[Node], object] | None) -> dict[Node, int]:
    nodes = dag.nodes if key is None else sorted(dag.nodes, key=key)
    return {n: i for i, n in enumerate(nodes)}


def _build(
    dag: nx.DiGraph, observed: frozenset[Node], parents: Mapping[Node, list[Node]]
) -> nx.DiGraph:
    inverse = nx.DiGraph()
    inverse.add_nodes_from((n, {"observed": n in observed}) for n in dag.nodes)
    forward = set(dag.edges)
    inverse.add_edges_from(
        (u, v, {"fill": (u, v) not in forward and (v, u) not in forward})
        for v, pa in parents.items()
        for u in pa
    )
    return inverse


def _heuristic_parents(dag: nx.DiGraph, observed: frozenset[Node]) -> dict[Node, list[Node]]:
    """Stuhlmüller's heuristic: a latent's forward children plus its observed parents."""
    return {
        v: list(dag.successors(v)) + [u for u in dag.predecessors(v) if u in observed]
        for v in dag.nodes
        if v not in observed
    }


def _full_parents(
    dag: nx.DiGraph, observed: frozenset[Node], rank: Mapping[Node, int]
) -> dict[Node, list[Node]]:
    """Every observation and every latent that comes later in the forward order."""
    latents = sorted((n for n in dag.nodes if n not in observed), key=rank.__getitem__)
    obs = sorted(observed, key=rank.__getitem__)
    return {v: obs + latents[i + 1 :] for i, v in enumerate(latents)}


def barren_latents(dag: nx.DiGraph, observed: Collection[Node]) -> set[Node]:
    """Latents with no observed descendant: their posterior conditional is their prior's."""
    reaches_data = set(observed)
    stack = list(observed)
    while stack:
        for u in dag.predecessors(stack.pop()):
            if u not in reaches_data:
                reaches_data.add(u)
                stack.append(u)
    return set(dag.nodes) - reaches_data


def _nami_parents(
    dag: nx.DiGraph,
    observed: frozenset[Node],
    order: str,
    plates: Mapping[Node, Collection[str]],
    rank: Mapping[Node, int],
) -> dict[Node, list[Node]]:
    barren = barren_latents(dag, observed)
    core = dag.subgraph(n for n in dag.nodes if n not in barren) if barren else dag
    elim = _Elimination(core, observed, plates, rank)
    if order == "auto":
        parents = elim.sparsest(("topological", "reverse")) or elim.run(None)
    elif (parents := elim.run(order)) is None:
        raise ValueError(
            f"order={order!r} cannot eliminate the latents of this plated model without "
            "linking different plate elements (a global latent would go before the local "
            "latents it touches). Use order='auto'."
        )
    if parents is None:
        raise _crossed_plates_error(core, observed, plates)
    for b in barren:
        parents[b] = list(dag.predecessors(b))
    return parents


def _plates_of_latents(
    core: nx.DiGraph, observed: frozenset[Node], plates: Mapping[Node, Collection[str]]
) -> dict[str, list[str]]:
    return {str(n): sorted(plates.get(n, ())) for n in core if n not in observed}


def _crossed_plates_error(
    core: nx.DiGraph, observed: frozenset[Node], plates: Mapping[Node, Collection[str]]
) -> ValueError:
    return ValueError(
        "No elimination order keeps the posterior's dependencies inside plate elements: "
        "latents in plates that are not nested become dependent in the posterior. "
        f"Plates per latent: {_plates_of_latents(core, observed, plates)}. "
        "Nest the plates, or move one of the sites out of its plate."
    )


class _Elimination:
    """The moral graph of the non-barren core, shared by the elimination runs.

    Nodes are integers (their rank); adjacency is a list of sets. Fill-in between two
    observed nodes is never recorded: observed nodes are never eliminated, so it cannot
    change any inverse parent set.
    """

    def __init__(
        self,
        core: nx.DiGraph,
        observed: frozenset[Node],
        plates: Mapping[Node, Collection[str]],
        rank: Mapping[Node, int],
    ) -> None:
        self.nodes = sorted(core.nodes, key=rank.__getitem__)
        index = {n: i for i, n in enumerate(self.nodes)}
        self.is_obs = [n in observed for n in self.nodes]
        self.plates = [frozenset(plates.get(n, ())) for n in self.nodes]
        self.parents = [[index[u] for u in core.predecessors(n)] for n in self.nodes]
        self.children = [[index[c] for c in core.successors(n)] for n in self.nodes]
        self.moral: list[set[int]] = [set() for _ in self.nodes]
        for v, pa in enumerate(self.parents):
            for u in pa:
                self.link(self.moral, u, v)
            for i, u in enumerate(pa):
                for w in pa[i + 1 :]:
                    self.link(self.moral, u, w)

    def link(self, adj: list[set[int]], u: int, v: int) -> None:
        if u != v and not (self.is_obs[u] and self.is_obs[v]):
            adj[u].add(v)
            adj[v].add(u)

    def sparsest(
        self, orders: tuple[str, ...], work_factor: float = 8.0
    ) -> dict[Node, list[Node]] | None:
        """Run the modes side by side, always advancing the one that has worked least.

        The first to finish sets a budget: another mode is dropped once it has more
        edges than the finished one, or more than ``work_factor`` times its work (a mode
        that costs that much more builds far larger cliques, hence more edges).
        """
        runs = [_Run(self, o) for o in orders]
        best: _Run | None = None
        while runs:
            run = min(runs, key=lambda r: r.work)
            if not run.step():
                runs.remove(run)
                if run.complete and (best is None or run.edges < best.edges):
                    best = run
            elif best is not None and (
                run.edges > best.edges or run.work > work_factor * best.work
            ):
                runs.remove(run)
        return None if best is None else best.result()

    def run(self, order: str | None) -> dict[Node, list[Node]] | None:
        """One elimination; ``None`` when the plate constraint blocks it."""
        run = _Run(self, order)
        while run.step():
            pass
        return run.result() if run.complete else None


class _Run:
    """One simulated elimination in one mode, advanced a step at a time.

    ``order`` is ``"topological"`` (a latent is ready once its latent parents are gone),
    ``"reverse"`` (once its latent children are gone) or ``None`` (always ready).
    A ready latent is eliminated in min-fill order, ties broken by rank.
    """

    def __init__(self, elim: _Elimination, order: str | None) -> None:
        self.e = elim
        self.adj = [set(s) for s in elim.moral]
        self.gone = [False] * len(elim.nodes)
        self.waits = {"topological": elim.parents, "reverse": elim.children}.get(order)
        self.frees = {"topological": elim.children, "reverse": elim.parents}.get(order)
        self.pending = [
            0 if self.waits is None else sum(1 for u in self.waits[v] if not elim.is_obs[u])
            for v in range(len(elim.nodes))
        ]
        self.n_latent = elim.is_obs.count(False)
        self.parents: dict[int, list[int]] = {}
        self.edges = 0
        self.work = 0
        self.heap: list[tuple[int, int]] = []
        self.score: dict[int, int] = {}
        for v, obs in enumerate(elim.is_obs):
            if not obs and self.pending[v] == 0:
                self.push(v)

    @property
    def complete(self) -> bool:
        return len(self.parents) == self.n_latent

    def result(self) -> dict[Node, list[Node]]:
        nodes = self.e.nodes
        return {nodes[v]: [nodes[u] for u in pa] for v, pa in self.parents.items()}

    def push(self, v: int) -> None:
        """(Re)score ``v``; older heap entries of ``v`` become stale."""
        self.score[v] = f = self.fill(v)
        heapq.heappush(self.heap, (f, v))

    def step(self) -> bool:
        """Eliminate one latent; False when no latent is left or none may go."""
        while self.heap:
            f, v = heapq.heappop(self.heap)
            if self.gone[v] or f != self.score[v]:
                continue
            if not self.plate_ok(v):
                continue  # pushed again when one of its neighbours goes
            self.eliminate(v)
            return True
        return False

    def eliminate(self, v: int) -> None:
        adj, is_obs = self.adj, self.e.is_obs
        nbrs = adj[v]
        self.parents[v] = sorted(nbrs)
        self.edges += len(nbrs)
        self.gone[v] = True
        lat = {u for u in nbrs if not is_obs[u]}
        for a in nbrs:  # fill-in; pairs of observed nodes are never linked
            adj[a].discard(v)
            adj[a] |= lat if is_obs[a] else nbrs
            adj[a].discard(a)
        adj[v] = set()
        if self.frees is not None:
            for u in self.frees[v]:
                if not is_obs[u]:
                    self.pending[u] -= 1
                    if self.pending[u] == 0:
                        self.push(u)
        for u in lat:
            if self.pending[u] == 0:
                self.push(u)

    def plate_ok(self, v: int) -> bool:
        """No latent neighbour sits in a plate ``v`` does not share."""
        own, e = self.e.plates[v], self.e
        return all(e.is_obs[u] or e.plates[u] <= own for u in self.adj[v])

    def fill(self, v: int) -> int:
        """Missing edges among ``v``'s neighbours, observed-observed pairs excepted.

        Summing, over latent neighbours ``a``, the neighbours not linked to ``a`` counts
        latent-observed gaps once and latent-latent gaps twice; subtract half of the
        latter.
        """
        adj, is_obs = self.adj, self.e.is_obs
        nbrs = adj[v]
        lat = {u for u in nbrs if not is_obs[u]}
        any_gap = ll_gap = 0
        for a in lat:
            linked = adj[a]
            any_gap += len(nbrs) - 1 - len(linked & nbrs)
            ll_gap += len(lat) - 1 - len(linked & lat)
        self.work += 1 + len(lat) * len(nbrs)
        return any_gap - ll_gap // 2
