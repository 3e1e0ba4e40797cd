"""Pyro's own example models, copied verbatim, with their data (made here, never downloaded).

The models below are copied verbatim from the Pyro repository (https://github.com/pyro-ppl/pyro,
Copyright (c) 2017-2019 Uber Technologies, Inc. and Contributors to the Pyro project,
SPDX-License-Identifier: Apache-2.0); only imports, names that would collide, and data
loading are adapted. Each block names its source file. Data:

- eight schools: the literal data of examples/eight_schools/data.py;
- baseball: the Efron-Morris table embedded in :mod:`faithful_guides.zoo.examples_numpyro`
  (the example downloads EfronMorrisBB.txt);
- Bayesian regression: the rugged data set (downloaded by the tutorials) replaced by 170
  synthetic rows drawn from the model with fixed coefficients (numpy seed 0);
- VAE: MNIST replaced by scikit-learn's ``load_digits`` scaled to [0, 1] (8x8 = 64 pixels,
  1797 images) when scikit-learn is installed; without it, 1797 synthetic 8x8 digit glyphs
  (ten templates, random shifts, strokes and noise, numpy seed 0) of the same shape;
  minibatches of 256 (the last one has 5 images);
- coin flips: 2000 synthetic flips, 1200 heads (numpy seed 0); the exact posterior is Beta.

Registry: :data:`EXAMPLES`, ``{name: Example}``
(see :class:`~faithful_guides.zoo.examples.Example`).

Example:
    >>> ex = EXAMPLES["coin_flips"]
    >>> tuple(ex.args[0].shape), ex.latents
    ((2000,), ('latent_fairness',))
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn as nn
from pyro.distributions import Beta, Binomial, HalfCauchy, Normal, Pareto, Uniform
from pyro.distributions.util import scalar_like
from pyro.nn import PyroModule, PyroSample

from faithful_guides.zoo.examples import Example
from faithful_guides.zoo.examples_numpyro import BASEBALL_AT_BATS, BASEBALL_HITS

__all__ = [
    "COIN_EXACT",
    "EXAMPLES",
    "VAE",
    "BayesianRegression",
    "Decoder",
    "Encoder",
    "baseball_data",
    "coin_data",
    "coin_model",
    "digits",
    "eight_schools_mcmc_conditioned",
    "eight_schools_mcmc_model",
    "eight_schools_svi_model",
    "fully_pooled",
    "new_vae",
    "not_pooled",
    "partially_pooled",
    "partially_pooled_with_logit",
    "regression_model",
    "rugged_data",
    "vae_model",
]

_LICENSE = "Apache-2.0, Copyright (c) 2017-2019 Uber Technologies, Inc."

# --------------------------------------------------------------------------------------
# Eight schools. Source: pyro examples/eight_schools/data.py, svi.py (``model``) and
# mcmc.py (``model``, ``conditioned_model``), Apache-2.0, Copyright (c) 2017-2019 Uber
# Technologies, Inc. The two ``model`` functions are renamed eight_schools_svi_model and
# eight_schools_mcmc_model; ``data.J`` of mcmc.py reads the module constant J.
# --------------------------------------------------------------------------------------

J = 8
y = torch.tensor([28, 8, -3, 7, -1, 1, 18, 12]).type(torch.Tensor)
sigma = torch.tensor([15, 10, 16, 11, 9, 11, 10, 18]).type(torch.Tensor)


def eight_schools_svi_model(data):
    y = data[:, 0]
    sigma = data[:, 1]

    with pyro.plate("data", J):
        eta = pyro.sample("eta", dist.Normal(torch.zeros(J), torch.ones(J)))
        mu = pyro.sample("mu", dist.Normal(torch.zeros(1), 10 * torch.ones(1)))
        tau = pyro.sample("tau", dist.HalfCauchy(scale=25 * torch.ones(1)))

        theta = mu + tau * eta

        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_mcmc_model(sigma):
    eta = pyro.sample("eta", dist.Normal(torch.zeros(J), torch.ones(J)))
    mu = pyro.sample("mu", dist.Normal(torch.zeros(1), 10 * torch.ones(1)))
    tau = pyro.sample("tau", dist.HalfCauchy(scale=25 * torch.ones(1)))

    theta = mu + tau * eta

    return pyro.sample("obs", dist.Normal(theta, sigma))


def conditioned_model(model, sigma, y):
    return poutine.condition(model, data={"obs": y})(sigma)


def eight_schools_mcmc_conditioned(sigma, y):
    """``conditioned_model`` of mcmc.py applied to its ``model``, as ``main`` runs it."""
    return conditioned_model(eight_schools_mcmc_model, sigma, y)


def eight_schools_data() -> tuple[tuple, dict]:
    """``(data,), {}`` as svi.py stacks it: columns y and sigma."""
    data = torch.stack([y, sigma], dim=1)
    return (data,), {}


def eight_schools_mcmc_data() -> tuple[tuple, dict]:
    """``(sigma, y), {}`` as mcmc.py's ``main`` passes them."""
    return (sigma, y), {}


