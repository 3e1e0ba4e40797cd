"""Pyro training helpers: ``fit`` (SVI with a progress bar and named non-finite losses),
``simulate`` (a bank of joint draws) and ``fit_bank`` (neural posterior estimation on it).

The host-neutral parts (results, bank, split, early stopping, messages) are in
:mod:`faithful_guides.training`; this module is the Pyro glue. NumPyro's
:mod:`faithful_guides.backends.numpyro.training` has the same functions and semantics.

Example:
    >>> from faithful_guides.pyro import fit  # doctest: +SKIP
    >>> result = fit(model, guide, data, num_steps=1000)  # doctest: +SKIP
    >>> result.losses[-1]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.util import torch_item, zero_grads
from pyro.optim import Adam
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from faithful_guides.backends.pyro.forward_kl import ForwardKL
from faithful_guides.training import (
    EarlyStopping,
    FitResult,
    ProgressBar,
    SimulationBank,
    finite,
    minibatches,
    nonfinite_message,
    site_checks,
    split_indices,
)

__all__ = ["fit", "fit_bank", "simulate"]

Model = Callable[..., Any]


def fit(
    model: Model,
    guide: Model,
    *args: Any,
    num_steps: int,
    optim: Any = None,
    loss: Any = None,
    progress: bool = True,
    seed: int | None = None,
    **kwargs: Any,
) -> FitResult:
    """Run ``num_steps`` steps of ``SVI(model, guide, optim, loss)`` on ``*args, **kwargs``.

    Args:
        optim: a ``pyro.optim`` optimizer (default ``Adam({"lr": 1e-2})``).
        loss: an ELBO (default ``Trace_ELBO()``), e.g. :class:`ForwardKL`.
        progress: show a tqdm bar with the smoothed loss (on stderr).
        seed: if given, ``pyro.set_rng_seed(seed)`` first (default: leave the RNG as it is).

    Returns:
        a :class:`~faithful_guides.training.FitResult` with ``losses`` (one per step) and
        ``guide``. Parameters live in the guide and the param store, as after ``svi.step``.

    Raises:
        FloatingPointError: when a step's loss or gradient is not finite (the step is not
            applied); the message names every sample site of the model and guide traces
            whose value or log_prob is not finite at that step's parameters, every
            non-finite parameter, and what to try.
    """
    if seed is not None:
        import pyro

        pyro.set_rng_seed(seed)
    svi = SVI(model, guide, optim or Adam({"lr": 1e-2}), loss or Trace_ELBO())
    losses = []
    with ProgressBar(num_steps, progress) as bar:
        for step in range(num_steps):
            where = f"step {step} of {num_steps}"
            value, bad_grads, error = _step(svi, args, kwargs)
            if not finite(value) or bad_grads:
                message = _diagnose(model, guide, args, kwargs, where, value, bad_grads, error)
                raise FloatingPointError(message) from error
            losses.append(value)
            bar.update(value)
    return FitResult(np.asarray(losses), guide=guide)


def simulate(model: Model, *args: Any, num: int, seed: int = 0, **kwargs: Any) -> SimulationBank:
    """``num`` joint draws ``(z, x) ~ p`` of ``model(*args, **kwargs)`` with its observed sites
    unconditioned (as :class:`ForwardKL` draws them: the data only fix shapes and plate
    sizes), as a :class:`~faithful_guides.training.SimulationBank` of numpy arrays shaped
    ``(num, *site_shape)``. The global torch RNG is left as it was.

    Raises:
        ValueError: for a subsampled plate (a bank stores whole data sets).
    """
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive int, found {num!r}.")
    rows: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []
    with torch.random.fork_rng(devices=[]), torch.no_grad(), poutine.block():
        torch.manual_seed(seed)
        for _ in range(num):
            tr = poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs)
            latents, observations = {}, {}
            for name, site in tr.nodes.items():
                if site["type"] != "sample" or site_is_subsample(site):
                    continue
                if site["infer"].get("is_auxiliary"):
                    continue
                for f in site["cond_indep_stack"]:
                    if f.full_size is not None and f.size != f.full_size:
                        raise ValueError(_SUBSAMPLED.format(f.name, f.size, f.full_size))
                was_observed = site["infer"].get("was_observed", False)
                (observations if was_observed else latents)[name] = site["value"].numpy()
            rows.append((latents, observations))
    stack = [{n: np.stack([r[i][n] for r in rows]) for n in rows[0][i]} for i in (0, 1)]
    return SimulationBank(*stack)


_SUBSAMPLED = (
    "Plate {!r} is subsampled ({} of {} rows): a simulation bank stores whole data sets; "
    "simulate without subsample_size."
)


def fit_bank(
    model: Model,
    guide: Model,
    bank: SimulationBank,
    *args: Any,
    batch_size: int = 32,
    num_epochs: int = 50,
    validation_fraction: float = 0.1,
    patience: int | None = 5,
    optim: Any = None,
    progress: bool = True,
    seed: int = 0,
    **kwargs: Any,
) -> FitResult:
    """Train an amortized guide on a simulation bank: minimize the mean over minibatches of
    simulations of ``-log q(z_s | x_s)`` (:class:`ForwardKL`'s scoring, on the bank's draws
    instead of fresh ones: the guide gets ``observations=`` the simulation's observations).

    ``args, kwargs`` are the model's (they fix shapes and plate sizes, as for ForwardKL). A
    random ``validation_fraction`` of the bank (split by ``seed``) is held out; its mean loss
    is computed every epoch, training stops once it has not improved for ``patience`` epochs
    (``None``: never) and the parameters of the best epoch are restored.

    Args:
        optim: a ``pyro.optim`` optimizer (default ``Adam({"lr": 1e-2})``).

    Returns:
        a :class:`~faithful_guides.training.FitResult`: ``losses`` (mean training loss of
        each epoch), ``validation_losses``, ``best_epoch`` and ``guide``.

    Raises:
        FloatingPointError: on a non-finite loss or gradient, naming the simulation, sites
            and parameters responsible.
    """
    train, val = split_indices(bank.num, validation_fraction, seed)
    rng = np.random.default_rng(seed)
    values = {n: torch.as_tensor(v) for n, v in bank.values().items()}
    latent_names = list(bank.latents)
    batch = _BankBatch(values, latent_names)
    svi = SVI(model, guide, optim or Adam({"lr": 1e-2}), batch.loss)
    stopper, best, train_losses, val_losses = EarlyStopping(patience), None, [], []
    with ProgressBar(num_epochs, progress, unit="epoch", smoothing=1.0) as bar:
        for epoch in range(num_epochs):
            epoch_losses = []
            for k, rows in enumerate(minibatches(train, batch_size, rng)):
                batch.rows = rows
                value, bad_grads, error = _step(svi, args, kwargs)
                if not finite(value) or bad_grads:
                    where, sim = batch.culprit(f"epoch {epoch}, step {k}")
                    pin, obs = batch.simulation(sim)
                    message = _diagnose(
                        model, guide, args, kwargs, where, value, bad_grads, error, pin, obs
                    )
                    raise FloatingPointError(message) from error
                epoch_losses.append(value)
            train_losses.append(float(np.mean(epoch_losses)))
            if len(val):
                with torch.no_grad():
                    val_losses.append(batch.mean_loss(model, guide, val, batch_size, args, kwargs))
                if stopper.update(val_losses[-1]):
                    best = _snapshot(guide)
            bar.update(train_losses[-1], val=val_losses[-1] if val_losses else float("nan"))
            if stopper.stop:
                break
    if best is not None:
        _restore(best)
    return FitResult(
        np.asarray(train_losses),
        guide=guide,
        validation_losses=np.asarray(val_losses),
        best_epoch=stopper.best_epoch if len(val) else len(train_losses) - 1,
    )


# --------------------------------------------------------------------------------------
# glue
# --------------------------------------------------------------------------------------


def _step(svi: SVI, args: tuple, kwargs: dict) -> tuple[float, list[str], Exception | None]:
    """``svi.step`` that applies the update only when the loss and the gradients are
    finite; returns the loss, the names of the parameters whose gradient is not, and the
    validation error of a distribution that got a non-finite argument (then the loss is
    nan: the error is the symptom of a non-finite value, as NumPyro, which does not
    validate, would show it)."""
    with poutine.trace(param_only=True) as capture:
        try:
            value = svi.loss_and_grads(svi.model, svi.guide, *args, **kwargs)
        except ValueError as e:
            if not _is_validation_error(e):
                raise
            value, error = float("nan"), e
        else:
            error = None
    named = {n: s["value"].unconstrained() for n, s in capture.trace.nodes.items()}
    params = set(named.values())
    value = torch_item(sum(value) if isinstance(value, tuple) else value)
    bad = [n for n, p in named.items() if p.grad is not None and not finite(p.grad)]
    if finite(value) and not bad:
        svi.optim(params)
    zero_grads(params)
    return value, bad, error


def _is_validation_error(e: ValueError) -> bool:
    text = str(e)
    return "Expected parameter" in text or "Expected value argument" in text


class _Pin(Messenger):
    """Fix the values of the named sample sites, latent or observed, whatever the inner
    handlers did (entered outside :class:`ForwardKL`'s ``uncondition``, it turns its
    joint draw into the bank's simulation)."""

    def __init__(self, values: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["name"] in self.values:
            msg["value"] = self.values[msg["name"]]


class _BankBatch:
    """The current minibatch of the bank and ForwardKL's loss on it (a callable loss for
    ``SVI``: one scoring per simulation, averaged)."""

    def __init__(self, values: dict[str, torch.Tensor], latent_names: list[str]) -> None:
        self.values, self.latent_names = values, latent_names
        self.rows: np.ndarray = np.zeros(0, dtype=int)
        self.per_simulation: list[float] = []
        self._fkl = ForwardKL()

    def simulation(self, i: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(all values, observations)`` of simulation ``i``."""
        pin = {n: v[i] for n, v in self.values.items()}
        return pin, {n: v for n, v in pin.items() if n not in self.latent_names}

    def score(self, model: Model, guide: Model, i: int, args: tuple, kwargs: dict) -> Any:
        with _Pin(self.simulation(i)[0]):
            return self._fkl._particle(model, guide, args, kwargs)

    def loss(self, model: Model, guide: Model, *args: Any, **kwargs: Any) -> torch.Tensor:
        scores = [self.score(model, guide, int(i), args, kwargs) for i in self.rows]
        self.per_simulation = [float(s.detach()) for s in scores]
        return torch.stack(scores).mean()

    def culprit(self, where: str) -> tuple[str, int]:
        """The step's description and its first simulation whose loss is not finite (the
        first of the minibatch when all are: then a gradient was not)."""
        bad = [k for k, v in enumerate(self.per_simulation) if not finite(v)]
        sim = int(self.rows[bad[0] if bad else 0])
        return f"{where} (simulation {sim} of the bank)", sim

    def mean_loss(
        self, model: Model, guide: Model, rows: np.ndarray, size: int, args: tuple, kwargs: dict
    ) -> float:
        del size  # Pyro scores one simulation at a time
        return float(np.mean([float(self.score(model, guide, int(i), args, kwargs)) for i in rows]))


def _diagnose(
    model: Model,
    guide: Model,
    args: tuple,
    kwargs: dict,
    where: str,
    value: float,
    bad_grads: list[str],
    error: Exception | None = None,
    pin: Mapping[str, torch.Tensor] | None = None,
    observations: Mapping[str, torch.Tensor] | None = None,
) -> str:
    """Re-trace the guide and the model (replaying the guide; ``pin``: the simulation's
    values) at the current parameters and word what is not finite (a re-trace that a
    distribution's validation stops is run again without validation)."""
    import pyro

    notes = [] if error is None else [f"the step raised {type(error).__name__}: {error}"]
    extra = {} if observations is None else {"observations": observations}
    for validate in (True, False):
        guide_sites, model_sites = {}, {}
        checks = contextlib.nullcontext() if validate else pyro.validation_enabled(False)
        capture = poutine.trace(param_only=True)
        with torch.no_grad(), poutine.block(), _Pin(pin or {}), checks, capture:
            try:
                guide_tr = poutine.trace(guide).get_trace(*args, **kwargs, **extra)
                guide_sites = site_checks(_sites(guide_tr))
                model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(
                    *args, **kwargs
                )
                model_sites = site_checks(_sites(model_tr))
                break
            except Exception as e:  # the re-trace itself fails on non-finite values
                retry = validate and isinstance(e, ValueError) and _is_validation_error(e)
                if not retry:
                    notes.append(f"re-tracing raised {type(e).__name__}: {e}")
                    break
    params = {n: s["value"] for n, s in capture.trace.nodes.items()}
    bad_params = [n for n, p in params.items() if not finite(p)]
    return nonfinite_message(where, value, model_sites, guide_sites, bad_params, bad_grads, notes)


def _sites(tr: poutine.Trace) -> list[tuple[str, Any, Any]]:
    out = []
    for name, site in tr.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        try:
            with warnings.catch_warnings():  # out-of-support values are what we look for
                warnings.simplefilter("ignore")
                log_prob = site["fn"].log_prob(site["value"])
        except Exception as e:
            log_prob = e
        out.append((name, site["value"], log_prob))
    return out


def _snapshot(guide: Model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Copies of the param store's (unconstrained) parameters and the guide's own."""
    import pyro

    params = [p for _, p in pyro.get_param_store().named_parameters()]
    if isinstance(guide, torch.nn.Module):
        params += list(guide.parameters())
    unique = {id(p): p for p in params}
    return [(p, p.detach().clone()) for p in unique.values()]


def _restore(saved: list[tuple[Any, Any]]) -> None:
    with torch.no_grad():
        for p, value in saved:
            p.copy_(value)
