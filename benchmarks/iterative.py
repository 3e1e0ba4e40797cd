r"""AutoIterative (iterative amortized inference, Marino, Yue and Mandt 2018) on binarized digits.

A CPU-sized version of the paper's VAE experiment. Data: scikit-learn's ``load_digits``
(8x8 = 64 pixels, shipped with the package), binarized at ``pixel / 16 > 0.5``, split once
with numpy seed 0 into 1500 training and 297 test images.

Models (ordinary Pyro / NumPyro models with learned networks; every row of both hosts starts
from the same initial weights, drawn with numpy seed 0 as PyTorch's ``nn.Linear`` default):

* ``vae``: ``z ~ N(0, I_16)`` per image in ``plate("data", N, subsample_size=B)``, decoder an
  MLP 16 -> 64 -> 64 -> 64 (two softplus hidden layers; Pyro ``pyro.module("decoder", ...)``,
  NumPyro ``numpyro.param`` weights), ``x ~ Bernoulli(logits=decoder(z))``.
* ``hvae``: ``z2 ~ N(0, I_8)``, ``z1 | z2 ~ N(m(z2), softplus(s(z2)) + 1e-3)`` (16 dims, an
  MLP 8 -> 64 -> 32, ``prior_net``), ``x | z1`` the same decoder as ``vae``.

Rows (one guide each, trained jointly with the model for the same epochs, Adam, batch ``B``):

* ``encoder``: ``AutoIterative(model, num_steps=0, init="encoder")``, the standard VAE
  encoder (T = 0), trained with ``Trace_ELBO`` (what ``IterativeELBO`` reduces to at T = 0);
* ``gradient``: ``AutoIterative(model, num_steps=T, inputs="gradient", init="encoder")``
  trained with ``IterativeELBO()`` (every iterate trained, as in the paper);
* ``error``: the same with ``inputs="error"``;
* ``gradient-final``: the ``gradient`` guide trained with ``Trace_ELBO`` (final iterate
  only), a control for rows that fall back to it;
* ``mlp`` (only with ``--rows``): not an AutoIterative, a hand-written guide with a dense
  MLP encoder 64 -> H -> H -> 2 x latents (softplus; scale ``softplus + 1e-3``), mean-field
  over every latent of an image: the textbook VAE encoder. At these settings it falls into
  posterior collapse (test ELBO = log p(x) = -24.5, the latents unused) on both models,
  where every AutoIterative row learns to use them.

Where ``IterativeELBO`` raises on a row's first step, the row is trained with ``Trace_ELBO``
instead and says so in its ``loss`` cell and notes.

Columns, all on the test split (full batch, no subsampling), nats per image:

* ``ELBO``: test ELBO at the trained ``T``, ``--particles`` draws from the guide per image;
* ``log p(x)``: importance-sampled log-likelihood, ``log mean_k p(x, z_k) / q(z_k | x)`` over
  ``K`` guide draws (the draws by tracing the guide under a vectorized particle plate, the
  log joint by tracing the model replayed on the guide trace);
* ``ELBO@2T``: the same guide run with ``num_steps = 2T`` at test time;
* ``opt ELBO``: per-example optimum: the guide's final ``lambda`` (loc and scale of every
  latent of every image, read off the guide trace at ``T``) refined by ``--opt-steps`` Adam
  steps on free per-example parameters (model fixed, 16 draws a step);
* ``gap``: ``opt ELBO`` minus the ELBO of the same starting ``lambda`` (the amortization gap
  left after ``T`` refinements); ``gap@2T``: ``opt ELBO`` minus ``ELBO@2T``;
* ``params``: trainable guide numbers, masked-out weights excluded, the update networks
  left out at T = 0 (never run); ``train s``: training wall time (set-up and compilation
  included), ``ms/step`` the median step; ``train loss``: last epoch's mean loss per image.

A second table gives the test ELBO at every iteration ``t = 0 .. 2T`` (``guide.num_steps =
t``; the trained ``T`` is marked ``*``). Each guide call refines from one draw of its
refinement noise; every estimate is still a valid bound (each ``lambda`` gives one). Pyro
draws a chunk of particles from one call, NumPyro one call per particle (``vmap``).

Hidden widths: all rows use ``hidden_dims=(H, H)`` (``--hidden``, default 256) for the
encoder and the update networks alike; ``--hidden default`` uses the guide's defaults.

Hosts: ``--host pyro`` (default), ``numpyro`` or ``both``. Pyro steps are eager
``svi.step`` (torch pinned to one thread), NumPyro steps a ``jax.jit`` of ``svi.update``
(XLA single-threaded); each host's code is one ``run_<host>`` returning a :class:`Result`.

Usage::

    python benchmarks/iterative.py                  # full run, Pyro: 12-14 minutes
    python benchmarks/iterative.py --quick          # 2 minutes
    python benchmarks/iterative.py --quick --host numpyro   # 12 minutes (set-up, compiles)
    python benchmarks/iterative.py --models hvae --rows gradient --log-every 25

Results of ``python benchmarks/iterative.py`` at faithful_guides e38caba (41 min 33 s on
one CPU core shared with two other jobs, so the times are long, the ``error`` and
``gradient-final`` ones most), nats per test image::

    model row             T loss       ELBO    log p(x) ELBO@2T  opt ELBO gap   gap@2T
    vae   encoder         0 Trace     -18.67  -17.10   -18.67   -17.56   1.11  1.11
    vae   gradient        5 Iterative -18.02  -16.75   -17.99   -17.16   0.86  0.82
    vae   error           5 Iterative -18.71  -17.24   -19.07   -17.65   1.04  1.42
    vae   gradient-final  5 Trace     -18.20  -17.00   -18.20   -17.30   0.85  0.90
    hvae  encoder         0 Trace     -19.25  -17.84   -19.25   -18.07   1.18  1.19
    hvae  gradient        5 Iterative -50.00  -44.33   -4005.69 -44.89   5.03  3960.81
    hvae  error           5 Iterative -25.02  -24.34   -26.89   -24.86   0.15  2.03
    hvae  gradient-final  5 Trace     -18.33  -17.18   -42.50   -17.47   0.85  25.03

    model row             params train s ms/step train loss
    vae   encoder         13000  40      8.0     17.70
    vae   gradient        30980  138     24.5    16.84
    vae   error           31484  359     76.9    17.45
    vae   gradient-final  30980  224     44.8    17.22
    hvae  encoder         13016  72      14.5    18.25
    hvae  gradient        36568  167     26.6    50.84
    hvae  error           35311  472     62.9    24.90
    hvae  gradient-final  36568  924     200.0   17.67

    test ELBO at iteration t (* the trained T)
    model row            t=0     t=1     t=2    t=3    t=4    t=5     t=6     t=7     t=8
    vae  gradient        -19.66  -18.89  -18.44 -18.27 -18.13 -18.02* -18.01  -17.96  -18.00
    vae  error           -18.79  -18.71  -18.68 -18.68 -18.68 -18.71* -18.76  -18.82  -18.90
    vae  gradient-final  -22.87  -20.28  -19.11 -18.58 -18.28 -18.20* -18.10  -18.07  -18.14
    hvae gradient        -133.09 -113.11 -88.26 -65.36 -49.10 -50.00* -100.05 -271.95 -707.17
    hvae error           -27.74  -25.74  -24.97 -24.80 -24.86 -25.02* -25.23  -25.57  -25.90
    hvae gradient-final  -37.71  -30.95  -25.59 -21.62 -19.13 -18.33* -19.20  -21.96  -26.62

On ``vae`` the gradient refinement trained with ``IterativeELBO`` beats the encoder (ELBO
+0.65, log p(x) +0.35 nats, amortization gap 0.86 against 1.11) and its ELBO rises at every
iteration, holding to 2T; doubling T at test time does not halve the gap (0.86 -> 0.82).
The ``error`` inputs barely refine (t=0..5 within 0.1 nat). On ``hvae``, ``Trace_ELBO``
training of the gradient guide is the best row (ELBO +0.92, log p(x) +0.66 over the
encoder), but ``IterativeELBO`` training of either input kind degrades: with it the
model's learned prior scale of ``z1`` grows without bound (median over a batch 1.5 at epoch
20, 9 at epoch 100, 185 at epoch 220, where ``Trace_ELBO`` training keeps it near 1; the
guide's iterates then fall behind and the training loss rises from epoch 125 on). A
variant that measures every location step in units of the current scale sigma_t (so the
update is equivariant to that drift) kept the training loss bounded but still left the
model drifting and the final iterate below t=3's; it was not kept. Refinements beyond the
trained T diverge on ``hvae``.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse
import math
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

N_TRAIN, N_TEST, DATA_SEED, SEED = 1500, 297, 0, 0
LATENT, LATENT2, HIDDEN, PIXELS = 16, 8, 64, 64
MODELS = {"vae": ("z",), "hvae": ("z2", "z1")}
"""Model -> its latent sites."""
WIDTHS = {"z": LATENT, "z1": LATENT, "z2": LATENT2}


@dataclass(frozen=True)
class RowSpec:
    """``kind``: ``"iterative"`` (AutoIterative, ``inputs`` None at T = 0) or ``"mlp"``."""

    kind: str
    inputs: str | None
    losses: tuple[str, ...]


ROWS = {
    "encoder": RowSpec("iterative", None, ("Trace_ELBO",)),
    "gradient": RowSpec("iterative", "gradient", ("IterativeELBO", "Trace_ELBO")),
    "error": RowSpec("iterative", "error", ("IterativeELBO", "Trace_ELBO")),
    "gradient-final": RowSpec("iterative", "gradient", ("Trace_ELBO",)),
    "mlp": RowSpec("mlp", None, ("Trace_ELBO",)),
}
"""Row -> what it trains; a later loss is used only where the one before raises."""
DEFAULT_ROWS = ("encoder", "gradient", "error", "gradient-final")
OPT_PARTICLES, OPT_LR = 16, 1e-2


@dataclass
class Settings:
    """What one run uses (from the command line)."""

    epochs: int = 300
    batch: int = 100
    lr: float = 3e-3
    steps: int = 5  # T of the iterative rows
    particles: int = 200  # ELBO draws per image
    is_samples: int = 2000  # K of log p(x)
    opt_steps: int = 200
    hidden: tuple[int, ...] | None = (256, 256)
    log_every: int = 0  # print the training loss every so many epochs (stderr)

    @classmethod
    def make(cls, a: argparse.Namespace) -> Settings:
        s = cls(epochs=40, particles=50, is_samples=200, opt_steps=100) if a.quick else cls()
        for key in ("epochs", "batch", "lr", "steps", "particles", "is_samples", "opt_steps"):
            if getattr(a, key) is not None:
                setattr(s, key, getattr(a, key))
        s.log_every = a.log_every
        if a.hidden is not None:
            s.hidden = None if a.hidden == "default" else (int(a.hidden),) * 2
        return s

    def width(self) -> int:
        return (self.hidden or (256,))[0]


@dataclass
class Result:
    """One trained row, evaluated on the test split (nats per image)."""

    model: str
    row: str
    host: str
    steps: int = 0
    loss: str = ""
    elbo: float = math.nan
    log_lik: float = math.nan
    elbo_2t: float = math.nan
    opt_elbo: float = math.nan
    gap: float = math.nan
    gap_2t: float = math.nan
    by_iteration: list[float] = field(default_factory=list)
    params: int = 0
    train_s: float = math.nan
    ms_step: float = math.nan
    final_loss: float = math.nan
    notes: list[str] = field(default_factory=list)


def load_data() -> tuple[np.ndarray, np.ndarray]:
    """Binarized digits ``(1500, 64)``, ``(297, 64)`` float32, one fixed split."""
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16.0 > 0.5).astype(np.float32)
    order = np.random.default_rng(DATA_SEED).permutation(len(x))
    return x[order[:N_TRAIN]], x[order[N_TRAIN : N_TRAIN + N_TEST]]


def _linear(rng: np.random.Generator, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's ``nn.Linear`` default initialization: ``U(-1/sqrt(n_in), 1/sqrt(n_in))``;
    the weight ``(n_in, n_out)``."""
    bound = 1.0 / math.sqrt(n_in)
    w = rng.uniform(-bound, bound, (n_in, n_out)).astype(np.float32)
    return w, rng.uniform(-bound, bound, n_out).astype(np.float32)


