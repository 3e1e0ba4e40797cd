"""NumPyro's own example models, copied verbatim, with their data (made here, never downloaded).

The model functions below are copied verbatim from the NumPyro repository
(https://github.com/pyro-ppl/numpyro, Copyright Contributors to the Pyro project,
SPDX-License-Identifier: Apache-2.0); only imports and data loading are adapted. Each block
names its source file. The data sets these examples download are replaced as follows:

- eight schools: the literal data of the README (nothing downloaded there either);
- baseball: the Efron-Morris (1975) table of hits in the first 45 at-bats of 18 players
  (the columns the models use), embedded as a literal; the season columns are not embedded;
- stochastic volatility: SP500 returns replaced by a draw of the model's own prior
  (numpy seed 6), ``T=2517`` by default like the data set;
- hierarchical linear regression: the OSIC pulmonary-fibrosis table replaced by synthetic
  data of the same shape (176 patients, 1549 rows, FVC around 2000-3000, Weeks -5..133).

Registry: :data:`EXAMPLES`, ``{name: Example}``
(see :class:`~faithful_guides.zoo.examples.Example`).

Example:
    >>> ex = EXAMPLES["eight_schools"]
    >>> ex.args[0], ex.latents
    (8, ('mu', 'tau', 'theta'))
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.handlers import reparam
from numpyro.infer.reparam import LocScaleReparam, TransformReparam

from faithful_guides.zoo.examples import Example

__all__ = [
    "BASEBALL_AT_BATS",
    "BASEBALL_HITS",
    "BASEBALL_PLAYERS",
    "EXAMPLES",
    "baseball_data",
    "eight_schools",
    "eight_schools_data",
    "eight_schools_noncentered",
    "fully_pooled",
    "funnel_model",
    "funnel_reparam_model",
    "hier_lr_data",
    "hier_lr_model",
    "not_pooled",
    "partially_pooled",
    "partially_pooled_with_logit",
    "sv_data",
    "sv_model",
]

_LICENSE = "Apache-2.0, Copyright Contributors to the Pyro project"
_MCMC_ONLY = "none in the source (MCMC only): the stated default Adam 0.01 x 5000 steps"

# --------------------------------------------------------------------------------------
# Eight schools. Source: numpyro README.md ("Eight Schools example" and "Non-centered
# Reparametrization"), Apache-2.0, Copyright Contributors to the Pyro project.
# --------------------------------------------------------------------------------------


def eight_schools(J, sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentered(J, sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", J):
        with numpyro.handlers.reparam(config={"theta": TransformReparam()}):
            theta = numpyro.sample(
                "theta",
                dist.TransformedDistribution(
                    dist.Normal(0.0, 1.0), dist.transforms.AffineTransform(mu, tau)
                ),
            )
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_data() -> tuple[tuple, dict]:
    """``(J, sigma), {"y": y}`` as in the README."""
    J = 8
    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    return (J, sigma), {"y": y}


# --------------------------------------------------------------------------------------
# Baseball. Source: numpyro examples/baseball.py, Apache-2.0, Copyright Contributors to the
# Pyro project.
# --------------------------------------------------------------------------------------


def fully_pooled(at_bats, hits=None):
    r"""
    Number of hits in $K$ at bats for each player has a Binomial
    distribution with a common probability of success, $\phi$.

    :param (jnp.ndarray) at_bats: Number of at bats for each player.
    :param (jnp.ndarray) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    phi_prior = dist.Uniform(0, 1)
    phi = numpyro.sample("phi", phi_prior)
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def not_pooled(at_bats, hits=None):
    r"""
    Number of hits in $K$ at bats for each player has a Binomial
    distribution with independent probability of success, $\phi_i$.

    :param (jnp.ndarray) at_bats: Number of at bats for each player.
    :param (jnp.ndarray) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        phi_prior = dist.Uniform(0, 1)
        phi = numpyro.sample("phi", phi_prior)
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def partially_pooled(at_bats, hits=None):
    r"""
    Number of hits has a Binomial distribution with independent
    probability of success, $\phi_i$. Each $\phi_i$ follows a Beta
    distribution with concentration parameters $c_1$ and $c_2$, where
    $c_1 = m * kappa$, $c_2 = (1 - m) * kappa$, $m ~ Uniform(0, 1)$,
    and $kappa ~ Pareto(1, 1.5)$.

    :param (jnp.ndarray) at_bats: Number of at bats for each player.
    :param (jnp.ndarray) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    m = numpyro.sample("m", dist.Uniform(0, 1))
    kappa = numpyro.sample("kappa", dist.Pareto(1, 1.5))
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        phi_prior = dist.Beta(m * kappa, (1 - m) * kappa)
        phi = numpyro.sample("phi", phi_prior)
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def partially_pooled_with_logit(at_bats, hits=None):
    r"""
    Number of hits has a Binomial distribution with a logit link function.
    The logits $\alpha$ for each player is normally distributed with the
    mean and scale parameters sharing a common prior.

    :param (jnp.ndarray) at_bats: Number of at bats for each player.
    :param (jnp.ndarray) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    loc = numpyro.sample("loc", dist.Normal(-1, 1))
    scale = numpyro.sample("scale", dist.HalfCauchy(1))
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        alpha = numpyro.sample("alpha", dist.Normal(loc, scale))
        return numpyro.sample("obs", dist.Binomial(at_bats, logits=alpha), obs=hits)


# Efron & Morris (1975), Table 1: hits in each player's first 45 at-bats of the 1970
# season (the "train" split of EfronMorrisBB.txt that the example downloads).
BASEBALL_PLAYERS = (
    "Roberto Clemente",
    "Frank Robinson",
    "Frank Howard",
    "Jay Johnstone",
    "Ken Berry",
    "Jim Spencer",
    "Don Kessinger",
    "Luis Alvarado",
    "Ron Santo",
    "Ron Swaboda",
    "Rico Petrocelli",
    "Ellie Rodriguez",
    "George Scott",
    "Del Unser",
    "Billy Williams",
    "Bert Campaneris",
    "Thurman Munson",
    "Max Alvis",
)
BASEBALL_AT_BATS = (45,) * 18
BASEBALL_HITS = (18, 17, 16, 15, 14, 14, 13, 12, 11, 11, 10, 10, 10, 10, 10, 9, 8, 7)


def baseball_data() -> tuple[tuple, dict]:
    """``(at_bats, hits), {}`` as ``main`` of examples/baseball.py passes them."""
    train = np.stack([BASEBALL_AT_BATS, BASEBALL_HITS], axis=1).astype(np.int32)
    at_bats, hits = train[:, 0], train[:, 1]
    return (jnp.asarray(at_bats), jnp.asarray(hits)), {}


# --------------------------------------------------------------------------------------
# Neal's funnel. Source: numpyro examples/funnel.py, Apache-2.0, Copyright Contributors to
# the Pyro project (``model`` and ``reparam_model`` there).
# --------------------------------------------------------------------------------------


def funnel_model(dim=10):
    y = numpyro.sample("y", dist.Normal(0, 3))
    numpyro.sample("x", dist.Normal(jnp.zeros(dim - 1), jnp.exp(y / 2)))


funnel_reparam_model = reparam(funnel_model, config={"x": LocScaleReparam(0)})

# No observations: the posterior is the prior. y ~ N(0, 3); x_i has mean 0 and
# sd sqrt(E exp(y)) = exp(9 / 4).
_FUNNEL_EXACT = {"y": (0.0, 3.0), "x": (0.0, math.exp(9.0 / 4.0))}


# --------------------------------------------------------------------------------------
# Stochastic volatility. Source: numpyro examples/stochastic_volatility.py, Apache-2.0,
# Copyright Contributors to the Pyro project (``model`` there).
# --------------------------------------------------------------------------------------


def sv_model(returns):
    step_size = numpyro.sample("sigma", dist.Exponential(50.0))
    s = numpyro.sample(
        "s", dist.GaussianRandomWalk(scale=step_size, num_steps=jnp.shape(returns)[0])
    )
    nu = numpyro.sample("nu", dist.Exponential(0.1))
    return numpyro.sample("r", dist.StudentT(df=nu, loc=0.0, scale=jnp.exp(s)), obs=returns)


def sv_data(T: int = 2517, seed: int = 6) -> tuple[tuple, dict]:
    """``(returns,), {}``: one draw of the model's prior (numpy), length ``T``.

    The example fits 2517 daily SP500 returns, which it downloads; these are synthetic
    returns of the same length from the model itself (sigma, s, nu drawn from their priors).
    Seed 6 is the first of seeds 0..9 whose draw has an SP500-like scale (at T=2517:
    sigma 0.014, nu 11.4, returns sd 1.55; seed 0 draws nu 1.2 and returns sd 32).
    """
    rng = np.random.default_rng(seed)
    step_size = rng.exponential(1 / 50.0)
    s = np.cumsum(rng.normal(0.0, step_size, size=T))
    nu = rng.exponential(1 / 0.1)
    returns = np.exp(s) * rng.standard_t(nu, size=T)
    return (jnp.asarray(returns, dtype=jnp.float32),), {}


# --------------------------------------------------------------------------------------
# Hierarchical linear regression. Source: numpyro
# notebooks/source/bayesian_hierarchical_linear_regression.ipynb (``model``), Apache-2.0,
# Copyright Contributors to the Pyro project.
# --------------------------------------------------------------------------------------


def hier_lr_model(patient_code, Weeks, FVC_obs=None):
    μ_α = numpyro.sample("μ_α", dist.Normal(0.0, 500.0))
    σ_α = numpyro.sample("σ_α", dist.HalfNormal(100.0))
    μ_β = numpyro.sample("μ_β", dist.Normal(0.0, 3.0))
    σ_β = numpyro.sample("σ_β", dist.HalfNormal(3.0))

    n_patients = len(np.unique(patient_code))

    with numpyro.plate("plate_i", n_patients):
        α = numpyro.sample("α", dist.Normal(μ_α, σ_α))
        β = numpyro.sample("β", dist.Normal(μ_β, σ_β))

    σ = numpyro.sample("σ", dist.HalfNormal(100.0))
    FVC_est = α[patient_code] + β[patient_code] * Weeks

    with numpyro.plate("data", len(patient_code)):
        numpyro.sample("obs", dist.Normal(FVC_est, σ), obs=FVC_obs)


def hier_lr_data(n_patients: int = 176, n_rows: int = 1549, seed: int = 0) -> tuple[tuple, dict]:
    """``(patient_code, Weeks), {"FVC_obs": FVC_obs}``, synthetic, shaped like the OSIC table.

    Every patient has ``n_rows // n_patients`` or one more visits (1549 rows for 176
    patients: 141 with 9, 35 with 8), the first in weeks -5..10 and the rest up to 133;
    FVC = alpha_i + beta_i * Weeks + noise with alpha_i ~ N(2750, 600),
    beta_i ~ N(-4, 3), noise sd 120. ``patient_code`` is the integer index array that
    ``LabelEncoder`` gives in the notebook (numpy, so that ``np.unique`` in the model works).
    """
    rng = np.random.default_rng(seed)
    base, extra = divmod(n_rows, n_patients)
    counts = np.full(n_patients, base) + (np.arange(n_patients) < extra)
    patient_code = np.repeat(np.arange(n_patients), counts)
    weeks = []
    for c in counts:
        first = rng.integers(-5, 11)
        rest = np.sort(rng.choice(np.arange(first + 1, 134), size=c - 1, replace=False))
        weeks.append(np.concatenate([[first], rest]))
    Weeks = np.concatenate(weeks).astype(np.float32)
    alpha = rng.normal(2750.0, 600.0, size=n_patients)
    beta = rng.normal(-4.0, 3.0, size=n_patients)
    FVC_obs = alpha[patient_code] + beta[patient_code] * Weeks
    FVC_obs = (FVC_obs + rng.normal(0.0, 120.0, size=n_rows)).round().astype(np.float32)
    return (patient_code, Weeks), {"FVC_obs": FVC_obs}


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def _baseball(name, model, latents) -> Example:
    return Example(
        name=name,
        host="numpyro",
        model=model,
        data=baseball_data,
        lr=0.01,
        num_steps=5000,
        latents=latents,
        source=f"numpyro examples/baseball.py::{model.__name__} ({_LICENSE})",
        settings=_MCMC_ONLY,
    )


EXAMPLES: dict[str, Example] = {
    "eight_schools": Example(
        name="eight_schools",
        host="numpyro",
        model=eight_schools,
        data=eight_schools_data,
        lr=0.01,
        num_steps=5000,
        latents=("mu", "tau", "theta"),
        source=f"numpyro README.md, Eight Schools example ({_LICENSE})",
        settings=_MCMC_ONLY,
    ),
    "eight_schools_noncentered": Example(
        name="eight_schools_noncentered",
        host="numpyro",
        model=eight_schools_noncentered,
        data=eight_schools_data,
        lr=0.01,
        num_steps=5000,
        latents=("mu", "tau", "theta"),
        source=f"numpyro README.md, Non-centered Reparametrization ({_LICENSE})",
        settings=_MCMC_ONLY,
    ),
    "baseball_fully_pooled": _baseball("baseball_fully_pooled", fully_pooled, ("phi",)),
    "baseball_not_pooled": _baseball("baseball_not_pooled", not_pooled, ("phi",)),
    "baseball_partially_pooled": _baseball(
        "baseball_partially_pooled", partially_pooled, ("m", "kappa", "phi")
    ),
    "baseball_partially_pooled_with_logit": _baseball(
        "baseball_partially_pooled_with_logit",
        partially_pooled_with_logit,
        ("loc", "scale", "alpha"),
    ),
    "funnel": Example(
        name="funnel",
        host="numpyro",
        model=funnel_model,
        data=lambda: ((), {}),
        lr=0.01,
        num_steps=5000,
        latents=("y", "x"),
        source=f"numpyro examples/funnel.py::model ({_LICENSE})",
        settings=_MCMC_ONLY,
        exact=_FUNNEL_EXACT,
    ),
    "funnel_reparam": Example(
        name="funnel_reparam",
        host="numpyro",
        model=funnel_reparam_model,
        data=lambda: ((), {}),
        lr=0.01,
        num_steps=5000,
        latents=("y", "x"),
        source=f"numpyro examples/funnel.py::reparam_model ({_LICENSE})",
        settings=_MCMC_ONLY,
        exact=_FUNNEL_EXACT,
    ),
    "stochastic_volatility": Example(
        name="stochastic_volatility",
        host="numpyro",
        model=sv_model,
        data=sv_data,
        lr=0.01,
        num_steps=5000,
        latents=("sigma", "nu", "s"),
        source=f"numpyro examples/stochastic_volatility.py::model ({_LICENSE})",
        settings=_MCMC_ONLY,
        small={"T": 200},
    ),
    "hier_linear_regression": Example(
        name="hier_linear_regression",
        host="numpyro",
        model=hier_lr_model,
        data=hier_lr_data,
        lr=0.01,
        num_steps=5000,
        latents=("μ_α", "σ_α", "μ_β", "σ_β", "α", "β", "σ"),
        source=(
            "numpyro notebooks/source/bayesian_hierarchical_linear_regression.ipynb::model"
            f" ({_LICENSE})"
        ),
        settings=_MCMC_ONLY,
        small={"n_patients": 20, "n_rows": 176},
    ),
}
"""The NumPyro examples by name."""
