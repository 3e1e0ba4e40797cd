"""Host-independent helpers shared by the Pyro and NumPyro tracers.

Nothing here imports torch or jax: the helpers read constraint and distribution objects
through their class names and attributes, which the two hosts spell alike.

Example:
    >>> class _Real: is_discrete = False
    >>> support_name(_Real())
    'real'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from faithful_guides.graph.model_graph import ModelGraph, PlateInfo, SiteInfo, constraint_name

__all__ = [
    "SiteRecord",
    "build_model_graph",
    "control_flow_error",
    "discrete_latent_error",
    "distribution_name",
    "dynamic_structure_error",
    "nan_observation_error",
    "support_name",
]

_WRAPPERS = frozenset({"Independent", "ExpandedDistribution", "MaskedDistribution"})

_HOST_TITLE = {"pyro": "Pyro", "numpyro": "NumPyro"}
_BLOCK = {"pyro": "poutine.block", "numpyro": "handlers.block"}
_MASK = {"pyro": "poutine.mask", "numpyro": "handlers.mask"}
_ENUM_DOCS = {
    "pyro": "https://pyro.ai/examples/enumeration.html",
    "numpyro": "https://num.pyro.ai/en/stable/tutorials/discrete_imputation.html",
}


# --------------------------------------------------------------------------------------
# Neutral names
# --------------------------------------------------------------------------------------


def distribution_name(fn: Any) -> str:
    """The distribution's class name with ``Independent``/``Expanded``/``Masked`` peeled.

    Example:
        >>> class Normal: pass
        >>> class Independent:
        ...     base_dist = Normal()
        >>> distribution_name(Independent())
        'Normal'
    """
    while type(fn).__name__ in _WRAPPERS and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return type(fn).__name__


def _param(value: Any, dependent: Any = None) -> Any:
    """A parameter as a float (or a neutral string) so both hosts print it alike."""
    if dependent is not None and dependent(value):
        return "?"
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        arr = np.asarray(value)
    except Exception:  # an abstract value (e.g. a jax tracer)
        return "?"
    if arr.size and arr.dtype.kind in "biuf" and np.all(arr == arr.flat[0]):
        return float(arr.flat[0])
    return "array" + str(tuple(arr.shape)).replace(" ", "")


def support_name(constraint: Any, dependent: Any = None) -> str:
    """A neutral, host-independent name for a support constraint.

    Continuous supports are named by the set they describe, so that both hosts agree even
    when their classes differ: ``positive``, ``nonnegative`` and ``softplus_positive``
    are ``"greater_than(0.0)"``; ``unit_interval``/``open_interval``/``interval`` are
    ``"interval(a, b)"``; ``independent(c, n)`` is ``"independent(<c>, n)"`` (``n=0`` is
    ``<c>``). Discrete supports keep their kind (``"boolean"``,
    ``"integer_interval(0.0, 3.0)"``, ``"integer_greater_than(0.0)"``). Others use
    :func:`~faithful_guides.graph.model_graph.constraint_name`. A parameter that depends on
    a sample site (``dependent(value)`` true, or abstract) prints as ``?``.

    Example:
        >>> class _GreaterThan:
        ...     lower_bound = 0.0
        >>> class _Positive(_GreaterThan): pass
        >>> support_name(_Positive())
        'greater_than(0.0)'
    """
    mro = [k.__name__.lstrip("_") for k in type(constraint).__mro__]

    def p(attr: str) -> Any:
        return _param(getattr(constraint, attr), dependent)

    if "IndependentConstraint" in mro:
        base = support_name(constraint.base_constraint, dependent)
        n = int(constraint.reinterpreted_batch_ndims)
        return base if n == 0 else f"independent({base}, {n})"
    if "IntegerInterval" in mro:
        return constraint_name("IntegerInterval", {"lb": p("lower_bound"), "ub": p("upper_bound")})
    if "IntegerGreaterThan" in mro:
        return constraint_name("IntegerGreaterThan", {"lb": p("lower_bound")})
    if "IntegerLessThan" in mro:
        return constraint_name("IntegerLessThan", {"ub": p("upper_bound")})
    if {"Interval", "HalfOpenInterval", "OpenInterval"} & set(mro):
        return constraint_name("Interval", {"lb": p("lower_bound"), "ub": p("upper_bound")})
    if {"GreaterThan", "GreaterThanEq"} & set(mro):
        return constraint_name("GreaterThan", {"lb": p("lower_bound")})
    if {"LessThan", "LessThanEq"} & set(mro):
        return constraint_name("LessThan", {"ub": p("upper_bound")})
    params = {
        k: _param(v, dependent)
        for k, v in sorted(vars(constraint).items())
        if not k.startswith("_") and not isinstance(v, (str, bool)) and _is_numeric(v)
    }
    return constraint_name(type(constraint).__name__, params)


def _is_numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) or hasattr(value, "shape")


# --------------------------------------------------------------------------------------
# Records and graph assembly
# --------------------------------------------------------------------------------------


@dataclass
class SiteRecord:
    """What a tracer learns about one sample site before building :class:`SiteInfo`."""

    name: str
    observed: bool
    batch_shape: tuple[int, ...]
    event_shape: tuple[int, ...]
    plates: tuple[PlateInfo, ...]
    support: str
    discrete: bool
    distribution: str
    constraint: Any
    parents: frozenset[str] = frozenset()


def build_model_graph(
    records: Sequence[SiteRecord],
    deterministic: Mapping[str, Iterable[str]],
    backend: str,
) -> ModelGraph:
    """Assemble a :class:`ModelGraph` from per-site records (parents already known)."""
    names = {r.name for r in records}
    sites: dict[str, SiteInfo] = {}
    dag = nx.DiGraph()
    for i, r in enumerate(records):
        sites[r.name] = SiteInfo(
            name=r.name,
            observed=r.observed,
            batch_shape=r.batch_shape,
            event_shape=r.event_shape,
            plates=r.plates,
            support=r.support,
            discrete=r.discrete,
            distribution=r.distribution,
            order=i,
            constraint=r.constraint,
        )
        dag.add_node(r.name)
    dag.add_edges_from((p, r.name) for r in records for p in r.parents if p in names)
    det = {k: frozenset(v) & names for k, v in deterministic.items()}
    return ModelGraph(sites=sites, dag=dag, deterministic=det, backend=backend)


# --------------------------------------------------------------------------------------
# Errors (the fix is always in the message)
# --------------------------------------------------------------------------------------


def discrete_latent_error(names: Sequence[str], supports: Sequence[str], host: str) -> ValueError:
    """The error for discrete latent sites, worded as the hosts' own autoguides do."""
    first = names[0]
    listed = ", ".join(f"'{n}' (support {s})" for n, s in zip(names, supports, strict=True))
    hidden = ", ".join(repr(n) for n in names)
    return ValueError(
        f"Continuous inference cannot handle discrete latent sample site {listed}: a faithful "
        f"guide expects continuous latent sites, found a discrete support. Consider "
        f"enumerating {'that variable' if len(names) == 1 else 'those variables'} as "
        f"documented in {_ENUM_DOCS[host]} and hide "
        f"{'it' if len(names) == 1 else 'them'} from the guide, e.g. "
        f"guide = AutoFaithfulMADE({_BLOCK[host]}(model, hide=[{hidden}])) "
        f"(site '{first}' is the first one met)."
    )