# --------------------------------------------------------------------------------------
# Baseball. Source: pyro examples/baseball.py (models), Apache-2.0, Copyright (c)
# 2017-2019 Uber Technologies, Inc.
# --------------------------------------------------------------------------------------


def fully_pooled(at_bats, hits):
    r"""
    Number of hits in $K$ at bats for each player has a Binomial
    distribution with a common probability of success, $\phi$.

    :param (torch.Tensor) at_bats: Number of at bats for each player.
    :param (torch.Tensor) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    phi_prior = Uniform(scalar_like(at_bats, 0), scalar_like(at_bats, 1))
    phi = pyro.sample("phi", phi_prior)
    num_players = at_bats.shape[0]
    with pyro.plate("num_players", num_players):
        return pyro.sample("obs", Binomial(at_bats, phi), obs=hits)


def not_pooled(at_bats, hits):
    r"""
    Number of hits in $K$ at bats for each player has a Binomial
    distribution with independent probability of success, $\phi_i$.

    :param (torch.Tensor) at_bats: Number of at bats for each player.
    :param (torch.Tensor) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    num_players = at_bats.shape[0]
    with pyro.plate("num_players", num_players):
        phi_prior = Uniform(scalar_like(at_bats, 0), scalar_like(at_bats, 1))
        phi = pyro.sample("phi", phi_prior)
        return pyro.sample("obs", Binomial(at_bats, phi), obs=hits)


def partially_pooled(at_bats, hits):
    r"""
    Number of hits has a Binomial distribution with independent
    probability of success, $\phi_i$. Each $\phi_i$ follows a Beta
    distribution with concentration parameters $c_1$ and $c_2$, where
    $c_1 = m * kappa$, $c_2 = (1 - m) * kappa$, $m ~ Uniform(0, 1)$,
    and $kappa ~ Pareto(1, 1.5)$.

    :param (torch.Tensor) at_bats: Number of at bats for each player.
    :param (torch.Tensor) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    num_players = at_bats.shape[0]
    m = pyro.sample("m", Uniform(scalar_like(at_bats, 0), scalar_like(at_bats, 1)))
    kappa = pyro.sample("kappa", Pareto(scalar_like(at_bats, 1), scalar_like(at_bats, 1.5)))
    with pyro.plate("num_players", num_players):
        phi_prior = Beta(m * kappa, (1 - m) * kappa)
        phi = pyro.sample("phi", phi_prior)
        return pyro.sample("obs", Binomial(at_bats, phi), obs=hits)


def partially_pooled_with_logit(at_bats, hits):
    r"""
    Number of hits has a Binomial distribution with a logit link function.
    The logits $\alpha$ for each player is normally distributed with the
    mean and scale parameters sharing a common prior.

    :param (torch.Tensor) at_bats: Number of at bats for each player.
    :param (torch.Tensor) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    num_players = at_bats.shape[0]
    loc = pyro.sample("loc", Normal(scalar_like(at_bats, -1), scalar_like(at_bats, 1)))
    scale = pyro.sample("scale", HalfCauchy(scale=scalar_like(at_bats, 1)))
    with pyro.plate("num_players", num_players):
        alpha = pyro.sample("alpha", Normal(loc, scale))
        return pyro.sample("obs", Binomial(at_bats, logits=alpha), obs=hits)


def baseball_data() -> tuple[tuple, dict]:
    """``(at_bats, hits), {}`` as float tensors, like ``main`` of examples/baseball.py."""
    train = torch.tensor(np.stack([BASEBALL_AT_BATS, BASEBALL_HITS], axis=1), dtype=torch.float)
    at_bats, hits = train[:, 0], train[:, 1]
    return (at_bats, hits), {}


