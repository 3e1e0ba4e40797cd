"""Checks of user input shared by the hosts' guides: the same mistakes get the same messages
in Pyro and NumPyro.

Example:
    >>> check_made_options(init_scale=0.1, hidden_dims=[64, 64], summary_dim=16)
    (0.1, (64, 64), 16)
    >>> check_made_options(init_scale=0.1, hidden_dims=[], summary_dim=16)
    Traceback (most recent call last):
    ...
    ValueError: hidden_dims must be a non-empty sequence of positive ints, found []...
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

__all__ = ["check_made_options", "check_observed_shape", "missing_observation"]


def check_made_options(
    *, init_scale: float, hidden_dims: Sequence[int] | None, summary_dim: int
) -> tuple[float, tuple[int, ...] | None, int]:
    """Validate the options of ``AutoFaithfulMADE`` and return them normalized
    ``(init_scale, hidden_dims, summary_dim)`` (``hidden_dims`` as a tuple or None)."""
    if (
        isinstance(init_scale, bool)
        or not isinstance(init_scale, numbers.Real)
        or not init_scale > 0
    ):
        raise ValueError(f"Expected init_scale > 0, found {init_scale!r}.")
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


def check_observed_shape(
    name: str, shape: tuple[int, ...], expected: tuple[int, ...], axis: int | None
) -> None:
    """Raise a ``ValueError`` unless an observed value shaped ``shape`` matches the shape
    ``expected`` the guide was set up with, except along the plate dim ``axis`` (None: the
    site is in no plate), whose row count may change from call to call."""
    if _drop(shape, axis) != _drop(expected, axis):
        raise ValueError(
            f"Observed site {name!r} has shape {tuple(shape)} in this call; the guide was set "
            f"up with per-row shape {_drop(expected, axis)}. Create a new guide for data of "
            "another shape (only the plate's row count may change)."
        )


def missing_observation(name: str, found: str) -> ValueError:
    """The error for an observed site whose value this call does not give (``found``: what
    the call has there instead, e.g. "a latent site")."""
    return ValueError(
        f"Observed site {name!r} has no observed value in this call (found {found}): the "
        "guide was set up with it observed and conditions on it. Pass its data to the guide "
        "as to the model (e.g. guide(x) rather than guide(None)); for posterior predictive "
        "draws of it, run Predictive on the model with the guide's posterior samples."
    )


def _positive_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) >= 1


def _drop(shape: tuple[int, ...], axis: int | None) -> tuple[int, ...]:
    """``shape`` without its plate dim."""
    return tuple(shape) if axis is None else tuple(shape[:axis]) + tuple(shape[axis + 1 :])
