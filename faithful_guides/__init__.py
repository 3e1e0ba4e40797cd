"""faithful-guides: provably faithful, amortized guides for Pyro and NumPyro models.

The host-specific guides and tracers live in :mod:`faithful_guides.pyro` and
:mod:`faithful_guides.numpyro`; this module holds the backend-neutral graph tools.

Example:
    >>> import networkx as nx
    >>> from faithful_guides import invert, is_faithful, is_minimal
    >>> g = nx.DiGraph([("z1", "z3"), ("z2", "z4"), ("z3", "x"), ("z4", "x")])
    >>> h = invert(g, {"x"})
    >>> bool(is_faithful(g, h, {"x"})), bool(is_minimal(g, h, {"x"}))
    (True, True)
"""

from faithful_guides.graph import (
    ModelGraph,
    PlateInfo,
    SiteInfo,
    Verdict,
    invert,
    is_faithful,
    is_minimal,
)

__all__ = ["ModelGraph", "PlateInfo", "SiteInfo", "Verdict", "invert", "is_faithful", "is_minimal"]
__version__ = "0.1.0"
