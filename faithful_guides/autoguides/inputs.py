"""What a guide reads besides latents, decided once for both hosts: which model arguments
are covariates, and the fixed statistics that standardize every network input.

Example:
    >>> import numpy as np
    >>> from faithful_guides.graph.model_graph import PlateInfo
    >>> plates = (PlateInfo("data", 5, -1, 5),)
    >>> covs = find_covariates({("arg", 0): np.arange(5.0)}, plates, [])
    >>> [(c.name, c.in_plate, c.features) for c in covs]
    [('arg0', (True,), 1)]
    >>> center, scale = robust_stats(np.array([[1.0], [2.0], [3.0], [1e9]]))
    >>> float(center[0]), round(float(scale[0]), 2)
    (2.5, 1.48)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from faithful_guides.autoguides.structure import Covariate
from faithful_guides.graph.model_graph import PlateInfo

__all__ = ["MAX_GLOBAL_COVARIATE", "find_covariates", "robust_stats"]

MAX_GLOBAL_COVARIATE = 16
"""Float arguments with at most this many elements and no plate axis are global covariates."""


def _label(key: tuple[str, int | str]) -> str:
    return f"arg{key[1]}" if key[0] == "arg" else f"kwarg_{key[1]}"


def find_covariates(
    candidates: Mapping[tuple[str, int | str], np.ndarray],
    plates: Sequence[PlateInfo],
    observed: Sequence[np.ndarray],
    observed_plates: Sequence[str] = (),
    indices: Mapping[str, np.ndarray] | None = None,
) -> tuple[Covariate, ...]:
    """The model arguments that are guide inputs.

    An argument is a covariate of plate ``p`` when its leading axis has ``p``'s full size
    (the plates of observed sites win ties, then the outermost); it is a global covariate
    when it is a float array of at most :data:`MAX_GLOBAL_COVARIATE` elements with no
    such axis. Arguments equal to an observed value are the data, not covariates.

    Args:
        candidates: argument values by ``("arg", i)`` / ``("kwarg", name)``.
        plates: the model's plates, outermost first (the grid).
        observed: the observed values of the set-up run (to leave out).
        observed_plates: names of plates that hold observed sites.
        indices: the set-up run's subsample indices per plate name, so that an argument
            whose subsampled rows are an observed value is recognized as the data.
    """
    out = []
    for key, value in candidates.items():
        a = np.asarray(value)
        if a.dtype.kind not in "fiub" or a.size == 0 or any(_same(a, o) for o in observed):
            continue
        rows = [a[i] for p in plates for i in [(indices or {}).get(p.name)] if _rows_of(a, p, i)]
        if any(_same(r, o) for r in rows for o in observed):
            continue  # the data, subsampled
        matches = [i for i, p in enumerate(plates) if a.ndim >= 1 and a.shape[0] == p.size]
        matches.sort(key=lambda i: (plates[i].name not in observed_plates, i))
        if matches:
            i = matches[0]
            in_plate = tuple(j == i for j in range(len(plates)))
            features = int(np.prod(a.shape[1:], dtype=np.int64))
        elif a.dtype.kind == "f" and a.size <= MAX_GLOBAL_COVARIATE:
            in_plate, features = (False,) * len(plates), int(a.size)
        else:
            continue
        out.append(Covariate(_label(key), key, in_plate, features))
    return tuple(out)


def _rows_of(a: np.ndarray, plate: PlateInfo, idx: np.ndarray | None) -> bool:
    return idx is not None and a.ndim >= 1 and a.shape[0] == plate.size and plate.subsampled


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    b = np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))


def robust_stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature center and scale of ``rows`` shaped ``(n, F)``: the median and the
    normalized median absolute deviation (robust to the heavy tails of prior draws),
    non-finite entries ignored; a zero spread falls back to the standard deviation, then
    to ``max(|center|, 1)``, so every scale is positive."""
    rows = np.asarray(rows, dtype=np.float64)
    rows = np.where(np.isfinite(rows), rows, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        center = np.nanmedian(rows, axis=0)
        scale = 1.4826 * np.nanmedian(np.abs(rows - center), axis=0)
        std = np.nanstd(rows, axis=0)
    center = np.where(np.isfinite(center), center, 0.0)
    tiny = 1e-6 * np.maximum(np.abs(center), 1.0)
    scale = np.where(np.isfinite(scale) & (scale > tiny), scale, std)
    scale = np.where(np.isfinite(scale) & (scale > tiny), scale, np.maximum(np.abs(center), 1.0))
    return center.astype(np.float32), scale.astype(np.float32)
