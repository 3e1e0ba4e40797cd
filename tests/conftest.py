"""Shared fixtures: per-host adapters (see :mod:`hosts`), skipped when a host is missing."""

from __future__ import annotations

import importlib.util

import pytest
from hosts import GuideHost, guide_host

_NEEDS = {"pyro": ("torch", "pyro"), "numpyro": ("jax", "numpyro")}


def adapter(name: str, family: str = "made") -> GuideHost:
    """A host's adapter for ``family`` with fresh global state (Pyro: param store, seed)."""
    for module in _NEEDS[name]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} host needs {module}")
    h = guide_host(name, family)
    h.reset()
    return h
