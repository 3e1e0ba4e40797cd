"""The model zoo: every model written once for both hosts.

Each builder takes a :class:`~faithful_guides.zoo.host.Host` (or its name) and returns
``(model, args, kwargs)``: call ``model(*args, **kwargs)`` under the host's handlers. Observed
data are model arguments (so that an amortized guide sees them) and are generated
deterministically with numpy from ``seed``, so both hosts get identical data. Passing ``None``
for a data argument samples that site instead (prior predictive).

Example:
    >>> model, args, kwargs = binary_tree("pyro", 3)
    >>> [tuple(a.shape) for a in args]
    [(4,)]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from faithful_guides.zoo.host import Host, HostName, get_host

__all__ = [
    "ZOO",
    "ModelSpec",
    "arithmetic_circuit",
    "binary_tree",
    "collider",
    "constrained",
    "eight_schools",
    "hier_regression",
    "hmm_chain",
    "latent_grid",
    "student",
    "vae",
    "vector_event",
]

ModelSpec = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]
"""``(model, args, kwargs)`` as every builder returns it."""


def _host(host: Host | HostName) -> Host:
    return host if isinstance(host, Host) else get_host(host)


def _obs(data: Any, index: Any) -> Any:
    return None if data is None else data[index]


# --------------------------------------------------------------------------------------
# Binary-tree linear-Gaussian Bayesian networks
# --------------------------------------------------------------------------------------


def binary_tree(
    host: Host | HostName,
    depth: int,
    *,
    weights: Sequence[float] | np.ndarray | None = None,
    num_rows: int | None = None,
    seed: int = 0,
) -> ModelSpec:
    """A complete binary tree of linear-Gaussian nodes, edges pointing to the leaves.

    Heap indexing: node ``i`` has children ``2i+1`` and ``2i+2``. Internal nodes are latent
    (``f"z{i}"``), the ``2**(depth-1)`` leaves are observed (``f"x{i}"``). The root is
    ``N(0, 1)`` and node ``i`` is ``N(weights[i] * parent, 1)`` (``weights`` defaults to ones;
    ``weights[0]`` is unused). With ``num_rows=N`` the whole tree sits in ``plate("data", N)``
    and each row is an independent instance. The model is ``model(x)`` with ``x`` of shape
    ``(num_leaves,)`` or ``(N, num_leaves)``, leaves in heap order.

    Example:
        >>> model, (x,), _ = binary_tree("numpyro", 4, num_rows=10)
        >>> x.shape
        (10, 8)
    """
    h = _host(host)
    if depth < 2:
        raise ValueError(f"binary_tree needs depth >= 2 (a root and leaves), got {depth}.")
    n = 2**depth - 1
    n_internal = 2 ** (depth - 1) - 1
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},) for depth {depth}, got {w.shape}.")
    w_list = [float(v) for v in w]

    rng = np.random.default_rng(seed)
    rows = 1 if num_rows is None else num_rows
    vals = rng.standard_normal((rows, n))
    for level in range(1, depth):  # vectorized level by level
        idx = np.arange(2**level - 1, 2 ** (level + 1) - 1)
        vals[:, idx] += w[idx] * vals[:, (idx - 1) // 2]
    data = vals[:, n_internal:]
    x = h.tensor(data[0] if num_rows is None else data)

    sample, normal = h.sample, h.dist.Normal

    def model(x: Any = None) -> None:
        values: list[Any] = [None] * n_internal
        ctx = contextlib.nullcontext() if num_rows is None else h.plate("data", num_rows)
        with ctx:
            for i in range(n):
                loc = 0.0 if i == 0 else w_list[i] * values[(i - 1) // 2]
                if i < n_internal:
                    values[i] = sample(f"z{i}", normal(loc, 1.0))
                else:
                    sample(f"x{i}", normal(loc, 1.0), obs=_obs(x, (..., i - n_internal)))

    return model, (x,), {}


# --------------------------------------------------------------------------------------
# Small named networks
# --------------------------------------------------------------------------------------


def student(host: Host | HostName, *, seed: int = 0) -> ModelSpec:
    """The "student" network, continuous Gaussian version.

    Edges D→G, I→G, I→S, G→L, S→J, L→J, G→H, J→H; ``J`` and ``H`` observed
    (``model(J, H)``).

    Example:
        >>> model, args, _ = student("pyro")
        >>> len(args)
        2
    """
    h = _host(host)
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(7)
    d, i = e[0], e[1]
    g = 0.5 * d + 0.5 * i + e[2]
    s = i + e[3]
    lv = g + e[4]
    j = 0.5 * s + 0.5 * lv + e[5]
    hv = 0.5 * g + 0.5 * j + e[6]
    normal, sample = h.dist.Normal, h.sample

    def model(J: Any = None, H: Any = None) -> None:
        D = sample("D", normal(0.0, 1.0))
        I = sample("I", normal(0.0, 1.0))  # noqa: E741 - the network's own letter
        G = sample("G", normal(0.5 * D + 0.5 * I, 1.0))
        S = sample("S", normal(I, 1.0))
        L = sample("L", normal(G, 1.0))
        J = sample("J", normal(0.5 * S + 0.5 * L, 1.0), obs=J)
        sample("H", normal(0.5 * G + 0.5 * J, 1.0), obs=H)

    return model, (h.tensor(j), h.tensor(hv)), {}


def collider(host: Host | HostName, *, seed: int = 0) -> ModelSpec:
    """z1→z3, z2→z4, (z3, z4)→x with ``x`` observed (``model(x)``).

    Example:
        >>> model, (x,), _ = collider("numpyro")
        >>> x.shape
        ()
    """
    h = _host(host)
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(5)
    xv = (e[0] + e[2]) + (e[1] + e[3]) + e[4]
    normal, sample = h.dist.Normal, h.sample

    def model(x: Any = None) -> None:
        z1 = sample("z1", normal(0.0, 1.0))
        z2 = sample("z2", normal(0.0, 1.0))
        z3 = sample("z3", normal(z1, 1.0))
        z4 = sample("z4", normal(z2, 1.0))
        sample("x", normal(z3 + z4, 1.0), obs=x)

    return model, (h.tensor(xv),), {}


def arithmetic_circuit(host: Host | HostName, *, seed: int = 0) -> ModelSpec:
    """The arithmetic circuit of Webb et al. (2018), with a deterministic site.

    ``z0 ~ Laplace(20, 2)``, ``z1 ~ Laplace(10, 2)``, ``z2 ~ N(z0 + z1, 0.1)``,
    ``z3 ~ N(z0 z1, 0.1)``, ``z4 ~ N(7, 2)``, ``scale = deterministic(softplus(z4))``,
    ``z5 ~ N(z3, scale)``, ``x0 ~ N(z3, 0.1)``, ``x1 ~ N(z5, 0.1)``; ``model(x0, x1)``.

    Example:
        >>> model, args, _ = arithmetic_circuit("pyro")
        >>> len(args)
        2
    """
    h = _host(host)
    rng = np.random.default_rng(seed)
    z0 = rng.laplace(20.0, 2.0)
    z1 = rng.laplace(10.0, 2.0)
    z3 = rng.normal(z0 * z1, 0.1)
    z4 = rng.normal(7.0, 2.0)
    z5 = rng.normal(z3, np.log1p(np.exp(z4)))
    x0v, x1v = rng.normal(z3, 0.1), rng.normal(z5, 0.1)
    d, sample, xp = h.dist, h.sample, h.np

    def model(x0: Any = None, x1: Any = None) -> None:
        z0 = sample("z0", d.Laplace(20.0, 2.0))
        z1 = sample("z1", d.Laplace(10.0, 2.0))
        sample("z2", d.Normal(z0 + z1, 0.1))
        z3 = sample("z3", d.Normal(z0 * z1, 0.1))
        z4 = sample("z4", d.Normal(7.0, 2.0))
        scale = h.deterministic("scale", xp.log1p(xp.exp(z4)))  # softplus, any tensor code
        z5 = sample("z5", d.Normal(z3, scale))
        sample("x0", d.Normal(z3, 0.1), obs=x0)
        sample("x1", d.Normal(z5, 0.1), obs=x1)

    return model, (h.tensor(x0v), h.tensor(x1v)), {}


# --------------------------------------------------------------------------------------
# Chains and grids (Python loops, one site per element)
# --------------------------------------------------------------------------------------


def hmm_chain(host: Host | HostName, T: int = 50, *, seed: int = 0) -> ModelSpec:
    """A linear-Gaussian state-space model written with a Python loop.

    ``z0 ~ N(0, 1)``, ``z_t ~ N(0.9 z_{t-1}, 1)``, ``x_t ~ N(z_t, 1)`` observed; sites
    ``f"z{t}"``, ``f"x{t}"`` in the order ``z0, x0, z1, x1, ...``; ``model(x)`` with ``x`` of
    shape ``(T,)``.

    Example:
        >>> model, (x,), _ = hmm_chain("numpyro", 5)
        >>> x.shape
        (5,)
    """
    h = _host(host)
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((2, T))
    z = np.empty(T)
    prev = 0.0
    for t in range(T):
        prev = 0.9 * prev + e[0, t]
        z[t] = prev
    xdata = h.tensor(z + e[1])
    normal, sample = h.dist.Normal, h.sample

    def model(x: Any = None) -> None:
        z = 0.0
        for t in range(T):
            z = sample(f"z{t}", normal(0.9 * z, 1.0))
            sample(f"x{t}", normal(z, 1.0), obs=_obs(x, t))

    return model, (xdata,), {}


def latent_grid(host: Host | HostName, n: int, *, seed: int = 0) -> ModelSpec:
    """An ``n × n`` grid of latents, each with an observation.

    ``z[i,j] ~ N(0.5 z[i-1,j] + 0.5 z[i,j-1], 1)`` (missing neighbours count as 0), sites
    ``f"z_{i}_{j}"`` and observed ``f"x_{i}_{j}" ~ N(z[i,j], 1)``; ``model(x)``, ``x`` of
    shape ``(n, n)``.

    Example:
        >>> model, (x,), _ = latent_grid("pyro", 3)
        >>> tuple(x.shape)
        (3, 3)
    """
    h = _host(host)
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((2, n, n))
    z = np.zeros((n + 1, n + 1))
    for i in range(n):
        for j in range(n):
            z[i + 1, j + 1] = 0.5 * z[i, j + 1] + 0.5 * z[i + 1, j] + e[0, i, j]
    xdata = h.tensor(z[1:, 1:] + e[1])
    normal, sample = h.dist.Normal, h.sample

    def model(x: Any = None) -> None:
        zs: dict[tuple[int, int], Any] = {}
        for i in range(n):
            for j in range(n):
                loc = 0.5 * zs.get((i - 1, j), 0.0) + 0.5 * zs.get((i, j - 1), 0.0)
                zs[i, j] = sample(f"z_{i}_{j}", normal(loc, 1.0))
                sample(f"x_{i}_{j}", normal(zs[i, j], 1.0), obs=_obs(x, (i, j)))

    return model, (xdata,), {}


# --------------------------------------------------------------------------------------
# Plated models
# --------------------------------------------------------------------------------------

_SCHOOLS_Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
_SCHOOLS_SIGMA = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]


def eight_schools(host: Host | HostName) -> ModelSpec:
    """Eight schools (centered): ``mu``, ``tau ~ HalfCauchy(5)``, ``theta`` in plate
    ``"schools"`` of 8, ``y`` observed; ``model(sigma, y)``.

    Example:
        >>> model, (sigma, y), _ = eight_schools("numpyro")
        >>> y.shape
        (8,)
    """
    h = _host(host)
    d, sample = h.dist, h.sample

    def model(sigma: Any, y: Any = None) -> None:
        mu = sample("mu", d.Normal(0.0, 5.0))
        tau = sample("tau", d.HalfCauchy(5.0))
        with h.plate("schools", len(_SCHOOLS_Y)):
            theta = sample("theta", d.Normal(mu, tau))
            sample("y", d.Normal(theta, sigma), obs=y)

    return model, (h.tensor(_SCHOOLS_SIGMA), h.tensor(_SCHOOLS_Y)), {}


def hier_regression(
    host: Host | HostName,
    num_rows: int = 1000,
    *,
    subsample_size: int | None = None,
    seed: int = 0,
) -> ModelSpec:
    """Linear regression over a data plate of ``num_rows`` rows, optionally subsampled.

    Global latents ``intercept ~ N(0, 10)``, ``slope ~ N(0, 10)``,
    ``sigma ~ HalfNormal(1)``; ``y[i] ~ N(intercept + slope * x[i], sigma)`` observed in
    ``plate("data", num_rows, subsample_size=subsample_size)``; ``model(x, y)``.

    Example:
        >>> model, (x, y), _ = hier_regression("pyro", 100, subsample_size=10)
        >>> tuple(y.shape)
        (100,)
    """
    h = _host(host)
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal(num_rows)
    yv = 1.0 + 2.0 * xv + 0.5 * rng.standard_normal(num_rows)
    d, sample = h.dist, h.sample

    def model(x: Any, y: Any = None) -> None:
        intercept = sample("intercept", d.Normal(0.0, 10.0))
        slope = sample("slope", d.Normal(0.0, 10.0))
        sigma = sample("sigma", d.HalfNormal(1.0))
        with h.plate("data", num_rows, subsample_size=subsample_size) as idx:
            sample("y", d.Normal(intercept + slope * x[idx], sigma), obs=_obs(y, idx))

    return model, (h.tensor(xv), h.tensor(yv)), {}


# --------------------------------------------------------------------------------------
# Supports and event shapes
# --------------------------------------------------------------------------------------


def constrained(host: Host | HostName, *, seed: int = 0) -> ModelSpec:
    """Latents with constrained supports, each feeding an observed site.

    ``z_lognormal ~ LogNormal(0, 1)``, ``z_gamma ~ Gamma(2, 2)``, ``z_beta ~ Beta(2, 2)``,
    ``z_dirichlet ~ Dirichlet(ones(3))`` and observed ``x_<name> ~ N(z_<name>, 0.5)``
    (``to_event(1)`` for the Dirichlet); ``model(x_lognormal, x_gamma, x_beta, x_dirichlet)``.

    Example:
        >>> model, args, _ = constrained("numpyro")
        >>> [a.shape for a in args]
        [(), (), (), (3,)]
    """
    h = _host(host)
    rng = np.random.default_rng(seed)
    zs = [rng.lognormal(), rng.gamma(2.0, 0.5), rng.beta(2.0, 2.0), rng.dirichlet(np.ones(3))]
    data = [h.tensor(z + 0.5 * rng.standard_normal(np.shape(z))) for z in zs]
    d, sample = h.dist, h.sample
    ones3 = h.tensor(np.ones(3))

    def model(
        x_lognormal: Any = None, x_gamma: Any = None, x_beta: Any = None, x_dirichlet: Any = None
    ) -> None:
        a = sample("z_lognormal", d.LogNormal(0.0, 1.0))
        sample("x_lognormal", d.Normal(a, 0.5), obs=x_lognormal)
        b = sample("z_gamma", d.Gamma(2.0, 2.0))
        sample("x_gamma", d.Normal(b, 0.5), obs=x_gamma)
        c = sample("z_beta", d.Beta(2.0, 2.0))
        sample("x_beta", d.Normal(c, 0.5), obs=x_beta)
        w = sample("z_dirichlet", d.Dirichlet(ones3))
        sample("x_dirichlet", d.Normal(w, 0.5).to_event(1), obs=x_dirichlet)

    return model, tuple(data), {}


def vector_event(host: Host | HostName, *, seed: int = 0) -> ModelSpec:
    """A vectorized latent with an event dimension: ``z ~ N(0, I_3)`` (``to_event(1)``) and
    observed ``x ~ N(W z, I_4)`` (``to_event(1)``), ``W`` a fixed 4×3 matrix; ``model(x)``.

    Example:
        >>> model, (x,), _ = vector_event("pyro")
        >>> tuple(x.shape)
        (4,)
    """
    h = _host(host)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((4, 3))
    xv = W @ rng.standard_normal(3) + rng.standard_normal(4)
    Wt, zeros3 = h.tensor(W), h.tensor(np.zeros(3))
    d, sample = h.dist, h.sample

    def model(x: Any = None) -> None:
        z = sample("z", d.Normal(zeros3, 1.0).to_event(1))
        sample("x", d.Normal(Wt @ z, 1.0).to_event(1), obs=x)

    return model, (h.tensor(xv),), {}


# --------------------------------------------------------------------------------------
# Neural models (learned model parameters)
# --------------------------------------------------------------------------------------


def vae(
    host: Host | HostName,
    num_rows: int = 200,
    *,
    subsample_size: int | None = None,
    latent_dim: int = 2,
    data_dim: int = 6,
    hidden_dim: int = 16,
    sigma: float = 0.3,
    seed: int = 0,
) -> ModelSpec:
    """A VAE-style model: one local latent vector per row and a learned neural decoder.

    In ``plate("data", num_rows, subsample_size=subsample_size)``:
    ``z[i] ~ N(0, I_latent_dim)`` (``to_event(1)``) and observed
    ``x[i] ~ N(f(z[i]), sigma)`` (``to_event(1)``), with the decoder
    ``f(z) = tanh(z W1 + b1) W2 + b2`` whose weights are model parameters (``host.param``:
    ``decoder_w1``, ``decoder_b1``, ``decoder_w2``, ``decoder_b2``); ``model(x)``, ``x`` of
    shape ``(num_rows, data_dim)``. The data come from a decoder of the same form drawn from
    ``seed``; the learned decoder starts at another draw.

    Example:
        >>> model, (x,), _ = vae("numpyro", 100, subsample_size=10)
        >>> x.shape
        (100, 6)
    """
    h = _host(host)
    rng = np.random.default_rng(seed)

    def weights(scale: float) -> list[np.ndarray]:
        return [
            scale * rng.standard_normal((latent_dim, hidden_dim)),
            0.1 * rng.standard_normal(hidden_dim),
            scale * rng.standard_normal((hidden_dim, data_dim)) / np.sqrt(hidden_dim),
            0.1 * rng.standard_normal(data_dim),
        ]

    def decode(z: np.ndarray, w: list[np.ndarray]) -> np.ndarray:
        return np.tanh(z @ w[0] + w[1]) @ w[2] + w[3]

    true_w = weights(1.5)
    z = rng.standard_normal((num_rows, latent_dim))
    xv = decode(z, true_w) + sigma * rng.standard_normal((num_rows, data_dim))
    init = dict(zip(("w1", "b1", "w2", "b2"), weights(0.5), strict=True))
    zeros = h.tensor(np.zeros(latent_dim))
    d, sample, xp = h.dist, h.sample, h.np

    def model(x: Any = None) -> None:
        # a fresh initial array per call: Pyro's param store may train the one it is given
        w = {k: h.param(f"decoder_{k}", h.tensor(v)) for k, v in init.items()}
        with h.plate("data", num_rows, subsample_size=subsample_size) as idx:
            z = sample("z", d.Normal(zeros, 1.0).to_event(1))
            loc = xp.tanh(z @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]
            sample("x", d.Normal(loc, sigma).to_event(1), obs=_obs(x, idx))

    return model, (h.tensor(xv),), {}


# --------------------------------------------------------------------------------------
# The standard instances
# --------------------------------------------------------------------------------------


def _tree(depth: int) -> Callable[[Host | HostName], ModelSpec]:
    def build(host: Host | HostName) -> ModelSpec:
        return binary_tree(host, depth)

    build.__name__ = f"tree{depth}"
    return build


ZOO: dict[str, Callable[[Host | HostName], ModelSpec]] = {
    **{f"tree{k}": _tree(k) for k in range(3, 8)},
    "student": student,
    "collider": collider,
    "arithmetic": arithmetic_circuit,
    "state_space": hmm_chain,
    "grid3": lambda host: latent_grid(host, 3),
    "eight_schools": eight_schools,
    "hier_regression": hier_regression,
    "constrained": constrained,
    "vector_event": vector_event,
    "vae": vae,
}
"""The standard instances, ``name -> builder(host) -> (model, args, kwargs)``; tests and
benchmarks parametrize over it."""
