r"""Oracles by d-separation: is an inverse graph faithful to, and minimal for, a model?

Both checks read only the forward DAG :math:`G` and the inverse :math:`H`, so they audit
any structure, ours or a user's.

- **Faithful**: in a topological order of :math:`H`, every latent :math:`v` is
  d-separated in :math:`G` from the latents before it and all observations, given
  :math:`\mathrm{Pa}_H(v)`. Then :math:`q(z \mid x) = \prod_v q(z_v \mid \mathrm{Pa}_H(z_v))`
  can equal the posterior for every distribution that factorizes over :math:`G`.
- **Minimal**: no edge :math:`u \to v` of :math:`H` can go, i.e. :math:`v` is *not*
  d-separated from :math:`u` given :math:`\mathrm{Pa}_H(v) \setminus \{u\}`.

Example:
    >>> import networkx as nx
    >>> g = nx.DiGraph([("z1", "z3"), ("z2", "z4"), ("z3", "x"), ("z4", "x")])
    >>> bool(is_faithful(g, nx.reverse(g), {"x"}))
    False
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from dataclasses import dataclass

import networkx as nx


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: truthy when it holds, else ``reason`` says why."""

    ok: bool
    reason: str = ""
    node: Hashable | None = None
    edge: tuple[Hashable, Hashable] | None = None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "ok" if self.ok else self.reason


def _structure(forward: nx.DiGraph, inverse: nx.DiGraph, observed: Collection) -> Verdict:
    observed = set(observed)
    if not nx.is_directed_acyclic_graph(inverse):
        cycle = " -> ".join(str(u) for u, _ in nx.find_cycle(inverse))
        return Verdict(False, f"the inverse has a cycle: {cycle}")
    for x in observed:
        if x in inverse and inverse.in_degree(x):
            return Verdict(False, f"observed node {x!r} has parents in the inverse", node=x)
    for v in forward.nodes:
        if v not in observed and v not in inverse:
            return Verdict(False, f"latent {v!r} is missing from the inverse", node=v)
    return Verdict(True)


def is_faithful(forward: nx.DiGraph, inverse: nx.DiGraph, observed: Collection) -> Verdict:
    """Whether ``inverse`` is an I-map of p(latents | observed) for every p over ``forward``."""
    verdict = _structure(forward, inverse, observed)
    if not verdict:
        return verdict
    observed = set(observed)
    before = set(observed)
    for v in nx.topological_sort(inverse):
        if v in observed:
            continue
        parents = set(inverse.predecessors(v))
        rest = before - parents
        if rest and not nx.is_d_separator(forward, {v}, rest, parents):
            shown = sorted(map(str, rest))[:8]
            return Verdict(
                False,
                f"latent {v!r} is not d-separated from {shown} given its inverse parents "
                f"{sorted(map(str, parents))}",
                node=v,
            )
        before.add(v)
    return Verdict(True)


def is_minimal(forward: nx.DiGraph, inverse: nx.DiGraph, observed: Collection) -> Verdict:
    """Whether no edge of ``inverse`` can be removed (assumes it is faithful)."""
    verdict = _structure(forward, inverse, observed)
    if not verdict:
        return verdict
    for u, v in inverse.edges:
        others = set(inverse.predecessors(v)) - {u}
        if nx.is_d_separator(forward, {v}, {u}, others):
            return Verdict(
                False,
                f"edge {u!r} -> {v!r} is removable: {v!r} is d-separated from {u!r} given "
                f"{sorted(map(str, others))}",
                edge=(u, v),
            )
    return Verdict(True)