def init_weights(seed: int = SEED) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Initial ``(weight (in, out), bias)`` per layer of every model network."""
    rng = np.random.default_rng(seed)
    return {
        "decoder": [
            _linear(rng, *d) for d in ((LATENT, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, PIXELS))
        ],
        "prior_net": [_linear(rng, LATENT2, HIDDEN), _linear(rng, HIDDEN, 2 * LATENT)],
    }


def mlp_weights(model: str, width: int, seed: int = SEED + 1) -> list:
    """Initial layers of the ``mlp`` row's encoder 64 -> width -> width -> 2 x latents."""
    rng = np.random.default_rng(seed)
    out = 2 * sum(WIDTHS[n] for n in MODELS[model])
    return [_linear(rng, *d) for d in ((PIXELS, width), (width, width), (width, out))]


def _split(h, model: str) -> dict:
    """An ``mlp`` encoder output ``(..., 2 x latents)`` as ``{site: (loc, raw scale)}``."""
    out, offset = {}, 0
    for n in MODELS[model]:
        w = WIDTHS[n]
        out[n] = (h[..., offset : offset + w], h[..., offset + w : offset + 2 * w])
        offset += 2 * w
    return out


def plan_params(plan, free: int, steps: int) -> int:
    """Trainable numbers of an AutoIterative guide from its plan (both hosts): masked
    weights and hidden biases of the encoders (with their direct connections) and, at
    ``steps > 0``, of the update networks; plus ``free`` free-parameter numbers."""

    def count(masks) -> int:
        if masks is None:
            return 0
        return sum(int(m.sum()) for m in masks) + sum(m.shape[0] for m in masks[:-1])

    total = free
    for g in plan.groups:
        total += count(g.encoder_masks)
        total += int(g.encoder_skip.sum()) if g.encoder_skip is not None else 0
        total += count(g.masks) if steps else 0
    if steps and any(g.elementwise for g in plan.groups):
        total += count(plan.elementwise_masks)
    return total


