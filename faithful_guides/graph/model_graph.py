r"""The backend-neutral record of a traced model.

A tracer (one per host: :func:`faithful_guides.pyro.trace_model`,
:func:`faithful_guides.numpyro.trace_model`) runs the model once and returns a
:class:`ModelGraph`: one :class:`SiteInfo` per sample site and a ``networkx.DiGraph``
whose edge ``u -> v`` says that the log-density of site ``v`` was computed from the value
of site ``u`` (value provenance, through deterministic sites and arbitrary tensor code).

Everything downstream (inversion, masks, guides, pictures) reads only this record, so
the same model written for Pyro or NumPyro gives the same graph and the same guide.

Example:
    >>> import networkx as nx
    >>> g = ModelGraph.from_edges([("z", "x")], observed={"x"})
    >>> sorted(g.invert().edges())
    [('x', 'z')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx


@dataclass(frozen=True)
class PlateInfo:
    """A vectorized plate a site sits in.

    Attributes:
        name: the plate's name.
        size: the full size of the plate (the data set size under subsampling).
        dim: the batch dimension the plate occupies (negative, as in the hosts).
        subsample_size: how many elements this run used (``size`` without subsampling).
    """

    name: str
    size: int
    dim: int | None
    subsample_size: int

    @property
    def subsampled(self) -> bool:
        return self.subsample_size != self.size


@dataclass(frozen=True)
class SiteInfo:
    """Facts about one sample site, the same for both hosts.

    Attributes:
        name: the site name.
        observed: whether the site is observed (``obs=`` or a ``condition`` handler).
        batch_shape: the distribution's batch shape in this run (plates included).
        event_shape: the distribution's event shape.
        plates: the vectorized plates the site sits in, outermost first.
        support: a neutral name of the support, e.g. ``"real"``, ``"positive"``,
            ``"interval(0.0, 1.0)"``, ``"simplex"`` (see :func:`constraint_name`).
        discrete: whether the distribution is discrete.
        distribution: the distribution's class name with wrappers peeled
            (``Independent``, ``ExpandedDistribution``, masks), e.g. ``"Normal"``.
        order: the site's position among the sample sites of the trace.
        constraint: the host's own constraint object (not compared, not neutral).
    """

    name: str
    observed: bool
    batch_shape: tuple[int, ...]
    event_shape: tuple[int, ...]
    plates: tuple[PlateInfo, ...]
    support: str
    discrete: bool
    distribution: str
    order: int
    constraint: Any = field(default=None, compare=False, repr=False)

    @property
    def plate_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.plates)

    @property
    def shape(self) -> tuple[int, ...]:
        """Batch shape followed by event shape: the shape of the site's value."""
        return self.batch_shape + self.event_shape


def constraint_name(type_name: str, params: Mapping[str, Any] | None = None) -> str:
    """Neutral, host-independent name of a constraint.

    Both hosts name their constraint classes alike up to a leading underscore and case
    (Pyro ``GreaterThan``, NumPyro ``_GreaterThan``). This turns the class name into
    snake case and appends the parameters that define the support.

    Example:
        >>> constraint_name("_GreaterThan", {"lower_bound": 0.0})
        'greater_than(0.0)'
        >>> constraint_name("_Real")
        'real'
    """
    base = type_name.lstrip("_")
    snake = "".join("_" + c.lower() if c.isupper() else c for c in base).lstrip("_")
    if not params:
        return snake
    args = ", ".join(_format_param(v) for v in params.values())
    return f"{snake}({args})"


def _format_param(value: Any) -> str:
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


@dataclass
class ModelGraph:
    """A model's sample sites and their provenance DAG.

    Attributes:
        sites: :class:`SiteInfo` per sample site, in trace order.
        dag: ``networkx.DiGraph`` over site names; ``u -> v`` when ``v``'s density
            depends on ``u``'s value. Every site is a node.
        deterministic: for each deterministic site, the sample sites its value came from.
        backend: ``"pyro"``, ``"numpyro"`` or ``"networkx"`` (built by hand).
    """

    sites: dict[str, SiteInfo]
    dag: nx.DiGraph
    deterministic: dict[str, frozenset[str]] = field(default_factory=dict)
    backend: str = "networkx"

    @classmethod
    def from_edges(
        cls, edges: Iterable[tuple[str, str]], observed: Iterable[str], nodes: Iterable[str] = ()
    ) -> ModelGraph:
        """A graph of scalar, real-valued, unplated sites from an edge list (for tests and
        for studying structures without a model)."""
        dag = nx.DiGraph()
        dag.add_nodes_from(nodes)
        dag.add_edges_from(edges)
        observed = set(observed)
        order = list(nx.lexicographical_topological_sort(dag, key=str))
        sites = {
            name: SiteInfo(name, name in observed, (), (), (), "real", False, "Normal", i)
            for i, name in enumerate(order)
        }
        return cls(sites=sites, dag=dag)

    @property
    def observed(self) -> frozenset[str]:
        return frozenset(n for n, s in self.sites.items() if s.observed)

    @property
    def latent(self) -> list[str]:
        """Latent site names in trace order."""
        return [n for n, s in self.sites.items() if not s.observed]

    @property
    def plates(self) -> dict[str, frozenset[str]]:
        """Plate names per site, the input :func:`~faithful_guides.invert` takes."""
        return {n: s.plate_names for n, s in self.sites.items()}

    def invert(self, method: str = "nami", order: str = "auto") -> nx.DiGraph:
        """The faithful inverse of this model; see :func:`faithful_guides.invert`."""
        from faithful_guides.graph.inversion import invert

        return invert(
            self.dag,
            self.observed,
            method=method,
            order=order,
            plates=self.plates,
            key=lambda n: self.sites[n].order,
        )

    def summary(self) -> str:
        """A plain-text table of the sites (what ``python -m faithful_guides inspect`` prints)."""
        rows = [("site", "kind", "shape", "plates", "support", "distribution", "parents")]
        for name, s in self.sites.items():
            rows.append(
                (
                    name,
                    "observed" if s.observed else "latent",
                    str(s.shape),
                    ",".join(p.name for p in s.plates) or "-",
                    s.support,
                    s.distribution,
                    ",".join(sorted(self.dag.predecessors(name), key=self._key)) or "-",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        )

    def _key(self, name: str) -> int:
        return self.sites[name].order

    def draw(self, *args: Any, **kwargs: Any) -> Any:
        """Forward and inverse graphs side by side; see :func:`faithful_guides.graph.draw.draw`."""
        from faithful_guides.graph.draw import draw

        return draw(self, *args, **kwargs)
