"""Per-host adapters of the guide tests: one interface, Pyro or NumPyro behind it, for any family.

Each adapter wraps the host's own idioms (``svi.step`` or a jitted ``svi.update``,
``guide.median(*args)`` or ``guide.median(params, *args)``, ``torch.save`` or ``pickle``, ...)
so that a test is written once and parametrized over the host. Results come back as numpy
arrays. A :class:`Fit` is a set-up or trained guide; ``params`` holds NumPyro's parameter dict
(Pyro keeps them in the guide and the param store).

Example:
    >>> h = guide_host("numpyro", "made")
    >>> model, args, kwargs = h.spec("state_space")
    >>> args[0].shape
    (8,)
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from families import family_class

from faithful_guides.zoo import ZOO, get_host, hmm_chain

__all__ = ["Fit", "GuideHost", "NumPyroHost", "PyroHost", "guide_host"]

Draws = dict[str, np.ndarray]


@dataclass
class Fit:
    """A set-up or trained guide: its model, the call's arguments, the training losses and
    (NumPyro) the parameters."""

    model: Callable[..., Any]
    guide: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    losses: np.ndarray
    params: Any = None
    first_step: Draws | None = None  # NumPyro: each parameter's change in the first step


def _numpy(values: dict[str, Any]) -> Draws:
    """Numpy copies (never views of a tensor that training may update in place)."""
    return {
        k: v.detach().numpy().copy() if hasattr(v, "detach") else np.array(v)
        for k, v in values.items()
    }


Model = Callable[..., Any]
Args = tuple[Any, ...]


class GuideHost:
    """The operations the guide tests need; :class:`PyroHost` and :class:`NumPyroHost`
    implement the same methods with the same meaning:

    ``guide(model, **options)``, ``setup(model, guide, args)`` (returns NumPyro's params),
    ``untrained(model, args)`` (a set-up guide as a :class:`Fit`), ``param_shapes(fit)`` (the
    guide's own parameters), ``init_grads(fit)`` (nonzero where the gradient at initialization
    is), ``elbo(kind)`` (``"trace"``, ``"tracegraph"``, ``"renyi"``, ``"vectorized"``,
    ``"meanfield"``; Pyro also ``"jit"``), ``train(...)`` and ``train_stream(...)`` (a
    :class:`Fit`),
    ``sample(fit, args, seed)`` (one draw), ``draws(fit, args, num)`` (``(num, *shape)``),
    ``predictive``, ``median``, ``quantiles``, ``save_load`` (a new guide, reloaded),
    ``loss(fit, elbo, seed)``, ``site_fns`` and ``kl_divergence`` (the guide's and the model's
    distribution of a site), ``net_jacobian`` (the global MADE's), ``random_net`` (a group's
    MADE at random weights) with ``made_forward`` (one full pass) and ``made_steps`` (the
    generation-by-generation evaluation the guide samples with), and ``guide_list``.
    """

    name: str

    def __init__(self, family: str) -> None:
        self.host = get_host(self.name)  # type: ignore[arg-type]
        self.family = family

    def __repr__(self) -> str:
        return f"{self.name}-{self.family}"

    def group_index(self, fit: Fit, kind: str) -> int:
        """The position of the guide's group of global latents (``"global"``) or of the
        first group in a plate (``"local"``)."""
        groups = fit.guide.plan.groups
        return next(i for i, g in enumerate(groups) if any(g.group.in_plate) == (kind == "local"))

    def behind_zero_output(self, fit: Fit, param: str) -> bool:
        """Whether ``param`` is a hidden-layer parameter of a network whose output layer
        starts at zero (so its gradient at initialization is zero by design)."""
        if self.name == "pyro":
            return ".hidden." in f".{param}" or param.startswith("embeds.")
        # NumPyro: each network is one flat parameter, its output layer included
        return "_summary[" in param

    def spec(self, name: str) -> tuple[Model, Args, dict[str, Any]]:
        """A zoo model (``state_space`` shortened to 8 steps)."""
        return hmm_chain(self.host, 8) if name == "state_space" else ZOO[name](self.host)

    def tensor(self, x: Any) -> Any:
        """A float32 host array."""
        return self.host.tensor(x)

    def reset(self) -> None:
        """Fresh global state before each test (Pyro: param store and seed)."""

    def elbo(self, kind: str, **options: Any) -> Any:
        """The host's ELBO of that ``kind``, from its own ``infer`` module (same names)."""
        i = self.infer  # type: ignore[attr-defined]
        return {
            "trace": lambda: i.Trace_ELBO(**options),
            "tracegraph": lambda: i.TraceGraph_ELBO(**options),
            "renyi": lambda: i.RenyiELBO(alpha=0.5, num_particles=2),
            "vectorized": lambda: i.Trace_ELBO(num_particles=4, vectorize_particles=True),
            "meanfield": lambda: i.TraceMeanField_ELBO(**options),
        }[kind]()

    def guide(self, model: Model, **options: Any) -> Any:
        """A new ``AutoFaithfulMADE(model, **options)``."""
        raise NotImplementedError

    def setup(self, model: Model, guide: Any, args: Args, kwargs: dict | None = None) -> Any:
        """Set the guide up (first call / ``svi.init``); NumPyro: return the initial params."""
        raise NotImplementedError

    def untrained(
        self, model: Model, args: Args, kwargs: dict | None = None, **options: Any
    ) -> Fit:
        """A new guide of ``model``, set up with ``args`` (NumPyro: initial ``params``)."""
        guide = self.guide(model, **options)
        params = self.setup(model, guide, args, kwargs)
        return Fit(model, guide, args, kwargs or {}, np.zeros(0), params)


class PyroHost(GuideHost):
    """Pyro: ``SVI.step`` loops, parameters in the guide and the param store."""

    name = "pyro"

    def __init__(self, family: str) -> None:
        super().__init__(family)
        import pyro
        import torch
        from pyro import infer as pinfer
        from pyro import poutine
        from pyro.infer import autoguide
        from pyro.optim import Adam

        import faithful_guides.pyro as public

        torch.set_num_threads(1)
        self.pyro, self.torch, self.poutine, self.infer = pyro, torch, poutine, pinfer
        self.autoguide, self.Adam = autoguide, Adam
        self.cls = family_class(public, family)

    def reset(self) -> None:
        self.pyro.clear_param_store()
        self.pyro.set_rng_seed(0)

    def guide(self, model: Model, **options: Any) -> Any:
        return self.cls(model, **options)

    def setup(self, model: Model, guide: Any, args: Args, kwargs: dict | None = None) -> Any:
        guide(*args, **(kwargs or {}))

    def param_shapes(self, fit: Fit) -> dict[str, tuple[int, ...]]:
        return {n: tuple(p.shape) for n, p in fit.guide.named_parameters()}

    def init_grads(self, fit: Fit) -> Draws:
        """Gradients of a one-particle Trace_ELBO at initialization (a new guide)."""
        model, args, kwargs = fit.model, fit.args, fit.kwargs
        guide = self.cls(model)
        self.infer.Trace_ELBO().loss_and_grads(model, guide, *args, **kwargs)
        return {  # no gradient: zeros
            n: np.zeros(p.shape) if p.grad is None else p.grad.numpy()
            for n, p in guide.named_parameters()
        }

    def elbo(self, kind: str, **options: Any) -> Any:
        if kind == "jit":
            return self.infer.JitTrace_ELBO(**options)
        return super().elbo(kind, **options)

    def train(
        self,
        model: Model,
        guide: Any,
        args: Args,
        kwargs: dict,
        steps: int,
        elbo: Any = None,
        lr: float = 1e-2,
    ) -> Fit:
        self.pyro.clear_param_store()  # else another guide's same-named params get the steps
        svi = self.infer.SVI(model, guide, self.Adam({"lr": lr}), elbo or self.elbo("trace"))
        losses = [svi.step(*args, **kwargs) for _ in range(steps)]
        return Fit(model, guide, args, kwargs, np.asarray(losses))

    def train_stream(self, model: Model, guide: Any, batches: Iterable[Args], lr: float) -> Fit:
        self.pyro.clear_param_store()
        svi = self.infer.SVI(model, guide, self.Adam({"lr": lr}), self.elbo("trace"))
        losses, args = [], ()
        for args in batches:
            losses.append(svi.step(*args))
        return Fit(model, guide, args, {}, np.asarray(losses))

    def sample(self, fit: Fit, args: Args, seed: int, observations: dict | None = None) -> Draws:
        self.pyro.set_rng_seed(seed)
        extra = {} if observations is None else {"observations": observations}
        with self.torch.no_grad(), self.poutine.block():
            return _numpy(fit.guide(*args, **extra))

    def draws(
        self, fit: Fit, args: Args, num: int, seed: int = 0, observations: dict | None = None
    ) -> Draws:
        one = self.sample(fit, args, seed, observations)
        nesting = max((-p.dim for s in fit.guide.graph.sites.values() for p in s.plates), default=0)
        plate = self.pyro.plate("_draws", num, dim=-(nesting + 1))
        extra = {} if observations is None else {"observations": observations}
        with self.torch.no_grad(), self.poutine.block(), plate:
            values = fit.guide(*args, **extra)
        out = {}
        for n, v in values.items():
            shape = one[n].shape
            v = v.expand(num, *v.shape[1:]) if v.shape[0] == 1 else v
            out[n] = v.reshape(num, *shape).numpy()
        return out

    def predictive(self, fit: Fit, num: int, return_sites: list[str] | None = None) -> Draws:
        pred = self.infer.Predictive(
            fit.model, guide=fit.guide, num_samples=num, return_sites=return_sites
        )
        return _numpy(pred(*fit.args, **fit.kwargs))

    def median(self, fit: Fit, args: Args | None = None, **extra: Any) -> Draws:
        args = fit.args if args is None else args
        return _numpy(fit.guide.median(*args, **fit.kwargs, **extra))

    def quantiles(self, fit: Fit, qs: Sequence[float], num: int, **extra: Any) -> Draws:
        self.pyro.set_rng_seed(0)
        return _numpy(fit.guide.quantiles(qs, *fit.args, num_samples=num, **fit.kwargs, **extra))

    def save_load(self, fit: Fit, into: Fit | None = None) -> Fit:
        """``state_dict`` through ``torch.save`` into the guide of ``into`` (default: a new
        guide of the fit's model); model parameters stay in the param store."""
        into = into or self.untrained(fit.model, fit.args, fit.kwargs)
        buf = io.BytesIO()
        self.torch.save(fit.guide.state_dict(), buf)
        buf.seek(0)
        into.guide.load_state_dict(self.torch.load(buf))
        return Fit(into.model, into.guide, into.args, into.kwargs, fit.losses)

    def model_params(self, model: Model, args: Args, params: Any = None) -> Draws:
        """The model's own parameters (``pyro.param`` sites), as the param store holds them."""
        tr = self.poutine.trace(model).get_trace(*args)
        return _numpy({n: s["value"] for n, s in tr.nodes.items() if s["type"] == "param"})

    def loss(self, fit: Fit, elbo: Any, seed: int) -> float:
        self.pyro.set_rng_seed(seed)
        return float(elbo.loss(fit.model, fit.guide, *fit.args, **fit.kwargs))

    def site_fns(self, fit: Fit, site: str) -> tuple[Any, Any]:
        tr = self.poutine.trace(fit.guide).get_trace(*fit.args)
        mtr = self.poutine.trace(self.poutine.replay(fit.model, tr)).get_trace(*fit.args)
        return tr.nodes[site]["fn"], mtr.nodes[site]["fn"]

    def kl_divergence(self, p: Any, q: Any) -> Any:
        return self.torch.distributions.kl_divergence(p, q)

    def random_net(self, fit: Fit, group: int, seed: int) -> Any:
        """The guide's MADE of group ``group`` with weights drawn N(0, 1)."""
        self.torch.manual_seed(seed)
        net = fit.guide.nets[group]
        for p in net.parameters():
            self.torch.nn.init.normal_(p)
        return net

    def made_forward(self, net: Any, group: Any, x: np.ndarray) -> np.ndarray:
        """``concat(loc, scale)`` of one full pass on inputs ``x`` shaped ``(..., in)``."""
        with self.torch.no_grad():
            return self.torch.cat(net(self.tensor(x)), -1).numpy()

    def made_steps(
        self, net: Any, group: Any, known: np.ndarray | None, feeds: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """``concat(loc, scale)`` of each generation, run generation by generation and fed
        ``feeds[g]`` after generation ``g``."""
        torch, out = self.torch, []
        with torch.no_grad():
            steps = net.steps(group.schedule, None if known is None else self.tensor(known))
            for u in feeds:
                out.append(torch.cat(steps.outputs(), -1).numpy())
                steps.update(self.tensor(u))
        return out

    def net_jacobian(self, guide: Any, params: Any, seed: int) -> np.ndarray:
        """Jacobian of ``concat(loc, scale)`` of the global MADE at random weights and input."""
        torch = self.torch
        fit = Fit(None, guide, (), {}, np.zeros(0), params)
        index = self.group_index(fit, "global")
        net = self.random_net(fit, index, seed)
        x = torch.randn(guide.plan.groups[index].in_size)
        jac = torch.autograd.functional.jacobian(lambda t: torch.cat(net(t)), x)
        return jac.numpy()

    def guide_list(self, model: Model, faithful_hides: list[str]) -> Any:
        guide = self.autoguide.AutoGuideList(model)
        guide.append(self.cls(self.poutine.block(model, hide=list(faithful_hides))))
        guide.append(self.autoguide.AutoNormal(self.poutine.block(model, expose=faithful_hides)))
        return guide


class NumPyroHost(GuideHost):
    """NumPyro: ``SVI.run`` (jit), explicit ``params`` dicts and ``rng_key`` s."""

    name = "numpyro"

    def __init__(self, family: str) -> None:
        super().__init__(family)
        import jax
        import numpyro
        from numpyro import handlers
        from numpyro import infer as ninfer
        from numpyro.infer import autoguide
        from numpyro.optim import Adam

        import faithful_guides.numpyro as public
        from faithful_guides.backends.numpyro.nets import MadeSteps, made_forward

        self.jax, self.numpyro, self.handlers, self.infer = jax, numpyro, handlers, ninfer
        self.autoguide, self.Adam = autoguide, Adam
        self.cls = family_class(public, family)
        self.made_forward_fn, self.MadeSteps = made_forward, MadeSteps

    def key(self, seed: int) -> Any:
        return self.jax.random.PRNGKey(seed)

    def guide(self, model: Model, **options: Any) -> Any:
        return self.cls(model, **options)

    def _init(
        self, model: Model, guide: Any, args: Args, kwargs: dict | None = None, seed: int = 0
    ) -> Any:
        svi = self.infer.SVI(model, guide, self.Adam(1e-2), self.elbo("trace"))
        return svi.get_params(svi.init(self.key(seed), *args, **(kwargs or {})))

    def setup(self, model: Model, guide: Any, args: Args, kwargs: dict | None = None) -> Any:
        return self._init(model, guide, args, kwargs)

    def param_shapes(self, fit: Fit) -> dict[str, tuple[int, ...]]:
        prefix = f"{fit.guide.prefix}_"
        return {k: tuple(v.shape) for k, v in fit.params.items() if k.startswith(prefix)}

    def init_grads(self, fit: Fit) -> Draws:
        """The fit's first Adam step, ``-lr * g / (|g| + eps)`` elementwise: nonzero exactly
        where the gradient ``g`` at initialization is, finite exactly where it is (this saves
        compiling the gradient on its own)."""
        assert fit.first_step is not None
        # the input statistics are fixed (stop_gradient): they get no step by design
        return {k: v for k, v in fit.first_step.items() if not k.endswith("_input_stats")}

    def train(
        self,
        model: Model,
        guide: Any,
        args: Args,
        kwargs: dict,
        steps: int,
        elbo: Any = None,
        lr: float = 1e-2,
    ) -> Fit:
        return self.train_stream(model, guide, [args] * steps, lr, elbo, kwargs)

    def train_stream(
        self,
        model: Model,
        guide: Any,
        batches: Iterable[Args],
        lr: float,
        elbo: Any = None,
        kwargs: dict | None = None,
    ) -> Fit:
        """A Python loop over a jitted ``svi.update`` (as cheap to compile as ``svi.run``,
        and it shows the first step)."""
        kwargs = kwargs or {}
        batches = iter(batches)
        args = next(batches)
        svi = self.infer.SVI(model, guide, self.Adam(lr), elbo or self.elbo("trace"))
        state = svi.init(self.key(0), *args, **kwargs)
        init = _numpy(svi.get_params(state))
        update = self.jax.jit(lambda s, *a: svi.update(s, *a, **kwargs))
        losses, first = [], None
        for a in [args, *batches]:
            state, loss = update(state, *a)
            losses.append(loss)
            args = a
            if first is None:
                first = {k: v - init[k] for k, v in _numpy(svi.get_params(state)).items()}
        params = svi.get_params(state)
        return Fit(model, guide, args, kwargs, np.asarray(losses), params, first)

    def sample(self, fit: Fit, args: Args, seed: int, observations: dict | None = None) -> Draws:
        h = self.handlers
        extra = {} if observations is None else {"observations": observations}
        run = h.substitute(h.seed(fit.guide, self.key(seed)), data=fit.params)
        with h.block():
            return _numpy(run(*args, **extra))

    # Batched draws run under jit: one compilation is much cheaper than op-by-op dispatch.

    def draws(
        self, fit: Fit, args: Args, num: int, seed: int = 0, observations: dict | None = None
    ) -> Draws:
        extra = {} if observations is None else {"observations": observations}

        def run(key: Any, params: Any) -> Any:
            return fit.guide.sample_posterior(key, params, *args, sample_shape=(num,), **extra)

        return _numpy(self.jax.jit(run)(self.key(seed), fit.params))

    def predictive(self, fit: Fit, num: int, return_sites: list[str] | None = None) -> Draws:
        pred = self.infer.Predictive(
            fit.model,
            guide=fit.guide,
            params=fit.params,
            num_samples=num,
            return_sites=return_sites,
        )
        return _numpy(self.jax.jit(lambda key: pred(key, *fit.args, **fit.kwargs))(self.key(0)))

    def median(self, fit: Fit, args: Args | None = None, **extra: Any) -> Draws:
        args = fit.args if args is None else args
        return _numpy(self.jax.jit(lambda p: fit.guide.median(p, *args, **extra))(fit.params))

    def quantiles(self, fit: Fit, qs: Sequence[float], num: int, **extra: Any) -> Draws:
        def run(params: Any) -> Any:
            return fit.guide.quantiles(params, qs, *fit.args, num_samples=num, **extra)

        return _numpy(self.jax.jit(run)(fit.params))

    def save_load(self, fit: Fit, into: Fit | None = None) -> Fit:
        """``pickle`` of the parameters, for the guide of ``into`` (default: a new guide of
        the fit's model)."""
        into = into or self.untrained(fit.model, fit.args, fit.kwargs)
        params = pickle.loads(pickle.dumps(self.jax.device_get(fit.params)))
        return Fit(into.model, into.guide, into.args, into.kwargs, fit.losses, params)

    def model_params(self, model: Model, args: Args, params: Any = None) -> Draws:
        """The model's own parameters (``numpyro.param`` sites): their values in ``params``,
        else their initial values."""
        h = self.handlers
        run = h.substitute(h.seed(model, self.key(0)), data=params or {})
        tr = h.trace(run).get_trace(*args)
        return _numpy({n: s["value"] for n, s in tr.items() if s["type"] == "param"})

    def loss(self, fit: Fit, elbo: Any, seed: int) -> float:
        return float(elbo.loss(self.key(seed), fit.params, fit.model, fit.guide, *fit.args))

    def site_fns(self, fit: Fit, site: str) -> tuple[Any, Any]:
        h = self.handlers
        guide = h.substitute(h.seed(fit.guide, self.key(0)), data=fit.params)
        tr = h.trace(guide).get_trace(*fit.args)
        model = h.replay(h.seed(fit.model, self.key(1)), trace=tr)
        return tr[site]["fn"], h.trace(model).get_trace(*fit.args)[site]["fn"]

    def kl_divergence(self, p: Any, q: Any) -> Any:
        return self.numpyro.distributions.kl_divergence(p, q)

    def random_net(self, fit: Fit, group: int, seed: int) -> Any:
        """The parameters of group ``group``'s MADE, perturbed by N(0, 1)."""
        net = fit.guide.net_params(fit.params, group)
        keys = self.jax.random.split(self.key(seed), len(net))
        return {
            k: v + self.jax.random.normal(kk, v.shape)
            for kk, (k, v) in zip(keys, net.items(), strict=True)
        }

    def made_forward(self, net: Any, group: Any, x: Any) -> Any:
        """``concat(loc, scale)`` of one full pass on inputs ``x`` shaped ``(..., in)``."""
        return self.jax.numpy.concatenate(self.made_forward_fn(net, group.masks, group.skip, x), -1)

    def made_steps(
        self, net: Any, group: Any, known: np.ndarray | None, feeds: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """``concat(loc, scale)`` of each generation, run generation by generation and fed
        ``feeds[g]`` after generation ``g``."""
        steps, out = self.MadeSteps(net, group.masks, group.skip, group.schedule, known), []
        for u in feeds:
            out.append(np.asarray(self.jax.numpy.concatenate(steps.outputs(), -1)))
            steps.update(self.jax.numpy.asarray(u))
        return out

    def net_jacobian(self, guide: Any, params: Any, seed: int) -> np.ndarray:
        """Jacobian of ``concat(loc, scale)`` of the global MADE at random weights and input."""
        fit = Fit(None, guide, (), {}, np.zeros(0), params)
        index = self.group_index(fit, "global")
        g = guide.plan.groups[index]
        net = self.random_net(fit, index, seed)
        x = self.jax.random.normal(self.key(seed + 1), (g.in_size,))
        f = self.jax.jit(self.jax.jacfwd(lambda t: self.made_forward(net, g, t)))
        return np.asarray(f(x))

    def guide_list(self, model: Model, faithful_hides: list[str]) -> Any:
        h = self.handlers
        guide = self.autoguide.AutoGuideList(model)
        guide.append(self.cls(h.block(model, hide=list(faithful_hides))))
        guide.append(self.autoguide.AutoNormal(h.block(model, expose=list(faithful_hides))))
        return guide


_ADAPTERS: dict[tuple[str, str], GuideHost] = {}


def guide_host(name: str, family: str = "made") -> GuideHost:
    """The (cached) adapter of host ``"pyro"`` or ``"numpyro"`` for guide family ``family``
    (a key of :data:`families.FAMILIES`)."""
    if (name, family) not in _ADAPTERS:
        cls = {"pyro": PyroHost, "numpyro": NumPyroHost}[name]
        _ADAPTERS[name, family] = cls(family)
    return _ADAPTERS[name, family]