def _err(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:200]}"


def _version() -> str:
    """The checkout's commit, ``+dirty`` (and a hash of the diff) where ``faithful_guides/``
    has uncommitted changes."""
    import hashlib
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def run(*command: str) -> str:
        out = subprocess.run(
            ["git", *command], cwd=root, capture_output=True, text=True, check=True
        )
        return out.stdout

    try:
        head = run("rev-parse", "--short", "HEAD").strip()
        diff = run("diff", "HEAD", "--", "faithful_guides")
    except (OSError, subprocess.CalledProcessError):
        return "(no git)"
    if not diff:
        return head
    return f"{head}+dirty (diff {hashlib.sha1(diff.encode()).hexdigest()[:8]})"


def _log(res: Result, epoch: int, loss: float, s: Settings) -> None:
    if s.log_every and (epoch + 1) % s.log_every == 0:
        print(f"  {res.model} {res.host} {res.row} epoch {epoch + 1}: {loss:.3f}", file=sys.stderr)


def _log_mean_exp(lw: np.ndarray) -> np.ndarray:
    m = lw.max(0)
    return m + np.log(np.exp(lw - m).mean(0))


def _evaluate(res: Result, log_weights: Callable, set_steps: Callable, optimize: Callable, s):
    """Fill the test columns of ``res``: ``log_weights(num) -> (num, N)`` numpy array at the
    guide's current ``num_steps``, ``set_steps(t)``, ``optimize() -> (before, after)``."""
    iters = range(2 * res.steps + 1) if res.row != "mlp" else range(1)
    for t in iters:
        set_steps(t)
        res.by_iteration.append(float(log_weights(s.particles).mean()))
    set_steps(res.steps)
    res.elbo = res.by_iteration[res.steps]
    res.elbo_2t = res.by_iteration[-1] if res.row != "mlp" else res.elbo
    res.log_lik = float(_log_mean_exp(log_weights(s.is_samples)).mean())
    before, after = optimize()
    res.opt_elbo, res.gap, res.gap_2t = after, after - before, after - res.elbo_2t


