"""Checks of the options every guide family shares, and one checker per family: the same
mistakes get the same messages in Pyro and NumPyro.

Example:
    >>> check_options(init_scale=0.1, hidden_dims=[64, 64], summary_dim=16, structure="nami")
    (0.1, (64, 64), 16)
    >>> check_options(init_scale=0.1, hidden_dims=[], summary_dim=16, structure="nami")
    Traceback (most recent call last):
    ...
    ValueError: hidden_dims must be a non-empty sequence of positive ints, found []...
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from faithful_guides.autoguides.errors import unknown_structure_error
from faithful_guides.autoguides.structure import STRUCTURES

__all__ = ["check_iterative_options", "check_options"]


def check_options(
    *,
    init_scale: float,
    hidden_dims: Sequence[int] | None,
    summary_dim: int,
    structure: str,
) -> tuple[float, tuple[int, ...] | None, int]:
    """Validate the shared options and return ``(init_scale, hidden_dims, summary_dim)``
    normalized (``hidden_dims`` as a tuple or None)."""
    if (
        isinstance(init_scale, bool)
        or not isinstance(init_scale, numbers.Real)
        or not init_scale > 0
    ):
        raise ValueError(f"Expected init_scale > 0, found {init_scale!r}.")
    if structure not in STRUCTURES:
        raise unknown_structure_error(structure, STRUCTURES)
    if hidden_dims is not None:
        ok = isinstance(hidden_dims, Sequence) and len(hidden_dims) > 0
        if not ok or any(not _positive_int(h) for h in hidden_dims):
            raise ValueError(
                f"hidden_dims must be a non-empty sequence of positive ints, found "
                f"{hidden_dims!r}. Pass e.g. hidden_dims=(64, 64), or leave it out for the "
                "default width."
            )
        hidden_dims = tuple(int(h) for h in hidden_dims)
    if not _positive_int(summary_dim):
        raise ValueError(f"summary_dim must be a positive int, found {summary_dim!r}.")
    return float(init_scale), hidden_dims, int(summary_dim)


def _positive_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) >= 1


def check_iterative_options(
    *, num_steps: int, inputs: str, init: str, observed_inputs: bool
) -> tuple[int, str, str, bool]:
    """Validate AutoIterative's own options; return them normalized.

    Example:
        >>> check_iterative_options(num_steps=5, inputs="gradient", init="prior",
        ...                         observed_inputs=True)
        (5, 'gradient', 'prior', True)
    """
    from faithful_guides.autoguides.iterative_plan import INITS, INPUT_KINDS

    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 0:
        raise ValueError(f"num_steps must be an int >= 0 (the refinements T), found {num_steps!r}.")
    if inputs not in INPUT_KINDS:
        raise ValueError(
            f"Unknown inputs {inputs!r}: expected one of {', '.join(INPUT_KINDS)} (what the "
            "update network reads besides the current parameters)."
        )
    if init not in INITS:
        raise ValueError(f"Unknown init {init!r}: expected one of {', '.join(INITS)}.")
    if not isinstance(observed_inputs, bool):
        raise TypeError(f"observed_inputs must be True or False, found {observed_inputs!r}.")
    return int(num_steps), inputs, init, observed_inputs
