"""Host-neutral parts of the training helpers ``fit``, ``simulate`` and ``fit_bank``.

The per-host modules (:mod:`faithful_guides.backends.pyro.training`,
:mod:`faithful_guides.backends.numpyro.training`) only run the host's traces and optimizer;
everything that does not depend on the host lives here: the result and simulation-bank
dataclasses, the progress bar with its smoothed loss, the train/validation split and the
minibatches, early stopping, and the wording of the error raised on a non-finite loss
(:func:`nonfinite_message`, fed ``{site: (value_finite, log_prob_finite)}`` by the host).

Both hosts raise :class:`FloatingPointError` when a step's loss (or its update) is not
finite, naming the sites and parameters that are not finite at the parameters of that step.

Example:
    >>> bank = SimulationBank({"mu": np.zeros(5)}, {"x": np.zeros((5, 3))})
    >>> bank.num, bank.subset([0, 2]).observations["x"].shape
    (5, (2, 3))
    >>> msg = nonfinite_message("step 3", float("nan"), {"x": (True, False)}, {}, [])
    >>> print(msg)  # doctest: +ELLIPSIS
    Non-finite loss (nan) at step 3. Not finite at the parameters of that step:
      - site 'x' (model): log_prob
    Fixes: ...
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "EarlyStopping",
    "FitResult",
    "ProgressBar",
    "SimulationBank",
    "finite",
    "minibatches",
    "nonfinite_message",
    "site_checks",
    "split_indices",
]


# --------------------------------------------------------------------------------------
# Results and simulation banks
# --------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """What ``fit`` and ``fit_bank`` return, on both hosts.

    Attributes:
        losses: ``fit``: the loss of every step; ``fit_bank``: the mean training loss
            ``-log q(z | x)`` of every epoch.
        guide: the trained guide (Pyro keeps its parameters in it and the param store).
        params: NumPyro: the trained (constrained) parameters, as ``SVI.get_params`` gives
            them (``fit_bank``: those of the best validation epoch); Pyro: ``None``.
        state: NumPyro: the final ``SVIState`` (to continue training); Pyro: ``None``.
        validation_losses: ``fit_bank``: the mean validation loss of every epoch.
        best_epoch: ``fit_bank``: the epoch whose parameters were kept (0-based).
    """

    losses: np.ndarray
    guide: Any = None
    params: Any = None
    state: Any = None
    validation_losses: np.ndarray | None = None
    best_epoch: int | None = None


@dataclass
class SimulationBank:
    """Joint draws ``(z, x) ~ p`` of a model, one simulated data set per row.

    Attributes:
        latents: ``{site: array}`` of the latent sites, each with a leading ``num`` axis.
        observations: ``{site: array}`` of the observed sites (drawn, not the data), each
            with a leading ``num`` axis.

    The arrays are numpy arrays (``simulate`` converts the host's), so a bank can be saved
    with ``np.savez`` and used by either host.
    """

    latents: dict[str, np.ndarray]
    observations: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        overlap = set(self.latents) & set(self.observations)
        if overlap:
            raise ValueError(f"Sites {sorted(overlap)} are both latent and observed.")
        sizes = {n: np.shape(v)[0] if np.ndim(v) else None for n, v in self.values().items()}
        if len(set(sizes.values())) > 1 or None in sizes.values():
            raise ValueError(f"Every site needs the same leading num axis, found {sizes}.")

    def values(self) -> dict[str, np.ndarray]:
        """Latents and observations in one dict."""
        return {**self.latents, **self.observations}

    @property
    def num(self) -> int:
        """The number of simulations."""
        return int(next(iter(np.shape(v)[0] for v in self.values().values()), 0))

    def __len__(self) -> int:
        return self.num

    def subset(self, index: Any) -> SimulationBank:
        """The bank of the rows ``index`` (an integer array, a slice or a boolean mask)."""
        take = {n: np.asarray(v)[index] for n, v in self.values().items()}
        return SimulationBank(
            {n: take[n] for n in self.latents}, {n: take[n] for n in self.observations}
        )


def split_indices(num: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """A random ``(train, validation)`` split of ``range(num)``; the validation part has
    ``round(validation_fraction * num)`` rows (at least one when the fraction is positive),
    and the training part keeps at least one.

    Example:
        >>> [len(i) for i in split_indices(10, 0.2, seed=0)]
        [8, 2]
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), found {validation_fraction!r}.")
    if num < 1 + (validation_fraction > 0):
        raise ValueError(f"The bank has {num} simulations: too few to train (and validate).")
    order = np.random.default_rng(seed).permutation(num)
    n_val = 0 if validation_fraction == 0 else max(1, round(validation_fraction * num))
    n_val = min(n_val, num - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def minibatches(indices: np.ndarray, batch_size: int, rng: np.random.Generator) -> list:
    """One epoch of shuffled minibatches of ``indices``, all of one size
    (``min(batch_size, len(indices))``; the remainder of a shuffle is left for later
    epochs, so a jitted step compiles once).

    Example:
        >>> [len(b) for b in minibatches(np.arange(10), 4, np.random.default_rng(0))]
        [4, 4]
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, found {batch_size!r}.")
    size = min(batch_size, len(indices))
    order = rng.permutation(indices)
    return [order[i : i + size] for i in range(0, len(order) - size + 1, size)]


class EarlyStopping:
    """Tracks the best validation loss; ``stop`` once it has not improved (strictly) for
    ``patience`` epochs (never when ``patience`` is ``None``).

    Example:
        >>> es = EarlyStopping(patience=1)
        >>> [es.update(v) for v in (3.0, 2.0, 2.5)], es.stop, es.best_epoch
        ([True, True, False], True, 1)
    """

    def __init__(self, patience: int | None) -> None:
        if patience is not None and (not isinstance(patience, int) or patience < 1):
            raise ValueError(f"patience must be a positive int or None, found {patience!r}.")
        self.patience = patience
        self.best = math.inf
        self.best_epoch: int | None = None
        self.epoch = -1
        self.wait = 0

    def update(self, value: float) -> bool:
        """Record one epoch's validation loss; whether it is the best so far."""
        self.epoch += 1
        if math.isfinite(value) and value < self.best:
            self.best, self.best_epoch, self.wait = value, self.epoch, 0
            return True
        self.wait += 1
        return False

    @property
    def stop(self) -> bool:
        return self.patience is not None and self.wait >= self.patience


# --------------------------------------------------------------------------------------
# Progress bar
# --------------------------------------------------------------------------------------


class ProgressBar:
    """A tqdm bar (on stderr) showing an exponentially smoothed loss; prints nothing when
    ``enabled`` is false.

    Args:
        total: the number of updates expected.
        enabled: show the bar.
        unit: tqdm's unit (``"step"``, ``"epoch"``).
        smoothing: weight of each new loss in the moving average (bias-corrected).
    """

    def __init__(
        self, total: int, enabled: bool = True, unit: str = "step", smoothing: float = 0.05
    ) -> None:
        self.smoothing, self._avg, self._n = smoothing, 0.0, 0
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, dynamic_ncols=True)

    @property
    def smoothed(self) -> float:
        """The bias-corrected moving average of the losses so far."""
        return self._avg / (1 - (1 - self.smoothing) ** self._n) if self._n else math.nan

    def update(self, loss: float, **extra: float) -> None:
        """One step (epoch) done with this ``loss``; ``extra`` values are shown as well."""
        if math.isfinite(loss):
            self._avg = (1 - self.smoothing) * self._avg + self.smoothing * loss
            self._n += 1
        if self._bar is not None:
            parts = [f"loss={self.smoothed:.4g}"] + [f"{k}={v:.4g}" for k, v in extra.items()]
            self._bar.set_postfix_str(", ".join(parts), refresh=False)
            self._bar.update()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------
