"""NumPyro training helpers: ``fit`` (jitted SVI with a progress bar and named non-finite
losses), ``simulate`` (a bank of joint draws) and ``fit_bank`` (neural posterior
estimation on it).

The host-neutral parts (results, bank, split, early stopping, messages) are in
:mod:`faithful_guides.training`; this module is the NumPyro glue. Pyro's
:mod:`faithful_guides.backends.pyro.training` has the same functions and semantics.

Example:
    >>> from faithful_guides.numpyro import fit  # doctest: +SKIP
    >>> result = fit(model, guide, data, num_steps=1000)  # doctest: +SKIP
    >>> guide.median(result.params, data)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.elbo import ELBO
from numpyro.optim import Adam
from numpyro.primitives import Messenger

from faithful_guides.backends.numpyro.forward_kl import ForwardKL, _Uncondition
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
    seed: int = 0,
    **kwargs: Any,
) -> FitResult:
    """Run ``num_steps`` jitted steps of ``SVI(model, guide, optim, loss)`` (as ``svi.run``
    does) on ``*args, **kwargs``, starting from ``svi.init(PRNGKey(seed), ...)``.

    Args:
        optim: a ``numpyro.optim`` optimizer (default ``Adam(1e-2)``).
        loss: an ELBO (default ``Trace_ELBO()``), e.g. :class:`ForwardKL`.
        progress: show a tqdm bar with the smoothed loss (on stderr).
        seed: the seed of the ``PRNGKey`` of ``svi.init``.

    Returns:
        a :class:`~faithful_guides.training.FitResult` with ``losses`` (one per step),
        ``params`` (``svi.get_params`` of the final state), ``state`` and ``guide``.

    Raises:
        FloatingPointError: when a step's loss or update is not finite; the message names
            every sample site of the model and guide traces whose value or log_prob is not
            finite at that step's parameters, every non-finite parameter, and what to try.
    """
    svi = SVI(model, guide, optim or Adam(1e-2), loss or Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(seed), *args, **kwargs)

    @jax.jit
    def update(state: Any) -> tuple[Any, jax.Array, jax.Array]:
        new, value = svi.update(state, *args, **kwargs)
        return new, value, _all_finite(svi.optim.get_params(new.optim_state))

    losses = []
    with ProgressBar(num_steps, progress) as bar:
        for step in range(num_steps):
            new, value, ok = update(state)
            value = float(value)
            if not (np.isfinite(value) and bool(ok)):
                where = f"step {step} of {num_steps}"
                raise FloatingPointError(
                    _diagnose(svi, state, new, args, kwargs, where, value, step)
                )
            state = new
            losses.append(value)
            bar.update(value)
    return FitResult(np.asarray(losses), guide=guide, params=svi.get_params(state), state=state)


def simulate(model: Model, *args: Any, num: int, seed: int = 0, **kwargs: Any) -> SimulationBank:
    """``num`` joint draws ``(z, x) ~ p`` of ``model(*args, **kwargs)`` with its observed sites
    unconditioned (as :class:`ForwardKL` draws them: the data only fix shapes and plate
    sizes), as a :class:`~faithful_guides.training.SimulationBank` of numpy arrays shaped
    ``(num, *site_shape)`` (one jitted, vmapped run).

    Raises:
        ValueError: for a subsampled plate (a bank stores whole data sets).
    """
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive int, found {num!r}.")
    observed: set[str] = set()

    def one(key: jax.Array) -> dict[str, jax.Array]:
        unconditioned = _Uncondition(model)
        tr = handlers.trace(handlers.seed(unconditioned, key)).get_trace(*args, **kwargs)
        observed.update(unconditioned.observed)
        out = {}
        for name, site in tr.items():
            if site["type"] == "plate" and site["args"][1] not in (None, site["args"][0]):
                raise ValueError(_SUBSAMPLED.format(name, site["args"][1], site["args"][0]))
            if site["type"] == "sample" and not site["infer"].get("is_auxiliary"):
                out[name] = site["value"]
        return out

    keys = jax.random.split(jax.random.PRNGKey(seed), num)
    with handlers.block():
        draws = {n: np.array(v) for n, v in jax.jit(jax.vmap(one))(keys).items()}
    return SimulationBank(
        {n: v for n, v in draws.items() if n not in observed},
        {n: v for n, v in draws.items() if n in observed},
    )


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
    instead of fresh ones: the guide gets ``observations=`` the simulation's observations;
    the simulations of a minibatch are vmapped, the step jitted).

    ``args, kwargs`` are the model's (they fix shapes and plate sizes, as for ForwardKL). A
    random ``validation_fraction`` of the bank (split by ``seed``) is held out; its mean loss
    is computed every epoch, training stops once it has not improved for ``patience`` epochs
    (``None``: never) and the parameters of the best epoch are restored.

    Args:
        optim: a ``numpyro.optim`` optimizer (default ``Adam(1e-2)``).

    Returns:
        a :class:`~faithful_guides.training.FitResult`: ``losses`` (mean training loss of
        each epoch), ``validation_losses``, ``best_epoch``, ``params`` (of the best epoch),
        ``state`` and ``guide``.

    Raises:
        FloatingPointError: on a non-finite loss or update, naming the simulation, sites and
            parameters responsible.
    """
    train, val = split_indices(bank.num, validation_fraction, seed)
    rng = np.random.default_rng(seed)
    values = {n: jnp.asarray(v) for n, v in bank.values().items()}
    latent_names = set(bank.latents)
    fkl = ForwardKL()
    svi = SVI(model, guide, optim or Adam(1e-2), _BankLoss(fkl))
    state = svi.init(jax.random.PRNGKey(seed), *args, **kwargs)

    def take(values: dict[str, jax.Array], rows: jax.Array) -> dict[str, jax.Array]:
        return {n: v[rows] for n, v in values.items()}

    @jax.jit
    def update(state: Any, values: Any, rows: jax.Array) -> tuple[Any, jax.Array, jax.Array]:
        new, value = svi.update(state, *args, _bank=take(values, rows), **kwargs)
        return new, value, _all_finite(svi.optim.get_params(new.optim_state))

    @jax.jit
    def per_simulation(params: Any, values: Any, rows: jax.Array, key: jax.Array) -> jax.Array:
        picked = take(values, rows)
        return _per_simulation(fkl, key, params, model, guide, picked, args, kwargs)

    def mean_loss(params: Any, rows: np.ndarray) -> float:
        size = min(batch_size, len(rows))
        total = 0.0
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            padded = np.concatenate([chunk, np.full(size - len(chunk), chunk[0])])
            out = per_simulation(params, values, padded, jax.random.PRNGKey(0))
            total += float(jnp.sum(out[: len(chunk)]))
        return total / len(rows)

    stopper, best, train_losses, val_losses = EarlyStopping(patience), state, [], []
    with ProgressBar(num_epochs, progress, unit="epoch", smoothing=1.0) as bar:
        for epoch in range(num_epochs):
            epoch_losses = []
            for k, rows in enumerate(minibatches(train, batch_size, rng)):
                new, value, ok = update(state, values, rows)
                value = float(value)
                if not (np.isfinite(value) and bool(ok)):
                    params = svi.get_params(state)
                    per = np.asarray(per_simulation(params, values, rows, jax.random.PRNGKey(0)))
                    bad = np.flatnonzero(~np.isfinite(per))
                    sim = int(rows[bad[0] if len(bad) else 0])
                    where = f"epoch {epoch}, step {k} (simulation {sim} of the bank)"
                    pin = {n: v[sim] for n, v in values.items()}
                    obs = {n: v for n, v in pin.items() if n not in latent_names}
                    message = _diagnose(
                        svi, state, new, args, kwargs, where, value, k, pin=pin, observations=obs
                    )
                    raise FloatingPointError(message)
                state = new
                epoch_losses.append(value)
            train_losses.append(float(np.mean(epoch_losses)))
            if len(val):
                val_losses.append(mean_loss(svi.get_params(state), val))
                if stopper.update(val_losses[-1]):
                    best = state
            bar.update(train_losses[-1], val=val_losses[-1] if val_losses else float("nan"))
            if stopper.stop:
                break
    final = best if len(val) else state
    return FitResult(
        np.asarray(train_losses),
        guide=guide,
        params=svi.get_params(final),
        state=final,
        validation_losses=np.asarray(val_losses),
        best_epoch=stopper.best_epoch if len(val) else len(train_losses) - 1,
    )