# --------------------------------------------------------------------------------------
# Pyro host
# --------------------------------------------------------------------------------------


def _torch_mlp(layers, last_activation: bool = False):
    import torch
    from torch import nn

    mods = []
    for i, (w, b) in enumerate(layers):
        lin = nn.Linear(*w.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(w.T))
            lin.bias.copy_(torch.as_tensor(b))
        mods.append(lin)
        if i + 1 < len(layers) or last_activation:
            mods.append(nn.Softplus())
    return nn.Sequential(*mods)


def pyro_model(name: str) -> Callable:
    """A fresh ``vae`` or ``hvae`` Pyro model; ``model(x, batch_size=None)``, ``x`` of shape
    ``(N, 64)``."""
    import pyro
    import pyro.distributions as dist
    from torch.nn.functional import softplus

    w = init_weights()
    decoder, prior_net = _torch_mlp(w["decoder"]), _torch_mlp(w["prior_net"])

    def vae(x, batch_size=None):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x[idx])

    def hvae(x, batch_size=None):
        pyro.module("prior_net", prior_net)
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(LATENT2), 1.0).to_event(1))
            h = prior_net(z2)
            scale = softplus(h[..., LATENT:]) + 1e-3
            z1 = pyro.sample("z1", dist.Normal(h[..., :LATENT], scale).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z1)).to_event(1), obs=x[idx])

    return {"vae": vae, "hvae": hvae}[name]


def pyro_mlp_guide(model: str, width: int) -> Callable:
    """The ``mlp`` row: a dense encoder, mean-field Normal over every latent of an image."""
    import pyro
    import pyro.distributions as dist
    from torch.nn.functional import softplus

    encoder = _torch_mlp(mlp_weights(model, width))

    def guide(x, batch_size=None):
        pyro.module("mlp_encoder", encoder)
        with pyro.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            for n, (loc, raw) in _split(encoder(x[idx]), model).items():
                pyro.sample(n, dist.Normal(loc, softplus(raw) + 1e-3).to_event(1))

    guide.num_steps = 0
    guide.params = sum(w.size + b.size for w, b in mlp_weights(model, width))
    return guide


def _site_log_probs(trace) -> dict:
    """Per-image log-probabilities ``(K, N)`` of a trace's sample sites (no subsample
    sites, no scalar factors)."""
    from pyro.poutine.util import site_is_subsample

    trace.compute_log_prob()
    return {
        n: s["log_prob"]
        for n, s in trace.nodes.items()
        if s["type"] == "sample" and not site_is_subsample(s) and s["log_prob"].dim() == 2
    }