# --------------------------------------------------------------------------------------
# Bayesian regression. Sources: pyro tutorial/source/intro_long.ipynb (``model``, the
# version with ``pyro.plate("data")`` that takes ``is_cont_africa, ruggedness, log_gdp``,
# renamed regression_model) and tutorial/source/bayesian_regression.ipynb
# (``BayesianRegression``), Apache-2.0, Copyright (c) 2017-2019 Uber Technologies, Inc.
# --------------------------------------------------------------------------------------


def regression_model(is_cont_africa, ruggedness, log_gdp=None):
    a = pyro.sample("a", dist.Normal(0.0, 10.0))
    b_a = pyro.sample("bA", dist.Normal(0.0, 1.0))
    b_r = pyro.sample("bR", dist.Normal(0.0, 1.0))
    b_ar = pyro.sample("bAR", dist.Normal(0.0, 1.0))
    sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))

    mean = a + b_a * is_cont_africa + b_r * ruggedness + b_ar * is_cont_africa * ruggedness

    with pyro.plate("data", len(ruggedness)):
        return pyro.sample("obs", dist.Normal(mean, sigma), obs=log_gdp)


class BayesianRegression(PyroModule):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, out_features)
        self.linear.weight = PyroSample(
            dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2)
        )
        self.linear.bias = PyroSample(dist.Normal(0.0, 10.0).expand([out_features]).to_event(1))

    def forward(self, x, y=None):
        sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
        mean = self.linear(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            obs = pyro.sample("obs", dist.Normal(mean, sigma), obs=y)  # noqa: F841
        return mean


RUGGED_COEFFICIENTS = {"a": 9.2, "bA": -1.9, "bR": -0.2, "bAR": 0.35, "sigma": 0.95}
"""The coefficients the synthetic rugged data are drawn with (near the tutorial's fit)."""


def rugged_data(n: int = 170, seed: int = 0) -> tuple[tuple, dict]:
    """``(is_cont_africa, ruggedness), {"log_gdp": log_gdp}``: synthetic rugged data.

    ``n`` rows like the tutorial's 170 countries with a finite GDP: about 30% African
    (``is_cont_africa`` 0/1), ruggedness from a Gamma(1.2, 1) clipped to [0, 6.2], and
    log GDP drawn from the model itself with :data:`RUGGED_COEFFICIENTS`.
    """
    rng = np.random.default_rng(seed)
    c = RUGGED_COEFFICIENTS
    is_cont_africa = (rng.random(n) < 0.3).astype(np.float32)
    ruggedness = np.clip(rng.gamma(1.2, 1.0, size=n), 0.0, 6.2).astype(np.float32)
    mean = c["a"] + c["bA"] * is_cont_africa + c["bR"] * ruggedness
    mean = mean + c["bAR"] * is_cont_africa * ruggedness
    log_gdp = (mean + rng.normal(0.0, c["sigma"], size=n)).astype(np.float32)
    train = torch.tensor(np.stack([is_cont_africa, ruggedness, log_gdp], axis=1))
    is_cont_africa, ruggedness, log_gdp = train[:, 0], train[:, 1], train[:, 2]
    return (is_cont_africa, ruggedness), {"log_gdp": log_gdp}


def rugged_module_data(n: int = 170, seed: int = 0) -> tuple[tuple, dict]:
    """``(x_data, y_data), {}`` as bayesian_regression.ipynb builds them (with the
    ``cont_africa_x_rugged`` interaction column) from :func:`rugged_data`."""
    (is_cont_africa, ruggedness), kw = rugged_data(n, seed)
    x_data = torch.stack([is_cont_africa, ruggedness, is_cont_africa * ruggedness], dim=1)
    return (x_data, kw["log_gdp"]), {}


@functools.cache
def _regression_module() -> BayesianRegression:
    return BayesianRegression(3, 1)


def regression_module_model(x, y=None):
    """``BayesianRegression(3, 1)`` (built on first call; it holds no learnable weights)."""
    return _regression_module()(x, y)


# --------------------------------------------------------------------------------------
# VAE. Source: pyro examples/vae/vae.py (Encoder, Decoder, VAE), Apache-2.0, Copyright (c)
# 2017-2019 Uber Technologies, Inc. Adapted: the 784 (28x28 MNIST) pixels are 64 (8x8 digits).
# --------------------------------------------------------------------------------------


# define the PyTorch module that parameterizes the
# diagonal gaussian distribution q(z|x)
class Encoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        # setup the three linear transformations used
        self.fc1 = nn.Linear(64, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        # setup the non-linearities
        self.softplus = nn.Softplus()

    def forward(self, x):
        # define the forward computation on the image x
        # first shape the mini-batch to have pixels in the rightmost dimension
        x = x.reshape(-1, 64)
        # then compute the hidden units
        hidden = self.softplus(self.fc1(x))
        # then return a mean vector and a (positive) square root covariance
        # each of size batch_size x z_dim
        z_loc = self.fc21(hidden)
        z_scale = torch.exp(self.fc22(hidden))
        return z_loc, z_scale


# define the PyTorch module that parameterizes the
# observation likelihood p(x|z)
class Decoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        # setup the two linear transformations used
        self.fc1 = nn.Linear(z_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, 64)
        # setup the non-linearities
        self.softplus = nn.Softplus()

    def forward(self, z):
        # define the forward computation on the latent z
        # first compute the hidden units
        hidden = self.softplus(self.fc1(z))
        # return the parameter for the output Bernoulli
        # each is of size batch_size x 64
        loc_img = torch.sigmoid(self.fc21(hidden))
        return loc_img


# define a PyTorch module for the VAE
class VAE(nn.Module):
    # by default our latent space is 50-dimensional
    # and we use 400 hidden units
    def __init__(self, z_dim=50, hidden_dim=400, use_cuda=False):
        super().__init__()
        # create the encoder and decoder networks
        self.encoder = Encoder(z_dim, hidden_dim)
        self.decoder = Decoder(z_dim, hidden_dim)

        if use_cuda:
            # calling cuda() here will put all the parameters of
            # the encoder and decoder networks into gpu memory
            self.cuda()
        self.use_cuda = use_cuda
        self.z_dim = z_dim

    # define the model p(x|z)p(z)
    def model(self, x):
        # register PyTorch module `decoder` with Pyro
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            # setup hyperparameters for prior p(z)
            z_loc = torch.zeros(x.shape[0], self.z_dim, dtype=x.dtype, device=x.device)
            z_scale = torch.ones(x.shape[0], self.z_dim, dtype=x.dtype, device=x.device)
            # sample from prior (value will be sampled by guide when computing the ELBO)
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            # decode the latent code z
            loc_img = self.decoder.forward(z)
            # score against actual images (with relaxed Bernoulli values)
            pyro.sample(
                "obs",
                dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                obs=x.reshape(-1, 64),
            )
            # return the loc so we can visualize it later
            return loc_img

    # define the guide (i.e. variational distribution) q(z|x)
    def guide(self, x):
        # register PyTorch module `encoder` with Pyro
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            # use the encoder to get the parameters used to define q(z|x)
            z_loc, z_scale = self.encoder.forward(x)
            # sample the latent code z
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))

    # define a helper function for reconstructing images
    def reconstruct_img(self, x):
        # encode image x
        z_loc, z_scale = self.encoder(x)
        # sample in latent space
        z = dist.Normal(z_loc, z_scale).sample()
        # decode the image (note we don't sample in image space)
        loc_img = self.decoder(z)
        return loc_img


