"""Faithful guides for Pyro (needs ``pip install faithful-guides[pyro]``).

Example:
    >>> from faithful_guides.pyro import trace_model
"""

from faithful_guides.backends.pyro.forward_kl import ForwardKL as ForwardKL
from faithful_guides.backends.pyro.iterative import AutoIterative as AutoIterative
from faithful_guides.backends.pyro.iterative import IterativeELBO as IterativeELBO
from faithful_guides.backends.pyro.made import AutoFaithfulMADE as AutoFaithfulMADE
from faithful_guides.backends.pyro.tracer import trace_model as trace_model
from faithful_guides.backends.pyro.training import fit as fit
from faithful_guides.backends.pyro.training import fit_bank as fit_bank
from faithful_guides.backends.pyro.training import simulate as simulate
from faithful_guides.training import FitResult as FitResult
from faithful_guides.training import SimulationBank as SimulationBank

__all__ = [
    "AutoFaithfulMADE",
    "AutoIterative",
    "FitResult",
    "ForwardKL",
    "IterativeELBO",
    "SimulationBank",
    "fit",
    "fit_bank",
    "simulate",
    "trace_model",
]