# Non-finite losses: which sites and parameters, and what to try
# --------------------------------------------------------------------------------------


def finite(x: Any) -> bool:
    """Whether every entry of a number, numpy / jax array or torch tensor is finite
    (integer and boolean arrays always are).

    Example:
        >>> finite(1.0), finite([1.0, float("inf")]), finite(np.arange(3))
        (True, False, True)
    """
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.inexact):
        return True
    return bool(np.all(np.isfinite(a)))


def site_checks(sites: Iterable[tuple[str, Any, Any]]) -> dict[str, tuple[bool, bool]]:
    """``{site: (value_finite, log_prob_finite)}`` from ``(name, value, log_prob)`` triples;
    a ``log_prob`` that is an exception (its computation raised) counts as non-finite.

    Example:
        >>> site_checks([("x", 1.0, -np.inf), ("z", np.nan, ValueError("bad"))])
        {'x': (True, False), 'z': (False, False)}
    """
    out = {}
    for name, value, log_prob in sites:
        ok = not isinstance(log_prob, BaseException) and finite(log_prob)
        out[name] = (finite(value), ok)
    return out


_FIXES = (
    "Fixes: lower the learning rate (e.g. optim=Adam with lr 1e-3 or less); check the data's "
    "scale (standardize the observations, and look for inf or nan in them); start the guide "
    "narrower or elsewhere (a smaller init_scale, e.g. init_scale=0.01, or init_loc_fn); "
    "give positive or bounded quantities a constrained distribution or parameter."
)


def nonfinite_message(
    where: str,
    loss: float,
    model_sites: Mapping[str, tuple[bool, bool]],
    guide_sites: Mapping[str, tuple[bool, bool]],
    params: Sequence[str],
    grads: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> str:
    """The message of the :class:`FloatingPointError` raised on a non-finite loss.

    Args:
        where: the step, e.g. ``"step 12 of 500"``.
        loss: the step's loss (finite when only the update was not).
        model_sites, guide_sites: ``{site: (value_finite, log_prob_finite)}`` of the model's
            and the guide's sample sites, re-traced at the parameters of that step.
        params: the parameters whose values are not finite.
        grads: the parameters whose gradient (or update) is not finite.
        notes: extra lines (e.g. a re-trace that raised).
    """
    if math.isfinite(loss):
        head = f"Non-finite update at {where} (its loss {loss:.6g} is finite: a gradient is not)."
    else:
        head = f"Non-finite loss ({loss}) at {where}."
    culprits = []
    for role, sites in (("model", model_sites), ("guide", guide_sites)):
        for name, (value_ok, log_prob_ok) in sites.items():
            bad = [w for w, ok in (("value", value_ok), ("log_prob", log_prob_ok)) if not ok]
            if bad:
                culprits.append(f"site {name!r} ({role}): {' and '.join(bad)}")
    culprits += [f"parameter {name!r}: value" for name in params]
    culprits += [f"parameter {name!r}: gradient" for name in grads]
    lines = [head]
    if culprits:
        lines[0] += " Not finite at the parameters of that step:"
        lines += [f"  - {c}" for c in culprits]
    else:
        lines[0] += (
            " Re-traced at the parameters of that step, every sample site and parameter is "
            "finite: the non-finite value came from a random draw of that step (try another "
            "seed, more particles) or from inside the loss."
        )
    lines += [f"  ({n})" for n in notes]
    lines.append(_FIXES)
    return "\n".join(lines)
