"""Shared fixtures: per-host adapters (see :mod:`hosts`), skipped when a host is missing.

Keeps each test process to one CPU thread: the suite runs as two pytest-xdist workers on two
cores, and tiny torch operations on two threads each are up to a thousand times slower. The
settings must come before JAX and torch are imported, hence at conftest import time.
"""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

try:
    import torch
except ImportError:  # the NumPyro tests run without torch
    pass
else:
    torch.set_num_threads(1)

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
