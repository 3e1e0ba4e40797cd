r"""Training and exact KL for guides of a :class:`~faithful_guides.exact.LinearGaussianBN`
on either host (the harness of ``benchmarks/dags.py``).

:func:`fit` trains a guide with SVI (Adam, ``Trace_ELBO``) on the model of
:func:`~faithful_guides.zoo.networks.linear_gaussian`, either on one fixed observation or
amortized (one fresh ``x ~ p(x)`` per step, passed as the model's argument), and returns a
:class:`Fitted` whose ``draw(x, num, seed)`` gives ``num`` guide draws with the guide's own
log-density: every sample site of a guide trace, summed (for ``AutoMultivariateNormal``
the auxiliary joint site plus its zero-Jacobian deltas), vectorized over a particle plate
(Pyro) or ``vmap`` over keys (NumPyro). :func:`mc_kl` compares those draws with the exact
Gaussian posterior:

.. math:: \mathrm{KL}(q \,\|\, p(\cdot \mid x)) \approx \frac1S \sum_s
   \log q(z_s \mid x) - \log p(z_s \mid x),\qquad z_s \sim q(\cdot \mid x).

:func:`exact_guide` is the oracle: a guide that samples the exact posterior, conditional
by conditional (its KL is 0; with ``inflate=f`` its covariance is ``f**2`` times the
posterior's, KL in closed form).

Example:
    >>> bn = LinearGaussianBN.random_dag(0)
    >>> x = bn.sample(np.random.default_rng(0), 1)[1][0]
    >>> oracle = fit("numpyro", bn, "exact", 0, data=x)
    >>> abs(mc_kl(bn, oracle, x, draws=64)) < 1e-3
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faithful_guides.exact import LinearGaussianBN
from faithful_guides.zoo.host import HostName, get_host
from faithful_guides.zoo.networks import linear_gaussian

__all__ = ["GUIDES", "Fitted", "exact_guide", "fit", "mc_kl"]

GUIDES = ("AutoNormal", "AutoMultivariateNormal", "AutoFaithfulMADE")
"""The guides of the benchmark, by name (plus ``"exact"``, the oracle)."""


@dataclass
class Fitted:
    """A trained guide: ``draw(x, num, seed) -> (z (num, n_latent), log q (num,))`` for one
    observation ``x`` (``n_observed``,), latents in ``bn.latent`` order."""

    draw: Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]
    step_times: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    kl_trace: list[tuple[int, float]] = field(default_factory=list)

    @property
    def ms_per_step(self) -> float:
        """Median wall time of one SVI step (NumPyro: the jitted update, compile excluded)."""
        return 1e3 * float(np.median(self.step_times)) if self.step_times else float("nan")


def mc_kl(
    bn: LinearGaussianBN, fitted: Fitted, x: np.ndarray, draws: int = 1000, seed: int = 0
) -> float:
    """Monte Carlo KL(q(z|x) ‖ p(z|x)) for one observation ``x`` (``(n_observed,)``), or
    the mean over the rows of ``x`` (``(n, n_observed)``)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return float(np.mean([mc_kl(bn, fitted, row, draws, seed + i) for i, row in enumerate(x)]))
    z, logq = fitted.draw(x, draws, seed)
    return float(np.mean(logq - bn.log_posterior(z, x)))