# Ten 8x8 glyphs (0..9) for the synthetic digits used when scikit-learn is absent.
_GLYPHS = (
    (
        "..####..",
        ".##..##.",
        ".##..##.",
        ".##..##.",
        ".##..##.",
        ".##..##.",
        "..####..",
        "........",
    ),
    (
        "...##...",
        "..###...",
        "...##...",
        "...##...",
        "...##...",
        "...##...",
        "..####..",
        "........",
    ),
    (
        "..####..",
        ".##..##.",
        ".....##.",
        "....##..",
        "...##...",
        "..##....",
        ".######.",
        "........",
    ),
    (
        "..####..",
        ".##..##.",
        ".....##.",
        "...###..",
        ".....##.",
        ".##..##.",
        "..####..",
        "........",
    ),
    (
        "....##..",
        "...###..",
        "..####..",
        ".##.##..",
        ".######.",
        "....##..",
        "....##..",
        "........",
    ),
    (
        ".######.",
        ".##.....",
        ".#####..",
        ".....##.",
        ".....##.",
        ".##..##.",
        "..####..",
        "........",
    ),
    (
        "..####..",
        ".##.....",
        ".#####..",
        ".##..##.",
        ".##..##.",
        ".##..##.",
        "..####..",
        "........",
    ),
    (
        ".######.",
        ".....##.",
        "....##..",
        "...##...",
        "...##...",
        "...##...",
        "...##...",
        "........",
    ),
    (
        "..####..",
        ".##..##.",
        ".##..##.",
        "..####..",
        ".##..##.",
        ".##..##.",
        "..####..",
        "........",
    ),
    (
        "..####..",
        ".##..##.",
        ".##..##.",
        "..#####.",
        ".....##.",
        "....##..",
        "..###...",
        "........",
    ),
)


