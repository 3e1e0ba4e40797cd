"""Faithful guides for NumPyro (needs ``pip install faithful-guides[numpyro]``).

Example:
    >>> from faithful_guides.numpyro import AutoFaithfulMADE, trace_model
"""

from faithful_guides.backends.numpyro.forward_kl import ForwardKL as ForwardKL
from faithful_guides.backends.numpyro.made import AutoFaithfulMADE as AutoFaithfulMADE
from faithful_guides.backends.numpyro.tracer import trace_model as trace_model

__all__ = ["AutoFaithfulMADE", "ForwardKL", "trace_model"]
