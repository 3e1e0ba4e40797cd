"""The guide families under the contract tests: one line each.

``FAMILIES[key]`` names the class that both ``faithful_guides.pyro`` and
``faithful_guides.numpyro`` export; :mod:`test_contract` runs every drop-in test for every
(host, family) pair, so a new family is tested by adding its line here.

Example:
    >>> FAMILIES["made"]
    'AutoFaithfulMADE'
"""

FAMILIES: dict[str, str] = {
    "made": "AutoFaithfulMADE",
    "iterative": "AutoIterative",
}
