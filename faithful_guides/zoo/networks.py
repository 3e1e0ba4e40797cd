"""A model for each host from any :class:`~faithful_guides.exact.LinearGaussianBN`.

:func:`linear_gaussian` writes the network as one scalar sample site per node, in the BN's
topological order: ``nodes[i] ~ Normal(sum_j B[i, j] * nodes[j] + c[i], sqrt(d[i]))``.
Observed nodes take their values from the model's argument ``x`` (``observed_order``), and
their children see those values, so interior observed nodes behave as in the BN. The
random DAGs of :meth:`LinearGaussianBN.random_dag` are the benchmark ``benchmarks/dags.py``.

Example:
    >>> from faithful_guides.exact import LinearGaussianBN
    >>> bn = LinearGaussianBN.random_dag(0)
    >>> model, (x,), _ = linear_gaussian("numpyro", bn)
    >>> x.shape
    (5,)
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

from faithful_guides.exact import LinearGaussianBN
from faithful_guides.zoo.host import Host, HostName, get_host
from faithful_guides.zoo.models import ModelSpec

__all__ = ["linear_gaussian"]


def linear_gaussian(
    host: Host | HostName,
    bn: LinearGaussianBN,
    *,
    num_rows: int | None = None,
    seed: int = 0,
) -> ModelSpec:
    """The model ``model(x)`` of ``bn`` for ``host``.

    ``x`` holds the observed nodes in ``bn.observed_order``: shape ``(n_observed,)``, or
    ``(num_rows, n_observed)`` with ``num_rows`` (then the whole network sits in
    ``plate("data", num_rows)``, each row an independent instance). ``x=None`` samples the
    observed nodes too. The returned data are a draw of ``bn`` from ``seed``.

    Example:
        >>> from faithful_guides.exact import LinearGaussianBN
        >>> model, (x,), _ = linear_gaussian("pyro", LinearGaussianBN.random_dag(1), num_rows=3)
        >>> tuple(x.shape)
        (3, 5)
    """
    h = host if isinstance(host, Host) else get_host(host)
    column = {n: k for k, n in enumerate(bn.observed_order)}
    nodes = [
        (name, bn.parents(name), float(bn.c[i]), math.sqrt(float(bn.d[i])), column.get(name))
        for i, name in enumerate(bn.nodes)
    ]
    rows = 1 if num_rows is None else num_rows
    data = bn.sample(np.random.default_rng(seed), rows)[1]
    x0 = h.tensor(data[0] if num_rows is None else data)
    sample, normal = h.sample, h.dist.Normal

    def model(x: Any = None) -> None:
        values: dict[str, Any] = {}
        ctx = contextlib.nullcontext() if num_rows is None else h.plate("data", num_rows)
        with ctx:
            for name, parents, offset, scale, col in nodes:
                loc: Any = offset
                for parent, weight in parents:
                    loc = loc + weight * values[parent]
                obs = None if col is None or x is None else x[..., col]
                values[name] = sample(name, normal(loc, scale), obs=obs)

    return model, (x0,), {}