def pyro_log_weights(model, guide, x, num: int, chunk: int = 250) -> np.ndarray:
    """``log p(x, z_k) - log q(z_k | x)``, shape ``(num, N)``, ``num`` guide draws per image
    (in chunks: each chunk is one guide call, i.e. one ``lambda``)."""
    import pyro
    import torch
    from pyro import poutine

    out = []
    with torch.no_grad():
        for start in range(0, num, chunk):
            k = min(chunk, num - start)
            with pyro.plate("particles", k, dim=-2):
                gtr = poutine.trace(guide).get_trace(x)
                mtr = poutine.trace(poutine.replay(model, trace=gtr)).get_trace(x)
            lp, lq = _site_log_probs(mtr), _site_log_probs(gtr)
            out.append((sum(lp.values()) - sum(lq[n] for n in lq if n in lp)).numpy())
    return np.concatenate(out, 0)


def _torch_base_normal(fn):
    """``(loc, scale, transforms)`` of a guide site's distribution: a Normal (possibly
    Independent, possibly transformed) in unconstrained space."""
    import torch.distributions as tdist

    transforms = list(fn.transforms) if isinstance(fn, tdist.TransformedDistribution) else []
    base = fn.base_dist if transforms else fn
    while isinstance(base, tdist.Independent):
        base = base.base_dist
    if not isinstance(base, tdist.Normal):
        raise TypeError(f"expected a Normal base, got {type(base).__name__}")
    return base.loc, base.scale, transforms


def pyro_optimize(model, guide, x, latents, s: Settings) -> tuple[float, float]:
    """Per-example refinement of the guide's final ``lambda``: ``(ELBO of the start, ELBO
    after s.opt_steps Adam steps)``, mean per image, ``s.particles`` draws each."""
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro import poutine

    with torch.no_grad():
        gtr = poutine.trace(guide).get_trace(x)
    start = {}
    for n in latents:
        loc, scale, transforms = _torch_base_normal(gtr.nodes[n]["fn"])
        start[n] = (loc.detach().clone(), scale.detach().log().clone(), transforms)
    locs = {n: v[0].requires_grad_() for n, v in start.items()}
    log_scales = {n: v[1].requires_grad_() for n, v in start.items()}
    leaves = [*locs.values(), *log_scales.values()]

    def elbo(num: int) -> torch.Tensor:
        """Per-image ELBO estimate ``(N,)`` with ``num`` draws."""
        values, log_q = {}, 0.0
        for n in latents:
            base = dist.Normal(locs[n], log_scales[n].exp()).to_event(1)
            q = dist.TransformedDistribution(base, start[n][2]) if start[n][2] else base
            values[n] = q.rsample((num,))
            log_q = log_q + q.log_prob(values[n])
        with pyro.plate("particles", num, dim=-2), poutine.block():
            tr = poutine.trace(poutine.condition(model, data=values)).get_trace(x)
        return (sum(_site_log_probs(tr).values()) - log_q).mean(0)

    with torch.no_grad():
        before = float(elbo(s.particles).mean())
    opt = torch.optim.Adam(leaves, lr=OPT_LR)
    for _ in range(s.opt_steps):
        loss = -elbo(OPT_PARTICLES).sum()
        grads = torch.autograd.grad(loss, leaves)  # the model's parameters stay as trained
        for p, g in zip(leaves, grads, strict=True):
            p.grad = g
        opt.step()
    with torch.no_grad():
        after = float(elbo(s.particles).mean())
    return before, after


def run_pyro(model_name: str, row: str, data: tuple[np.ndarray, np.ndarray], s: Settings):
    """Train one row on the Pyro host and evaluate it on the test split."""
    import pyro
    import torch
    from pyro.infer import SVI, Trace_ELBO

    from faithful_guides.pyro import AutoIterative, IterativeELBO

    torch.set_num_threads(1)
    spec = ROWS[row]
    steps = s.steps if spec.inputs else 0
    known = {"IterativeELBO": IterativeELBO, "Trace_ELBO": Trace_ELBO}
    x_train, x_test = (torch.as_tensor(a) for a in data)
    res = Result(model_name, row, "pyro", steps=steps)

    def fresh():
        pyro.clear_param_store()
        pyro.set_rng_seed(SEED)
        model = pyro_model(model_name)
        if spec.kind == "mlp":
            return model, pyro_mlp_guide(model_name, s.width())
        kw = {"inputs": spec.inputs} if spec.inputs else {}
        return model, AutoIterative(
            model, num_steps=steps, init="encoder", hidden_dims=s.hidden, **kw
        )

    t_train = time.perf_counter()
    for i, name in enumerate(spec.losses):
        model, guide = fresh()
        svi = SVI(model, guide, pyro.optim.Adam({"lr": s.lr}), known[name]())
        try:
            first = svi.step(x_train, batch_size=s.batch)  # set-up and the first step
        except Exception as e:  # a broken loss: the next one, and say so
            if i + 1 == len(spec.losses):
                raise
            res.notes.append(f"{name} raised {_err(e)}; trained with {spec.losses[i + 1]}")
            t_train = time.perf_counter()
            continue
        res.loss = name
        break
    per_epoch = math.ceil(len(x_train) / s.batch)
    times, total = [], first
    for epoch in range(s.epochs):
        total = first if epoch == 0 else 0.0
        for _ in range(per_epoch - (epoch == 0)):
            t = time.perf_counter()
            total += svi.step(x_train, batch_size=s.batch)
            times.append(time.perf_counter() - t)
        _log(res, epoch, total / (per_epoch * len(x_train)), s)
    res.train_s = time.perf_counter() - t_train
    res.ms_step = 1e3 * statistics.median(times) if times else math.nan
    res.final_loss = total / (per_epoch * len(x_train))
    if spec.kind == "mlp":
        res.params = guide.params
    else:
        free = sum(p.numel() for p in (*guide.locs.parameters(), *guide.log_scales.parameters()))
        res.params = plan_params(guide.plan, free, steps)

    def set_steps(t: int) -> None:
        guide.num_steps = t

    latents = MODELS[model_name]
    pyro.set_rng_seed(SEED + 1)
    _evaluate(
        res,
        lambda num: pyro_log_weights(model, guide, x_test, num),
        set_steps,
        lambda: pyro_optimize(model, guide, x_test, latents, s),
        s,
    )
    return res