def nan_observation_error(name: str, count: int, size: int, host: str) -> ValueError:
    """The error for an observed value containing NaN."""
    if host == "pyro":
        fix = (
            f"pass obs_mask=~torch.isnan(data) to pyro.sample('{name}', ...) (missing entries "
            f"become latent), or wrap the site in {_MASK[host]}(mask=~torch.isnan(data)) "
            f"and replace the NaNs by any finite value"
        )
    else:
        fix = (
            f"pass obs_mask=~jnp.isnan(data) to numpyro.sample('{name}', ...) (missing "
            f"entries become latent), or wrap the site in {_MASK[host]}(mask=~jnp.isnan(data)) "
            f"and replace the NaNs by any finite value (jnp.nan_to_num)"
        )
    return ValueError(
        f"Observed site '{name}' contains NaN ({count} of {size} values): observed values "
        f"must be finite. To model missing data, {fix}."
    )


def dynamic_structure_error(
    first: Mapping[str, tuple[int, ...]], second: Mapping[str, tuple[int, ...]], host: str
) -> ValueError | None:
    """The error for a model whose sample sites differ between two seeded runs, or None."""
    appeared = [n for n in second if n not in first]
    disappeared = [n for n in first if n not in second]
    reshaped = [
        f"'{n}' {first[n]} -> {second[n]}" for n in first if n in second and first[n] != second[n]
    ]
    if not (appeared or disappeared or reshaped):
        return None

    def show(xs: list[str]) -> str:
        shown = ", ".join(repr(x) for x in xs[:10])
        return shown + (f" and {len(xs) - 10} more" if len(xs) > 10 else "")

    parts = []
    if appeared:
        parts.append(f"appeared in the second run: {show(appeared)}")
    if disappeared:
        parts.append(f"disappeared in the second run: {show(disappeared)}")
    if reshaped:
        parts.append("changed shape: " + ", ".join(reshaped[:10]))
    return ValueError(
        f"The {_HOST_TITLE[host]} model has a dynamic structure: two runs with different "
        f"random seeds gave different sample sites ({'; '.join(parts)}). Faithful guides need "
        f"a static structure (the same sites with the same shapes on every run). Make "
        f"branches and loop lengths independent of sampled values (use masks, e.g. "
        f"{_MASK[host]}, or a fixed maximum length), or pass check_static=False if the "
        f"difference is harmless."
    )


def control_flow_error(last_site: str | None, error: BaseException) -> ValueError:
    """The error for NumPyro Python control flow on traced sample values."""
    where = (
        f"after sample site '{last_site}' (the last sample site reached)"
        if last_site is not None
        else "before the first sample site"
    )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ValueError(
        f"The NumPyro model uses a sampled value in Python control flow {where}: faithful "
        f"guides trace the model abstractly, so a latent value cannot decide an `if`, a "
        f"`while`, a Python `int`/`float` or a numpy conversion (found "
        f"{type(error).__name__}: {first_line}). Write the branch with jnp.where(cond, a, b) "
        f"or jax.lax.cond(cond, f, g, x) (loops: jax.lax.fori_loop / numpyro.contrib."
        f"control_flow.scan), so that the model's structure does not depend on values."
    )
