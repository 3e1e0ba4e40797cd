"""Trace a NumPyro model into a backend-neutral :class:`~faithful_guides.graph.ModelGraph`.

The model runs once under :func:`jax.make_jaxpr` (abstractly: no array is computed). Each
sample site's value (latent or observed) passes through an identity primitive that names the
site, and the function returns the traced parameters of every site's distribution (its
``log_prob`` for distributions defined outside NumPyro). Walking the jaxpr from the named
values to those outputs gives each site's parents: the sample sites its log-density was
computed from, through deterministic sites and arbitrary jax code. This is the idea of
``numpyro.ops.provenance.eval_provenance`` and ``numpyro.infer.inspect.get_dependencies``
in one abstract pass (latent values are not drawn: a placeholder of the right shape is
enough), under ``jax.ensure_compile_time_eval`` so that code on concrete data runs as it
would eagerly.

Example:
    >>> import numpyro, numpyro.distributions as dist
    >>> def model(x):
    ...     z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("x", dist.Normal(jnp.exp(z), 1.0), obs=x)
    >>> g = trace_model(model, 0.5)
    >>> sorted(g.dag.edges())
    [('z', 'x')]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.extend.core import Jaxpr, Literal, Primitive
from numpyro import handlers
from numpyro.distributions import Distribution
from numpyro.distributions.constraints import Constraint
from numpyro.distributions.transforms import Transform
from numpyro.primitives import Messenger

from faithful_guides.backends._common import (
    SiteRecord,
    build_model_graph,
    control_flow_error,
    discrete_latent_error,
    distribution_name,
    dynamic_structure_error,
    nan_observation_error,
    support_name,
)
from faithful_guides.graph.model_graph import ModelGraph, PlateInfo

__all__ = ["trace_model"]

_EMPTY: frozenset[str] = frozenset()

# The value of a sample site, as an abstract array of the site's shape and dtype computed
# from a traced token: provenance starts here. (Contents never matter: nothing is computed.)
_site_p = Primitive("faithful_guides_site")
_site_p.def_impl(lambda token, *, name, shape, dtype: jnp.zeros(shape, dtype))
_site_p.def_abstract_eval(lambda token, *, name, shape, dtype: jax.core.ShapedArray(shape, dtype))

_CONTROL_FLOW_ERRORS: tuple[type[BaseException], ...] = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _builtin(obj: Any, seen: set[int] | None = None) -> bool:
    """Whether a distribution and the distributions/transforms it holds are NumPyro's own
    (their pytree leaves are then exactly the state ``log_prob`` reads)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return True
    seen.add(id(obj))
    if not type(obj).__module__.startswith("numpyro."):
        return False
    for v in vars(obj).values():
        items = v if isinstance(v, (list, tuple)) else (v,)
        for item in items:
            if isinstance(item, (Distribution, Transform)) and not _builtin(item, seen):
                return False
    return True


def _constraint_or_none(c: Any) -> Any:
    """The constraint, or None when its parameters are abstract (they depend on a site)."""
    stack, seen = [c], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for v in getattr(obj, "__dict__", {}).values():
            if _is_tracer(v):
                return None
            if isinstance(v, Constraint):
                stack.append(v)
    return c


