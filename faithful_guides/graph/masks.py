r"""DAG-masked MADE masks (Germain et al. 2015, generalized to a DAG by Webb et al. 2018).

Convention (one place, both backends): a mask is a numpy bool array shaped
``(out_features, in_features)``, the same layout as ``torch.nn.Linear.weight``; a layer
computes ``h_out = act((W * M) @ h_in + b)``. JAX code uses ``x @ (W * M).T`` with the
very same arrays.

Every unit carries the set of input features it may see. Input feature ``i`` sees
``{i}``; output ``j`` sees ``allowed[j]``; hidden units are dealt, round robin, the
singletons of every allowed feature and then the distinct allowed sets. A lower unit
feeds an upper unit iff the upper unit's set contains the lower unit's. Hence output
``j`` depends on no feature outside ``allowed[j]``, and, as long as every hidden layer has
a unit for each singleton, on all of them.

Example:
    >>> ms = made_masks(3, [set(), {0}, {0, 1}], [4])
    >>> [m.shape for m in ms]
    [(4, 3), (3, 4)]
    >>> connectivity(ms).astype(int).tolist()
    [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np


def hidden_sets(allowed: Sequence[frozenset[int]]) -> list[frozenset[int]]:
    """The sets hidden units are dealt: singletons first, then distinct larger sets."""
    singles = sorted({i for s in allowed for i in s})
    sets = [frozenset({i}) for i in singles]
    seen = set(sets)
    for s in allowed:
        s = frozenset(s)
        if len(s) > 1 and s not in seen:
            seen.add(s)
            sets.append(s)
    return sets


def made_masks(
    in_features: int, allowed: Sequence[set[int] | frozenset[int]], hidden: Sequence[int]
) -> list[np.ndarray]:
    """Masks for a MADE whose output ``j`` may depend only on inputs ``allowed[j]``.

    Args:
        in_features: number of input features.
        allowed: for each output feature, the input features it may see.
        hidden: widths of the hidden layers.

    Returns:
        ``len(hidden) + 1`` bool masks shaped ``(out, in)``.

    Raises:
        ValueError: an allowed index outside ``range(in_features)``, or a hidden layer
            of width zero.
    """
    allowed = [frozenset(s) for s in allowed]
    for j, s in enumerate(allowed):
        bad = [i for i in s if not 0 <= i < in_features]
        if bad:
            raise ValueError(
                f"Output {j} is allowed input features {sorted(bad)}, but there are only "
                f"{in_features} inputs."
            )
    if any(h < 1 for h in hidden):
        raise ValueError(f"Hidden layer widths must be positive, found {list(hidden)}.")
    pool = hidden_sets(allowed)
    singles = sum(1 for s in pool if len(s) == 1)
    if pool and min(hidden, default=singles) < singles:
        warnings.warn(
            f"A hidden layer of width {min(hidden)} cannot carry all {singles} input features "
            "an output may see: some outputs will ignore some of their parents. "
            f"Use hidden layers of at least {singles} units.",
            stacklevel=2,
        )
    inputs = [frozenset({i}) for i in range(in_features)]
    layers = [[pool[k % len(pool)] if pool else frozenset() for k in range(h)] for h in hidden]
    masks, below = [], inputs
    for units in [*layers, allowed]:
        masks.append(np.array([[lo <= up for lo in below] for up in units], dtype=bool))
        below = units
    return masks


def connectivity(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Which outputs can reach which inputs through the masked layers: a bool
    ``(out, in)`` array, the sparsity a Jacobian of the masked network can have."""
    reach = masks[0].astype(np.int64)
    for m in masks[1:]:
        reach = np.minimum(m.astype(np.int64) @ reach, 1)
    return reach.astype(bool)
