"""Faithful guides for Pyro (needs ``pip install faithful-guides[pyro]``).

Example:
    >>> from faithful_guides.pyro import trace_model
"""

from faithful_guides.backends.pyro.forward_kl import ForwardKL as ForwardKL
from faithful_guides.backends.pyro.made import AutoFaithfulMADE as AutoFaithfulMADE
from faithful_guides.backends.pyro.tracer import trace_model as trace_model

__all__ = ["AutoFaithfulMADE", "ForwardKL", "trace_model"]