# --------------------------------------------------------------------------------------
# glue
# --------------------------------------------------------------------------------------


def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


class _Pin(Messenger):
    """Fix the values of the named sample sites, latent or observed, whatever the inner
    handlers did (entered outside :class:`ForwardKL`'s unconditioning, it turns its joint
    draw into the bank's simulation)."""

    def __init__(self, values: Mapping[str, jax.Array]) -> None:
        super().__init__()
        self.values = values

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and msg["name"] in self.values:
            msg["value"] = self.values[msg["name"]]


def _per_simulation(
    fkl: ForwardKL,
    key: jax.Array,
    params: Any,
    model: Model,
    guide: Model,
    values: dict[str, jax.Array],
    args: tuple,
    kwargs: dict,
) -> jax.Array:
    """ForwardKL's loss of each simulation of ``values`` (leading axis), vmapped."""
    num = next(iter(values.values())).shape[0]

    def one(k: jax.Array, row: dict[str, jax.Array]) -> jax.Array:
        with _Pin(row):
            return fkl.loss_with_mutable_state(k, params, model, guide, *args, **kwargs)["loss"]

    return jax.vmap(one)(jax.random.split(key, num), values)


class _BankLoss(ELBO):
    """The mean of :func:`_per_simulation` over the minibatch passed as ``_bank=``."""

    def __init__(self, fkl: ForwardKL) -> None:
        super().__init__()
        self.fkl = fkl

    def loss_with_mutable_state(
        self,
        rng_key: jax.Array,
        param_map: dict[str, jax.Array],
        model: Model,
        guide: Model,
        *args: Any,
        _bank: dict[str, jax.Array],
        **kwargs: Any,
    ) -> dict[str, Any]:
        per = _per_simulation(self.fkl, rng_key, param_map, model, guide, _bank, args, kwargs)
        return {"loss": jnp.mean(per), "mutable_state": None}


