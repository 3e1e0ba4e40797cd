"""The numbers every guide family uses, on both hosts (one place, so the hosts cannot drift).

Example:
    >>> MAX_INPUT, MAX_JOINT
    (64, 64)
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_INPUT = 64
"""Sites with more features per grid cell than this are not network inputs (a long vector
site would make every reader's first layer as wide as itself); the readers' free
parameters carry what they would have said."""

MAX_JOINT = 64
"""Latent sites up to this many features (and no batch dims outside plates) get a full
covariance inside the site (a learned unit lower-triangular coupling); longer ones a
diagonal one, so a site's cost stays linear in its length."""

LOG_SCALE_BOUND = 5.0
r"""The networks move a conditional's log-scale by at most this much around the site's free
log-scale parameter: :math:`\log\sigma = s + b \tanh(\rho / b)`."""

OUTPUT_INIT = 0.0
"""Raw output-layer weights of the networks start at this times a standard normal: zero, so
the guide starts exactly at ``N(init_loc, init_scale)`` (``init_loc_fn`` is honoured to the
digit, as by ``AutoNormal``); the hidden layers get gradients from the second step on."""

STANDARDIZE_DRAWS = 32
"""Prior-predictive draws used, with the set-up data, for the input statistics."""


def default_hidden(widest: int) -> tuple[int, int]:
    """The default ``hidden_dims``: two layers of ``max(32, 2 F)`` units, ``F`` the most input
    features any one output of a network sees together (so each layer can carry them)."""
    return (max(32, 2 * widest),) * 2


def default_hidden_for(rows: Sequence[frozenset[int]]) -> tuple[int, int]:
    """The default ``hidden_dims`` of a network whose output ``j`` reads the input features
    ``rows[j]``: :func:`default_hidden` for the widest row, widened to a unit per input
    feature read (so that :func:`~faithful_guides.graph.masks.made_masks` can give every
    output all of its inputs).

    Example:
        >>> default_hidden_for([frozenset(range(40)), frozenset({40})])
        (80, 80)
    """
    union = frozenset().union(*rows) if rows else frozenset()
    width = max(default_hidden(max(map(len, rows), default=0))[0], len(union))
    return (width, width)