class _Tracer(Messenger):
    """Names each sample value and records the neutral site facts and provenance outputs."""

    def __init__(self, token: Any, check_nan: bool) -> None:
        super().__init__()
        self.token = token
        self.check_nan = check_nan
        self.records: list[SiteRecord] = []
        self.outputs: list[Any] = []  # traced arrays whose provenance we read
        self.owners: list[str] = []  # the site (or deterministic site) of each output
        self.deterministic: list[str] = []
        self.plate_sizes: dict[str, int] = {}
        self.last_site: str | None = None
        self._support_names: dict[int, str] = {}

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and msg["value"] is None and not msg["is_observed"]:
            # No draw: the value is replaced by an abstract one in postprocess_message.
            fn = msg["fn"]
            shape = fn.shape(msg["kwargs"].get("sample_shape", ()))
            dtype = jnp.int32 if fn.support.is_discrete else jnp.result_type(float)
            msg["value"] = jax.ShapeDtypeStruct(shape, dtype)

    def postprocess_message(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "plate":
            self.plate_sizes[msg["name"]] = int(msg["args"][0])
        elif kind == "deterministic":
            self._output(msg["name"], msg["value"])
            self.deterministic.append(msg["name"])
        elif kind == "sample":
            self._sample(msg)

    def _output(self, owner: str, x: Any) -> None:
        if _is_tracer(x):
            self.outputs.append(x)
            self.owners.append(owner)

    def _sample(self, msg: dict[str, Any]) -> None:
        name, fn, value = msg["name"], msg["fn"], msg["value"]
        observed = bool(msg["is_observed"])
        if self.check_nan and observed and not _is_tracer(value):
            arr = np.asarray(value)
            if arr.dtype.kind == "f":
                nan = np.isnan(arr)
                if nan.any():
                    raise nan_observation_error(name, int(nan.sum()), arr.size, "numpyro")
        shape, dtype = jnp.shape(value), jnp.result_type(value)
        tagged = _site_p.bind(self.token, name=name, shape=tuple(shape), dtype=dtype)
        msg["value"] = tagged
        self.last_site = name
        if _builtin(fn):
            for leaf in jax.tree.leaves(fn):
                self._output(name, leaf)
        else:
            self._output(name, fn.log_prob(tagged))
        for key in ("mask", "scale"):
            self._output(name, msg.get(key))
        support = fn.support
        plates = tuple(
            PlateInfo(
                name=f.name,
                size=self.plate_sizes.get(f.name, int(f.size)),
                dim=f.dim,
                subsample_size=int(f.size),
            )
            for f in reversed(msg["cond_indep_stack"])  # NumPyro lists innermost first
        )
        self.records.append(
            SiteRecord(
                name=name,
                observed=observed,
                batch_shape=tuple(fn.batch_shape),
                event_shape=tuple(fn.event_shape),
                plates=plates,
                support=self._support_name(support),
                discrete=bool(support.is_discrete or getattr(fn, "has_enumerate_support", False)),
                distribution=distribution_name(fn),
                constraint=_constraint_or_none(support),
            )
        )

    def _support_name(self, support: Any) -> str:
        key = id(support)
        name = self._support_names.get(key)
        if name is None:  # same object, same name (the records keep the object alive)
            name = self._support_names[key] = support_name(support, _is_tracer)
        return name


# --------------------------------------------------------------------------------------
# Provenance over a jaxpr
# --------------------------------------------------------------------------------------


def _subjaxpr(eqn: Any) -> Jaxpr | None:
    """The single inner jaxpr of a call-like equation whose inputs map one to one."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = eqn.params.get(key)
        if inner is None:
            continue
        inner = getattr(inner, "jaxpr", inner)
        if (
            isinstance(inner, Jaxpr)
            and len(inner.invars) == len(eqn.invars)
            and len(inner.outvars) == len(eqn.outvars)
        ):
            return inner
    return None


def _provenance(jaxpr: Jaxpr, inputs: list[frozenset[str]]) -> list[frozenset[str]]:
    """Provenance of each output of ``jaxpr``: the site names its value was computed from."""
    env: dict[Any, frozenset[str]] = {}

    def read(v: Any) -> frozenset[str]:
        return _EMPTY if isinstance(v, Literal) else env.get(v, _EMPTY)

    for v, p in zip(jaxpr.invars, inputs, strict=True):
        env[v] = p
    for eqn in jaxpr.eqns:
        if eqn.primitive is _site_p:
            env[eqn.outvars[0]] = frozenset((eqn.params["name"],))
            continue
        ins = [read(v) for v in eqn.invars]
        inner = _subjaxpr(eqn)
        if inner is not None:
            outs = _provenance(inner, ins)
        else:
            union = _EMPTY.union(*ins)
            outs = [union] * len(eqn.outvars)
        for v, p in zip(eqn.outvars, outs, strict=True):
            if p:
                env[v] = p
    return [read(v) for v in jaxpr.outvars]


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------


def _run(
    model: Callable[..., Any], args: Any, kwargs: Any, seed: int, check_nan: bool
) -> tuple[_Tracer, Any]:
    box: list[_Tracer] = []

    def fn(token: Any) -> list[Any]:
        tracer = _Tracer(token, check_nan)
        box.append(tracer)
        with handlers.seed(rng_seed=seed), tracer:
            model(*args, **kwargs)
        return tracer.outputs

    try:
        with numpyro.validation_enabled(False), jax.ensure_compile_time_eval():
            closed = jax.make_jaxpr(fn)(jnp.zeros(()))
    except _CONTROL_FLOW_ERRORS as e:
        raise control_flow_error(box[-1].last_site if box else None, e) from e
    return box[-1], closed


def trace_model(
    model: Callable[..., Any],
    *args: Any,
    check_static: bool = True,
    check_nan: bool = True,
    seed: int = 0,
    **kwargs: Any,
) -> ModelGraph:
    """Trace a NumPyro model abstractly and record its sample sites and provenance DAG.

    Args:
        model: a NumPyro model (any callable using ``numpyro.sample``/``numpyro.plate``...).
        *args, **kwargs: the model's arguments.
        check_static: trace a second time under another seed and raise if the set of sample
            sites (names or shapes) changes (faithful guides need a static structure).
        check_nan: raise if an observed value contains NaN.
        seed: the ``handlers.seed`` seed of the (first) run.

    Returns:
        A :class:`ModelGraph` with ``backend="numpyro"``: sites in trace order, edge
        ``u -> v`` when the log-density of ``v`` was computed from the value of ``u``,
        deterministic sites mapped to the sample sites they came from.

    Raises:
        ValueError: for a discrete latent site, an observed NaN, a dynamic structure, or
            Python control flow on a sampled value.

    Example:
        >>> from faithful_guides.zoo import collider
        >>> model, args, kwargs = collider("numpyro")
        >>> sorted(trace_model(model, *args, **kwargs).dag.in_edges("x"))
        [('z3', 'x'), ('z4', 'x')]
    """
    tracer, closed = _run(model, args, kwargs, seed, check_nan)
    records = tracer.records
    discrete = [r for r in records if r.discrete and not r.observed]
    if discrete:
        raise discrete_latent_error(
            [r.name for r in discrete], [r.support for r in discrete], "numpyro"
        )
    if check_static:
        second, _ = _run(model, args, kwargs, seed + 1, check_nan=False)
        err = dynamic_structure_error(
            {r.name: r.batch_shape + r.event_shape for r in records},
            {r.name: r.batch_shape + r.event_shape for r in second.records},
            "numpyro",
        )
        if err is not None:
            raise err

    jaxpr = closed.jaxpr
    outs = _provenance(jaxpr, [_EMPTY] * len(jaxpr.invars))
    prov: dict[str, set[str]] = {}
    for owner, p in zip(tracer.owners, outs, strict=True):
        prov.setdefault(owner, set()).update(p)
    for r in records:
        r.parents = frozenset(prov.get(r.name, ())) - {r.name}
    deterministic = {d: frozenset(prov.get(d, ())) for d in tracer.deterministic}
    return build_model_graph(records, deterministic, backend="numpyro")