def _diagnose(
    svi: SVI,
    state: Any,
    new: Any,
    args: tuple,
    kwargs: dict,
    where: str,
    value: float,
    step: int,
    pin: Mapping[str, jax.Array] | None = None,
    observations: Mapping[str, jax.Array] | None = None,
) -> str:
    """Re-trace the guide and the model (replaying the guide; ``pin``: the simulation's
    values) at the parameters of ``state`` and word what is not finite (``new``: the state
    after the step, whose non-finite parameters had a non-finite update)."""
    params = svi.get_params(state)
    updated = svi.optim.get_params(new.optim_state)
    bad_grads = [n for n, v in updated.items() if not finite(v)]
    extra = {} if observations is None else {"observations": observations}
    guide_key, model_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), step))
    notes: list[str] = []
    for validate in (True, False):  # a re-trace that validation stops runs again without
        guide_sites, model_sites = {}, {}
        checks = contextlib.nullcontext() if validate else numpyro.validation_enabled(False)
        with handlers.block(), _Pin(pin or {}), checks:
            try:
                guide = handlers.seed(handlers.substitute(svi.guide, data=params), guide_key)
                guide_tr = handlers.trace(guide).get_trace(*args, **kwargs, **extra)
                guide_sites = site_checks(_sites(guide_tr))
                model = handlers.seed(handlers.substitute(svi.model, data=params), model_key)
                model_tr = handlers.trace(handlers.replay(model, trace=guide_tr)).get_trace(
                    *args, **kwargs
                )
                model_sites = site_checks(_sites(model_tr))
                break
            except Exception as e:  # the re-trace itself fails on non-finite values
                if not (validate and isinstance(e, ValueError)):
                    notes.append(f"re-tracing raised {type(e).__name__}: {e}")
                    break
    bad_params = [n for n, v in params.items() if not finite(v)]
    return nonfinite_message(where, value, model_sites, guide_sites, bad_params, bad_grads, notes)


def _sites(tr: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    out = []
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        try:
            with warnings.catch_warnings():  # out-of-support values are what we look for
                warnings.simplefilter("ignore")
                log_prob = site["fn"].log_prob(site["value"])
        except Exception as e:
            log_prob = e
        out.append((name, site["value"], log_prob))
    return out
