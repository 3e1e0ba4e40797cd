"""The guide families under the contract tests: one line each.

``FAMILIES[key]`` names the class that both ``faithful_guides.pyro`` and
``faithful_guides.numpyro`` export; :mod:`test_contract` runs every drop-in test for every
(host, family) pair, so a new family is tested by adding its line here.

Example:
    >>> FAMILIES["made"]
    'AutoFaithfulMADE'
"""

import functools
from typing import Any

FAMILIES: dict[str, str] = {
    "made": "AutoFaithfulMADE",
    "iterative": "AutoIterative",
}

SUITE_OPTIONS: dict[str, dict[str, Any]] = {
    "iterative": {"num_steps": 2},
}
"""Options the suite's drop-in tests give a family: the same code paths at less cost (two
refinements compile and run in under half the time of the default five; the oracle tests
of ``test_iterative`` use the default)."""


def family_class(public: Any, family: str) -> Any:
    """The family's class in the host module ``public``, with its suite options bound."""
    cls = getattr(public, FAMILIES[family])
    options = SUITE_OPTIONS.get(family)
    return functools.partial(cls, **options) if options else cls
