"""Shared setup of the ported host autoguide tests (``tests/ported``).

Keeps each test to one CPU thread (the test machines are shared). Must run before JAX and
torch are imported, hence at conftest import time.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

try:
    import torch
except ImportError:  # the NumPyro file runs without torch
    pass
else:
    torch.set_num_threads(1)
