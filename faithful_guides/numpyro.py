"""Faithful guides for NumPyro (needs ``pip install faithful-guides[numpyro]``).

Example:
    >>> from faithful_guides.numpyro import AutoFaithfulMADE, trace_model
"""

from faithful_guides.backends.numpyro.forward_kl import ForwardKL as ForwardKL
from faithful_guides.backends.numpyro.iterative import AutoIterative as AutoIterative
from faithful_guides.backends.numpyro.iterative import IterativeELBO as IterativeELBO
from faithful_guides.backends.numpyro.made import AutoFaithfulMADE as AutoFaithfulMADE
from faithful_guides.backends.numpyro.tracer import trace_model as trace_model
from faithful_guides.backends.numpyro.training import fit as fit
from faithful_guides.backends.numpyro.training import fit_bank as fit_bank
from faithful_guides.backends.numpyro.training import simulate as simulate
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