# --------------------------------------------------------------------------------------
# NumPyro host
# --------------------------------------------------------------------------------------


def _jax_mlp(h, layers):
    import jax

    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i + 1 < len(layers):
            h = jax.nn.softplus(h)
    return h


def _np_params(prefix: str, layers) -> list:
    import jax.numpy as jnp
    import numpyro

    return [
        (
            numpyro.param(f"{prefix}_w{i}", jnp.asarray(w)),
            numpyro.param(f"{prefix}_b{i}", jnp.asarray(b)),
        )
        for i, (w, b) in enumerate(layers)
    ]


def numpyro_model(name: str) -> Callable:
    """The NumPyro twin of :func:`pyro_model` (same densities, site names, initial weights)."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    w = init_weights()

    def vae(x, batch_size=None):
        decoder = _np_params("decoder", w["decoder"])
        with numpyro.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            z = numpyro.sample("z", dist.Normal(jnp.zeros(LATENT), 1.0).to_event(1))
            logits = _jax_mlp(z, decoder)
            numpyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x[idx])

    def hvae(x, batch_size=None):
        prior_net = _np_params("prior_net", w["prior_net"])
        decoder = _np_params("decoder", w["decoder"])
        with numpyro.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            z2 = numpyro.sample("z2", dist.Normal(jnp.zeros(LATENT2), 1.0).to_event(1))
            h = _jax_mlp(z2, prior_net)
            scale = jax.nn.softplus(h[..., LATENT:]) + 1e-3
            z1 = numpyro.sample("z1", dist.Normal(h[..., :LATENT], scale).to_event(1))
            logits = _jax_mlp(z1, decoder)
            numpyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x[idx])

    return {"vae": vae, "hvae": hvae}[name]


def numpyro_mlp_guide(model: str, width: int) -> Callable:
    """The NumPyro twin of :func:`pyro_mlp_guide`."""
    import jax
    import numpyro
    import numpyro.distributions as dist

    layers = mlp_weights(model, width)

    def guide(x, batch_size=None):
        encoder = _np_params("mlp_encoder", layers)
        with numpyro.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            for n, (loc, raw) in _split(_jax_mlp(x[idx], encoder), model).items():
                numpyro.sample(n, dist.Normal(loc, jax.nn.softplus(raw) + 1e-3).to_event(1))

    guide.num_steps = 0
    guide.params = sum(w.size + b.size for w, b in layers)
    return guide


def _np_log_probs(trace, keep: Callable[[str], bool]) -> dict:
    """Per-image log-probabilities of a NumPyro trace's sample sites (no factors)."""
    out = {}
    for n, site in trace.items():
        if site["type"] != "sample" or not keep(n):
            continue
        out[n] = site["fn"].log_prob(site["value"])
    return out


def _np_base_normal(fn):
    """``(loc, scale, transforms)`` of a NumPyro guide site's distribution."""
    import numpyro.distributions as dist

    transforms = []
    while True:
        if isinstance(fn, dist.TransformedDistribution):
            transforms = list(fn.transforms) + transforms
            fn = fn.base_dist
        elif isinstance(fn, dist.Independent | dist.ExpandedDistribution):
            fn = fn.base_dist
        else:
            break
    if not isinstance(fn, dist.Normal):
        raise TypeError(f"expected a Normal base, got {type(fn).__name__}")
    return fn.loc, fn.scale, transforms