def exact_guide(host: HostName, bn: LinearGaussianBN, inflate: float = 1.0) -> Callable:
    """A guide ``guide(x)`` that samples the exact posterior ``p(z | x)`` of ``bn`` site by
    site (Cholesky conditionals, in ``bn.latent`` order), its covariance scaled by
    ``inflate**2``: KL ``k/2 (f^2 - 1) - k log f`` (``k`` latents, ``f = inflate``)."""
    h = get_host(host)
    mu, cov = bn.joint()
    zi, oi = bn._split()
    gain = np.linalg.solve(cov[np.ix_(oi, oi)], cov[np.ix_(oi, zi)]).T
    _, post = bn.posterior(np.zeros(len(oi)))
    chol = inflate * np.linalg.cholesky(post)
    gain_t, mu_z, mu_x = h.tensor(gain), h.tensor(mu[zi]), h.tensor(mu[oi])
    latent = bn.latent

    def guide(x: Any = None) -> None:
        mean = mu_z + gain_t @ (x - mu_x)
        eps: list[Any] = []
        for k, name in enumerate(latent):
            loc = mean[k]
            for j in range(k):
                loc = loc + float(chol[k, j]) * eps[j]
            z = h.sample(name, h.dist.Normal(loc, float(chol[k, k])))
            eps.append((z - loc) / float(chol[k, k]))

    return guide


def _guide(host: HostName, name: str | Callable, model: Callable, bn: LinearGaussianBN) -> Callable:
    if callable(name):
        return name(model)
    if name == "exact":
        return exact_guide(host, bn)
    if host == "pyro":
        import pyro.infer.autoguide as auto

        from faithful_guides.pyro import AutoFaithfulMADE
    else:
        import numpyro.infer.autoguide as auto

        from faithful_guides.numpyro import AutoFaithfulMADE
    if name == "AutoFaithfulMADE":
        return AutoFaithfulMADE(model)
    return getattr(auto, name)(model)


def fit(
    host: HostName,
    bn: LinearGaussianBN,
    guide: str | Callable[[Callable], Callable],
    steps: int,
    *,
    data: np.ndarray | None = None,
    stream_seed: int = 0,
    lr: float = 0.01,
    seed: int = 0,
    eval_x: np.ndarray | None = None,
    eval_every: int = 0,
    eval_draws: int = 200,
) -> Fitted:
    """Train ``guide`` (a name of :data:`GUIDES`, ``"exact"``, or a function of the model
    that returns a guide) for ``steps`` SVI steps,
    ``Adam(lr)`` and ``Trace_ELBO``: on the fixed observation ``data`` (``(n_observed,)``),
    or, with ``data=None``, amortized on one fresh draw of ``bn`` per step (the stream
    seeded by ``stream_seed``). With ``eval_every``, ``kl_trace`` records the KL on
    ``eval_x`` before training and every ``eval_every`` steps."""
    stream = (
        bn.sample(np.random.default_rng(stream_seed), max(steps, 1))[1]
        if data is None
        else np.repeat(np.asarray(data)[None], max(steps, 1), 0)
    )
    run = _pyro_fit if host == "pyro" else _numpyro_fit
    return run(bn, guide, steps, stream, lr, seed, eval_x, eval_every, eval_draws)


def _pyro_fit(bn, name, steps, stream, lr, seed, eval_x, eval_every, eval_draws) -> Fitted:
    import pyro
    import torch
    from pyro import poutine
    from pyro.infer import SVI, Trace_ELBO

    torch.set_num_threads(1)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    model, _, _ = linear_gaussian("pyro", bn)
    guide = _guide("pyro", name, model, bn)
    latent = bn.latent

    def as_arg(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32))

    def draw(x: np.ndarray, num: int, draw_seed: int) -> tuple[np.ndarray, np.ndarray]:
        arg = as_arg(x)
        # seeded evaluation draws must not reset the training noise (fork the RNG)
        with torch.no_grad(), torch.random.fork_rng(devices=[]), poutine.block():
            torch.manual_seed(10_000 + draw_seed)
            with pyro.plate("_kl_particles", num, dim=-1):
                tr = poutine.trace(guide).get_trace(arg)
            logq = torch.zeros(num, dtype=torch.float64)
            for site in tr.nodes.values():
                if site["type"] == "sample" and not site["is_observed"]:
                    lp = site["fn"].log_prob(site["value"]).double()
                    logq = logq + lp.expand(num)
            z = torch.stack([tr.nodes[n]["value"].expand(num) for n in latent], -1)
        return z.double().numpy(), logq.numpy()

    fitted = Fitted(draw)
    if steps:
        with poutine.block():
            guide(as_arg(stream[0]))  # set-up, so that KL before training is defined
    if eval_every:
        fitted.kl_trace.append((0, mc_kl(bn, fitted, eval_x, eval_draws)))
    if steps:
        svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO())
        for step in range(1, steps + 1):
            arg = as_arg(stream[step - 1])
            t = time.perf_counter()
            loss = svi.step(arg)
            fitted.step_times.append(time.perf_counter() - t)
            fitted.losses.append(loss)
            if eval_every and step % eval_every == 0:
                fitted.kl_trace.append((step, mc_kl(bn, fitted, eval_x, eval_draws)))
    return fitted


