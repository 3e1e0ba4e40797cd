r"""Training harness for the zoo's linear-Gaussian trees, shared by the benchmarks and the demo.

Each host's ``train(...)`` fits a guide with SVI on the tree of
:func:`faithful_guides.zoo.binary_tree` (amortized over a data plate with fresh rows every
step, or on one observation) and returns a :class:`Trained` whose ``draw`` gives guide
samples with their log-density, so that :func:`mc_kl` can estimate
KL(q(z|x) ‖ p(z|x)) against the exact posterior of :class:`~faithful_guides.exact.LinearGaussianBN`.

Example:
    >>> from faithful_guides.exact import LinearGaussianBN
    >>> bn = LinearGaussianBN.tree(3, tree_weights(3))
    >>> x = bn.sample(np.random.default_rng(0), 1)[1]
    >>> from numpyro.infer.autoguide import AutoNormal
    >>> t = numpyro_train(bn, 3, AutoNormal, 200, 0.05, 1, False, x, 0)  # doctest: +SKIP
    >>> mc_kl(bn, t, x) < 1.0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from faithful_guides.exact import LinearGaussianBN
from faithful_guides.zoo.models import binary_tree


@dataclass
class Trained:
    """What a training run leaves: a sampler of (z, log q) and timings."""

    draw: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (x, seed) -> z, log q
    step_times: list[float]
    params: int
    kl_trace: list[tuple[int, float]]


FINAL_LR_FACTOR = 0.1
"""Training runs decay the learning rate geometrically to this fraction of its start."""


def tree_weights(depth: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0.5, 2.0, size=2**depth - 1)


def mc_kl(bn: LinearGaussianBN, trained: Trained, x: np.ndarray, draws: int = 64) -> float:
    """Mean over rows of E_q[log q(z|x) - log p(z|x)], exact Gaussian posterior."""
    mean, cov = bn.posterior(x)
    prec = np.linalg.inv(cov)
    logdet = np.linalg.slogdet(cov)[1]
    k = mean.shape[-1]
    total = np.zeros(len(x))
    for s in range(draws):
        z, logq = trained.draw(x, s)
        d = z - mean
        logp = -0.5 * (np.einsum("ni,ij,nj->n", d, prec, d) + logdet + k * np.log(2 * np.pi))
        total += logq - logp
    return float(np.mean(total / draws))


# ---- Pyro --------------------------------------------------------------------------------


def pyro_train(
    bn, depth, guide_fn, steps, lr, batch, amortized, eval_x, eval_every, objective="elbo"
):
    import pyro
    import torch
    from pyro import poutine
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import ClippedAdam

    from faithful_guides.pyro import ForwardKL

    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    rows = batch if amortized else None
    model, _, _ = binary_tree("pyro", depth, weights=tree_weights(depth), num_rows=rows)
    guide = guide_fn(model)
    # Adam whose lr decays geometrically to lr * FINAL_LR_FACTOR at the last step
    optim = ClippedAdam({"lr": lr, "lrd": FINAL_LR_FACTOR ** (1 / steps), "clip_norm": 1e6})
    svi = SVI(model, guide, optim, ForwardKL() if objective == "forward" else Trace_ELBO())
    rng = np.random.default_rng(1)
    latents = bn.latent

    def draw(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        arg = torch.as_tensor(x if amortized else x[0], dtype=torch.float32)
        # seeded evaluation draws must not reset the training noise (fork the RNG)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(10_000 + seed)
            tr = poutine.trace(guide).get_trace(arg)
            logq = sum(
                s["fn"].log_prob(s["value"]) for s in tr.nodes.values() if s["type"] == "sample"
            )
            z = torch.stack([tr.nodes[n]["value"] for n in latents], -1)
        return z.reshape(-1, len(latents)).double().numpy(), np.atleast_1d(logq.double().numpy())

    times, kl_trace = [], []
    trained = Trained(draw, times, 0, kl_trace)
    for step in range(1, steps + 1):
        x = bn.sample(rng, batch)[1] if amortized else eval_x
        arg = torch.as_tensor(x if amortized else x[0], dtype=torch.float32)
        t = time.perf_counter()
        svi.step(arg)
        times.append(time.perf_counter() - t)
        if eval_every and step % eval_every == 0:
            kl_trace.append((step, mc_kl(bn, trained, eval_x, draws=16)))
    trained.params = pyro_effective_params(guide)
    return trained


def pyro_effective_params(guide) -> int:
    """Trainable numbers, masked-out weights excluded (they never change)."""
    total = 0
    for module in guide.modules():
        mask = getattr(module, "mask", None)
        for name, p in module.named_parameters(recurse=False):
            used = int((mask != 0).sum()) if mask is not None else p.numel()
            total += used if name == "weight" else p.numel()
    return total


def pyro_guides() -> dict[str, Callable]:
    from pyro.infer.autoguide import (
        AutoGaussian,
        AutoIAFNormal,
        AutoMultivariateNormal,
        AutoNormal,
    )

    from faithful_guides.pyro import AutoFaithfulMADE

    return {
        "AutoNormal": AutoNormal,
        "AutoMultivariateNormal": AutoMultivariateNormal,
        "AutoIAFNormal": AutoIAFNormal,
        "AutoGaussian": AutoGaussian,
        "AutoFaithfulMADE": AutoFaithfulMADE,
    }


# ---- NumPyro -----------------------------------------------------------------------------


def numpyro_train(
    bn, depth, guide_fn, steps, lr, batch, amortized, eval_x, eval_every, objective="elbo"
):
    import jax
    import jax.numpy as jnp
    from numpyro import handlers
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.optim import Adam

    from faithful_guides.numpyro import ForwardKL

    rows = batch if amortized else None
    model, _, _ = binary_tree("numpyro", depth, weights=tree_weights(depth), num_rows=rows)
    guide = guide_fn(model)
    optim = Adam(lambda i: lr * FINAL_LR_FACTOR ** (i / steps))
    svi = SVI(model, guide, optim, ForwardKL() if objective == "forward" else Trace_ELBO())
    rng = np.random.default_rng(1)
    first = bn.sample(rng, batch)[1] if amortized else eval_x
    state = svi.init(jax.random.PRNGKey(0), jnp.asarray(first if amortized else first[0]))
    update = jax.jit(svi.update)
    latents = bn.latent

    @jax.jit
    def trace_guide(params, x, key):
        tr = handlers.trace(handlers.seed(handlers.substitute(guide, params), key)).get_trace(x)
        logq = sum(s["fn"].log_prob(s["value"]) for s in tr.values() if s["type"] == "sample")
        return jnp.stack([tr[n]["value"] for n in latents], -1), logq

    def draw(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        params = svi.get_params(state)
        arg = jnp.asarray(x if amortized else x[0])
        z, logq = trace_guide(params, arg, jax.random.PRNGKey(10_000 + seed))
        return np.asarray(z, dtype=np.float64).reshape(-1, len(latents)), np.atleast_1d(logq)

    times, kl_trace = [], []
    trained = Trained(draw, times, 0, kl_trace)
    for step in range(1, steps + 1):
        x = bn.sample(rng, batch)[1] if amortized else eval_x
        arg = jnp.asarray(x if amortized else x[0], dtype=jnp.float32)
        t = time.perf_counter()
        state, loss = update(state, arg)
        loss.block_until_ready()
        times.append(time.perf_counter() - t)
        if eval_every and step % eval_every == 0:
            kl_trace.append((step, mc_kl(bn, trained, eval_x, draws=16)))
    trained.params = numpyro_effective_params(guide, svi.get_params(state))
    return trained


def numpyro_effective_params(guide, params: dict) -> int:
    """Trainable numbers: AutoFaithfulMADE's MADEs counted by their masks (masked-out
    weights never change), its fixed input statistics left out."""
    import jax

    plan = getattr(guide, "plan", None)
    made = {guide._net_name(g) for g in plan.groups if g.has_net} if plan else set()
    total = plan.effective_params() if plan else 0
    for name, v in params.items():
        if name not in made and not name.endswith("_input_stats"):
            total += sum(np.size(leaf) for leaf in jax.tree.leaves(v))
    return int(total)


def numpyro_guides() -> dict[str, Callable]:
    from numpyro.infer.autoguide import AutoIAFNormal, AutoMultivariateNormal, AutoNormal

    from faithful_guides.numpyro import AutoFaithfulMADE

    return {
        "AutoNormal": AutoNormal,
        "AutoMultivariateNormal": AutoMultivariateNormal,
        "AutoIAFNormal": AutoIAFNormal,
        "AutoFaithfulMADE": AutoFaithfulMADE,
    }


HOSTS = {"pyro": (pyro_train, pyro_guides), "numpyro": (numpyro_train, numpyro_guides)}


def guide_comparison(
    host: str, depth: int = 4, steps: int = 1000, batch: int = 64
) -> list[tuple[str, str, float, float]]:
    """The demo's story on one tree: AutoNormal fitted to one observation, then
    AutoFaithfulMADE (nami and heuristic) trained amortized on fresh rows and applied to
    that observation and to new ones with no further optimization.

    Returns rows ``(guide, trained on, KL on the observation, mean KL on 64 new rows)``
    (NaN where a guide cannot be applied: AutoNormal is not amortized).
    """
    train, guides = HOSTS[host]
    bn = LinearGaussianBN.tree(depth, tree_weights(depth))
    x_one = bn.sample(np.random.default_rng(7), 1)[1]
    x_new = bn.sample(np.random.default_rng(99), batch)[1]
    rows = []
    normal = train(bn, depth, guides()["AutoNormal"], steps, 1e-2, 1, False, x_one, 0)
    rows.append(("AutoNormal", "this x", mc_kl(bn, normal, x_one, draws=256), float("nan")))
    made = guides()["AutoFaithfulMADE"]
    for structure in ("nami", "heuristic"):

        def guide_fn(model: Callable, structure: str = structure) -> Callable:
            return made(model, structure=structure)

        trained = train(bn, depth, guide_fn, steps, 3e-3, batch, True, x_new, 0)
        # the plate has `batch` rows: put the single observation in every row
        on_one = mc_kl(bn, trained, np.repeat(x_one, batch, 0), draws=16)
        rows.append(
            (f"AutoFaithfulMADE({structure})", "fresh rows", on_one, mc_kl(bn, trained, x_new))
        )
    return rows