def run_numpyro(model_name: str, row: str, data: tuple[np.ndarray, np.ndarray], s: Settings):
    """Train one row on the NumPyro host and evaluate it on the test split."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro import handlers
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.optim import Adam

    from faithful_guides.numpyro import AutoIterative, IterativeELBO

    spec = ROWS[row]
    steps = s.steps if spec.inputs else 0
    known = {"IterativeELBO": IterativeELBO, "Trace_ELBO": Trace_ELBO}
    x_train, x_test = (jnp.asarray(a) for a in data)
    latents = MODELS[model_name]
    res = Result(model_name, row, "numpyro", steps=steps)
    model = numpyro_model(model_name)

    def fresh():
        if spec.kind == "mlp":
            return numpyro_mlp_guide(model_name, s.width())
        kw = {"inputs": spec.inputs} if spec.inputs else {}
        return AutoIterative(model, num_steps=steps, init="encoder", hidden_dims=s.hidden, **kw)

    t_train = time.perf_counter()
    for i, name in enumerate(spec.losses):
        guide = fresh()
        svi = SVI(model, guide, Adam(s.lr), known[name]())
        try:
            state = svi.init(jax.random.PRNGKey(SEED), x_train, batch_size=s.batch)
            update = jax.jit(lambda st, svi=svi: svi.update(st, x_train, batch_size=s.batch))
            state, first = update(state)  # compilation and the first step
            first = float(first)
        except Exception as e:  # a broken loss: the next one, and say so
            if i + 1 == len(spec.losses):
                raise
            res.notes.append(f"{name} raised {_err(e)}; trained with {spec.losses[i + 1]}")
            t_train = time.perf_counter()
            continue
        res.loss = name
        break
    per_epoch = math.ceil(len(data[0]) / s.batch)
    times, total = [], first
    for epoch in range(s.epochs):
        total = first if epoch == 0 else 0.0
        for _ in range(per_epoch - (epoch == 0)):
            t = time.perf_counter()
            state, loss = update(state)
            total += float(loss)  # blocks: the step's own time
            times.append(time.perf_counter() - t)
        _log(res, epoch, total / (per_epoch * len(data[0])), s)
    res.train_s = time.perf_counter() - t_train
    res.ms_step = 1e3 * statistics.median(times) if times else math.nan
    res.final_loss = total / (per_epoch * len(data[0]))
    params = svi.get_params(state)
    if spec.kind == "mlp":
        res.params = guide.params
    else:
        free = sum(
            int(np.size(params[f"{guide.prefix}_{n}_{k}"]))
            for n in latents
            for k in ("loc", "log_scale")
        )
        res.params = plan_params(guide.plan, free, steps)
    guide_p = handlers.substitute(guide, data=params)
    model_p = handlers.substitute(model, data=params)

    def one(key):
        """Log weights ``(N,)`` of one guide call and one draw."""
        k1, k2 = jax.random.split(key)
        gtr = handlers.trace(handlers.seed(guide_p, k1)).get_trace(x_test)
        replayed = handlers.replay(handlers.seed(model_p, k2), trace=gtr)
        mtr = handlers.trace(replayed).get_trace(x_test)
        lp = _np_log_probs(mtr, lambda n: True)
        lq = _np_log_probs(gtr, lambda n: n in lp)
        return sum(lp.values()) - sum(lq.values())

    counter = iter(range(10**9))
    compiled: dict[int, Callable] = {}  # one trace per num_steps (read when tracing)

    def log_weights(num: int, chunk: int = 100) -> np.ndarray:
        fn = compiled.setdefault(guide.num_steps, jax.jit(jax.vmap(one)))
        out = []
        for start in range(0, num, chunk):
            k = min(chunk, num - start)
            keys = jax.random.split(jax.random.PRNGKey(1000 + next(counter)), k)
            out.append(np.asarray(fn(keys)))
        return np.concatenate(out, 0)

    def set_steps(t: int) -> None:
        guide.num_steps = t

    def optimize() -> tuple[float, float]:
        gtr = handlers.trace(handlers.seed(guide_p, jax.random.PRNGKey(7))).get_trace(x_test)
        bases = {n: _np_base_normal(gtr[n]["fn"]) for n in latents}
        lam = {n: (jnp.asarray(b[0]), jnp.log(jnp.asarray(b[1]))) for n, b in bases.items()}

        def elbo(lam, key, num):
            values, log_q = {}, 0.0
            for n, k in zip(latents, jax.random.split(key, len(latents)), strict=True):
                loc, log_scale = lam[n]
                base = dist.Normal(loc, jnp.exp(log_scale)).to_event(1)
                q = dist.TransformedDistribution(base, bases[n][2]) if bases[n][2] else base
                values[n] = q.rsample(k, (num,))
                log_q = log_q + q.log_prob(values[n])
            seeded = handlers.seed(handlers.condition(model_p, data=values), key)
            with numpyro.plate("particles", num, dim=-2):
                tr = handlers.trace(seeded).get_trace(x_test)
            return (sum(_np_log_probs(tr, lambda n: True).values()) - log_q).mean(0)

        opt = Adam(OPT_LR)

        @jax.jit
        def step(i, st):
            key = jax.random.PRNGKey(i)
            g = jax.grad(lambda p: -elbo(p, key, OPT_PARTICLES).sum())(opt.get_params(st))
            return opt.update(g, st)

        score = jax.jit(lambda p, key: elbo(p, key, s.particles).mean())
        before = float(score(lam, jax.random.PRNGKey(8)))
        st = opt.init(lam)
        for i in range(s.opt_steps):
            st = step(i, st)
        return before, float(score(opt.get_params(st), jax.random.PRNGKey(9)))

    _evaluate(res, log_weights, set_steps, optimize, s)
    return res


HOSTS: dict[str, Callable] = {"pyro": run_pyro, "numpyro": run_numpyro}
"""Host name -> ``run(model_name, row, data, settings) -> Result``."""


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------

COLUMNS = (
    "model",
    "host",
    "row",
    "T",
    "loss",
    "ELBO",
    "log p(x)",
    "ELBO@2T",
    "opt ELBO",
    "gap",
    "gap@2T",
    "params",
    "train s",
    "ms/step",
    "train loss",
    "notes",
)


def _f(v: float, fmt: str = "{:.2f}") -> str:
    return "n/a" if v is None or not math.isfinite(v) else fmt.format(v)


def format_row(r: Result) -> str:
    cells = [
        r.model,
        r.host,
        r.row,
        str(r.steps),
        r.loss,
        _f(r.elbo),
        _f(r.log_lik),
        _f(r.elbo_2t),
        _f(r.opt_elbo),
        _f(r.gap),
        _f(r.gap_2t),
        str(r.params),
        _f(r.train_s, "{:.0f}"),
        _f(r.ms_step, "{:.1f}"),
        _f(r.final_loss),
        "; ".join(r.notes).replace("|", "/"),
    ]
    return "| " + " | ".join(cells) + " |"


def iteration_table(results: list[Result]) -> None:
    width = max((len(r.by_iteration) for r in results), default=0)
    if not width:
        return
    print("\ntest ELBO (nats per image) at iteration t (guide.num_steps = t; * trained T)\n")
    print("| model | host | row | " + " | ".join(f"t={t}" for t in range(width)) + " |")
    print("|" + "---|" * (width + 3))
    for r in results:
        cells = [_f(v) + ("*" if t == r.steps else "") for t, v in enumerate(r.by_iteration)]
        cells += [""] * (width - len(cells))
        print(f"| {r.model} | {r.host} | {r.row} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> list[Result]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="40 epochs, K=200 (about 2 minutes)")
    p.add_argument("--host", choices=["pyro", "numpyro", "both"], default="pyro")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: vae,hvae")
    p.add_argument(
        "--rows", default=",".join(DEFAULT_ROWS), help="comma-separated: " + ",".join(ROWS)
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs (300; quick 40)")
    p.add_argument("--batch", type=int, default=None, help="minibatch size B (100)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (3e-3)")
    p.add_argument("--steps", type=int, default=None, help="T of the iterative rows (5)")
    p.add_argument("--particles", type=int, default=None, help="ELBO draws per image")
    p.add_argument("--is-samples", type=int, default=None, help="K of log p(x)")
    p.add_argument("--opt-steps", type=int, default=None, help="per-example Adam steps")
    p.add_argument("--hidden", default=None, help="width H of hidden_dims=(H, H), or 'default'")
    p.add_argument("--log-every", type=int, default=0, help="print the loss every N epochs")
    a = p.parse_args(argv)
    s = Settings.make(a)
    models = [m for m in a.models.split(",") if m]
    rows = [r for r in a.rows.split(",") if r]
    if bad := [m for m in models if m not in MODELS] + [r for r in rows if r not in ROWS]:
        raise SystemExit(f"unknown models or rows: {bad}")
    hosts = ["pyro", "numpyro"] if a.host == "both" else [a.host]
    print(f"faithful_guides {_version()}")
    print(
        f"epochs {s.epochs}, batch {s.batch}, Adam lr {s.lr}, T {s.steps}, "
        f"hidden {s.hidden or 'default'}, ELBO draws {s.particles}, K {s.is_samples}, "
        f"per-example Adam {s.opt_steps} x {OPT_PARTICLES} draws lr {OPT_LR}\n"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    data = load_data()
    results = []
    t0 = time.perf_counter()
    for model in models:
        for host in hosts:
            for row in rows:
                try:
                    r = HOSTS[host](model, row, data, s)
                except Exception as e:  # a failing row is reported, not fatal
                    traceback.print_exc()
                    r = Result(model, row, host, notes=[_err(e)])
                results.append(r)
                print(format_row(r), flush=True)
    iteration_table(results)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return results


if __name__ == "__main__":
    main()