def _synthetic_digits(n: int, rng: np.random.Generator) -> np.ndarray:
    glyphs = np.array([[[ch == "#" for ch in row] for row in g] for g in _GLYPHS], dtype=float)
    labels = rng.integers(0, 10, size=n)
    images = glyphs[labels]
    shifts = rng.integers(-1, 2, size=(n, 2))
    images = np.stack(
        [np.roll(im, tuple(s), axis=(0, 1)) for im, s in zip(images, shifts, strict=True)]
    )
    images = images * rng.uniform(0.6, 1.0, size=(n, 1, 1))
    images = np.clip(images + rng.normal(0.0, 0.1, size=images.shape), 0.0, 1.0)
    return np.round(images * 16) / 16  # the 17 grey levels of load_digits


def digits(n: int | None = None, seed: int = 0) -> torch.Tensor:
    """The 8x8 digits scaled to [0, 1], shape ``(n, 64)`` (all 1797 when ``n`` is None).

    scikit-learn's ``load_digits`` (shipped with the package, nothing downloaded) divided
    by 16 when scikit-learn is importable; otherwise 1797 synthetic glyph images of the
    same shape and grey levels (numpy ``seed``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        x = _synthetic_digits(1797, np.random.default_rng(seed))
    else:
        x = load_digits().data / 16.0
    x = torch.tensor(x[:n], dtype=torch.float)
    return x.reshape(-1, 64)


VAE_Z_DIM, VAE_HIDDEN_DIM, VAE_BATCH_SIZE = 4, 100, 256


def new_vae(seed: int = 0) -> VAE:
    """A fresh ``VAE(z_dim=4, hidden_dim=100)`` with seeded weights (torch's RNG restored)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return VAE(z_dim=VAE_Z_DIM, hidden_dim=VAE_HIDDEN_DIM)


@functools.cache
def _default_vae() -> VAE:
    return new_vae()


def vae_model(x):
    """``VAE.model`` of one VAE built on first call; :func:`new_vae` for fresh weights."""
    return _default_vae().model(x)


def vae_data(n: int | None = None) -> tuple[tuple, dict]:
    """``(x,), {}``: all the digits (see :func:`digits`)."""
    return (digits(n),), {}


def vae_batches(args: tuple, kwargs: dict) -> list[tuple[tuple, dict]]:
    """Minibatches of 256 images in one fixed shuffled order (numpy seed 0); the last is
    smaller (5 images of 1797), like the source's ``DataLoader(batch_size=256)``."""
    (x,) = args
    order = torch.as_tensor(np.random.default_rng(0).permutation(x.shape[0]))
    return [((x[idx],), {}) for idx in order.split(VAE_BATCH_SIZE)]


# --------------------------------------------------------------------------------------
# Coin flips with subsampling. Source: pyro tutorial/source/svi_part_i.ipynb (``model``,
# its Beta(10, 10) prior and optimizer) with the vectorized, subsampled ``plate`` of
# tutorial/source/svi_part_ii.ipynb ("Automatic subsampling with plate"), Apache-2.0,
# Copyright (c) 2017-2019 Uber Technologies, Inc.
# --------------------------------------------------------------------------------------


def coin_model(data):
    # define the hyperparameters that control the Beta prior
    alpha0 = torch.tensor(10.0)
    beta0 = torch.tensor(10.0)
    # sample f from the Beta prior
    f = pyro.sample("latent_fairness", dist.Beta(alpha0, beta0))
    # observe a subsample of 100 of the data (svi_part_ii.ipynb)
    with pyro.plate("observe_data", size=len(data), subsample_size=100) as ind:
        pyro.sample("obs", dist.Bernoulli(f), obs=data.index_select(0, ind))


COIN_N, COIN_HEADS = 2000, 1200


def coin_data(seed: int = 0) -> tuple[tuple, dict]:
    """``(data,), {}``: 2000 flips, 1200 heads, in a fixed random order (numpy seed)."""
    flips = np.zeros(COIN_N, dtype=np.float32)
    flips[:COIN_HEADS] = 1.0
    return (torch.tensor(np.random.default_rng(seed).permutation(flips)),), {}


def _beta_mean_sd(a: float, b: float) -> tuple[float, float]:
    return a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


COIN_EXACT = {"latent_fairness": _beta_mean_sd(10.0 + COIN_HEADS, 10.0 + COIN_N - COIN_HEADS)}
"""Exact posterior mean and sd: Beta(10 + 1200, 10 + 800)."""


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def _baseball(name, model, latents) -> Example:
    return Example(
        name=name,
        host="pyro",
        model=model,
        data=baseball_data,
        lr=0.01,
        num_steps=5000,
        latents=latents,
        source=f"pyro examples/baseball.py::{model.__name__} ({_LICENSE})",
        settings="none in the source (MCMC only): the stated default Adam 0.01 x 5000 steps",
    )


EXAMPLES: dict[str, Example] = {
    "eight_schools": Example(
        name="eight_schools",
        host="pyro",
        model=eight_schools_svi_model,
        data=eight_schools_data,
        lr=0.01,
        num_steps=1000,
        latents=("eta", "mu", "tau"),
        source=f"pyro examples/eight_schools/svi.py::model ({_LICENSE})",
        settings="svi.py defaults: --lr 0.01, --num-epochs 1000 (one step an epoch)",
    ),
    # mcmc.py's eight-schools model is not here: its batch dims outside any plate make
    # Pyro's SVI refuse it for every guide (AutoNormal too); it is an MCMC-only model.
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
    "bayesian_regression": Example(
        name="bayesian_regression",
        host="pyro",
        model=regression_model,
        data=rugged_data,
        lr=0.02,
        num_steps=1000,
        latents=("a", "bA", "bR", "bAR", "sigma"),
        source=f"pyro tutorial/source/intro_long.ipynb::model ({_LICENSE})",
        settings="intro_long.ipynb: AutoNormal, Adam lr 0.02, 1000 steps",
    ),
    "bayesian_regression_module": Example(
        name="bayesian_regression_module",
        host="pyro",
        model=regression_module_model,
        data=rugged_module_data,
        lr=0.03,
        num_steps=1500,
        latents=("linear.weight", "linear.bias", "sigma"),
        source=f"pyro tutorial/source/bayesian_regression.ipynb::BayesianRegression ({_LICENSE})",
        settings="bayesian_regression.ipynb: AutoDiagonalNormal, Adam lr 0.03, 1500 iterations",
    ),
    "vae": Example(
        name="vae",
        host="pyro",
        model=vae_model,
        data=vae_data,
        lr=1.0e-3,
        num_steps=101 * 8,
        latents=(),
        source=f"pyro examples/vae/vae.py::VAE.model ({_LICENSE})",
        settings="vae.py: Adam lr 1e-3, 101 epochs (8 minibatches of 256 an epoch here)",
        batches=vae_batches,
        fresh_model=lambda: new_vae().model,
        small={"n": 600},
    ),
    "coin_flips": Example(
        name="coin_flips",
        host="pyro",
        model=coin_model,
        data=coin_data,
        lr=0.0005,
        num_steps=2000,
        latents=("latent_fairness",),
        source=(
            "pyro tutorial/source/svi_part_i.ipynb::model with the subsampled plate of"
            f" svi_part_ii.ipynb ({_LICENSE})"
        ),
        settings="svi_part_i.ipynb: Adam lr 0.0005, betas (0.90, 0.999), n_steps 2000",
        optim_kwargs={"betas": (0.90, 0.999)},
        exact=COIN_EXACT,
    ),
}
"""The Pyro examples by name."""