_NUMPYRO_BUILT: dict[tuple[int, Any, float], tuple[Any, ...]] = {}


def _numpyro_build(bn: LinearGaussianBN, name: str | Callable, lr: float) -> tuple[Any, ...]:
    """The SVI, jitted update and jitted vectorized draw of one (bn, guide, lr), built once,
    so that refits on other data reuse the compiled update."""
    key = (id(bn), name, lr)
    if key in _NUMPYRO_BUILT and _NUMPYRO_BUILT[key][0] is bn:
        return _NUMPYRO_BUILT[key][1:]
    import jax
    import jax.numpy as jnp
    import numpyro
    from numpyro import handlers
    from numpyro.infer import SVI, Trace_ELBO

    model, _, _ = linear_gaussian("numpyro", bn)
    guide = _guide("numpyro", name, model, bn)
    latent = bn.latent

    def one(params: dict, x: Any, key: Any) -> tuple[Any, Any]:
        tr = handlers.trace(handlers.seed(handlers.substitute(guide, params), key)).get_trace(x)
        logq = sum(
            jnp.sum(s["fn"].log_prob(s["value"]))
            for s in tr.values()
            if s["type"] == "sample" and not s["is_observed"]
        )
        return jnp.stack([tr[n]["value"] for n in latent], -1), logq

    many = jax.jit(jax.vmap(one, in_axes=(None, None, 0)))
    svi = SVI(model, guide, numpyro.optim.Adam(lr), Trace_ELBO())
    update = jax.jit(svi.update)
    if len(_NUMPYRO_BUILT) > 16:
        _NUMPYRO_BUILT.clear()
    _NUMPYRO_BUILT[key] = (bn, svi, update, many)
    return svi, update, many


def _numpyro_fit(bn, name, steps, stream, lr, seed, eval_x, eval_every, eval_draws) -> Fitted:
    import jax
    import jax.numpy as jnp

    svi, update, many = _numpyro_build(bn, name, lr)
    xs = jnp.asarray(stream, dtype=jnp.float32)
    state = svi.init(jax.random.PRNGKey(seed), xs[0])

    def draw(x: np.ndarray, num: int, draw_seed: int) -> tuple[np.ndarray, np.ndarray]:
        keys = jax.random.split(jax.random.PRNGKey(10_000 + draw_seed), num)
        z, logq = many(svi.get_params(state), jnp.asarray(x, dtype=jnp.float32), keys)
        return np.asarray(z, dtype=np.float64), np.asarray(logq, dtype=np.float64)

    fitted = Fitted(draw)
    if eval_every:
        fitted.kl_trace.append((0, mc_kl(bn, fitted, eval_x, eval_draws)))
    if steps:
        for step in range(1, steps + 1):
            x = xs[step - 1]
            t = time.perf_counter()
            state, loss = update(state, x)
            loss.block_until_ready()
            fitted.step_times.append(time.perf_counter() - t)
            fitted.losses.append(float(loss))
            if eval_every and step % eval_every == 0:
                fitted.kl_trace.append((step, mc_kl(bn, fitted, eval_x, eval_draws)))
    return fitted
