"""A thin shim over the two hosts so that each zoo model is written once.

A :class:`Host` bundles the few primitives a model needs (``sample``, ``plate``,
``deterministic``, ``param``, the distributions module, the array namespace) for Pyro or
NumPyro. Each host is imported lazily by :func:`get_host`, so the NumPyro host never imports
torch and the Pyro host never imports jax.

Example:
    >>> host = get_host("numpyro")
    >>> def model():
    ...     z = host.sample("z", host.dist.Normal(0.0, 1.0))
    ...     host.sample("x", host.dist.Normal(z, 1.0), obs=host.tensor(0.5))
    >>> host.name
    'numpyro'
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

HostName = Literal["pyro", "numpyro"]

__all__ = ["HOSTS", "Host", "HostName", "get_host"]

HOSTS: tuple[HostName, ...] = ("pyro", "numpyro")


@dataclass(frozen=True)
class Host:
    """The primitives of one host (Pyro or NumPyro) that the zoo models use.

    Attributes:
        name: ``"pyro"`` or ``"numpyro"``.
        sample: ``pyro.sample`` / ``numpyro.sample``.
        plate: ``pyro.plate`` / ``numpyro.plate``.
        deterministic: ``pyro.deterministic`` / ``numpyro.deterministic``.
        dist: the distributions module.
        np: the array namespace (``torch`` or ``jax.numpy``).
        condition: the ``condition`` handler (``pyro.condition`` / ``handlers.condition``).
        block: the ``block`` handler (``poutine.block`` / ``handlers.block``).
        module: the host's top-level module (``pyro`` or ``numpyro``).
        param: ``pyro.param`` / ``numpyro.param`` (learned model parameters).

    Example:
        >>> get_host("pyro").tensor([1, 2]).dtype
        torch.float32
    """

    name: HostName
    sample: Callable[..., Any]
    plate: Callable[..., Any]
    deterministic: Callable[..., Any]
    dist: ModuleType
    np: ModuleType
    condition: Callable[..., Any]
    block: Callable[..., Any]
    module: ModuleType
    param: Callable[..., Any]

    def tensor(self, x: Any) -> Any:
        """A float32 host array from a number, a list or a numpy array.

        Example:
            >>> get_host("numpyro").tensor(np.ones(2)).shape
            (2,)
        """
        arr = np.asarray(x, dtype=np.float32)
        if self.name == "pyro":
            return self.np.from_numpy(arr.copy())  # 0-d stays 0-d (not ascontiguousarray)
        return self.np.asarray(arr)

    def __repr__(self) -> str:
        return f"Host({self.name!r})"


_INSTALL_HINT = "pip install faithful-guides[{extra}]"


@functools.cache
def get_host(name: HostName) -> Host:
    """The :class:`Host` for ``"pyro"`` or ``"numpyro"``, importing it on first use.

    Raises:
        ValueError: for an unknown host name.
        ImportError: when the host is not installed (with an install hint).

    Example:
        >>> get_host("pyro").name
        'pyro'
    """
    if name == "pyro":
        try:
            import pyro
            import pyro.distributions
            import pyro.poutine
            import torch
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"The Pyro host needs torch and pyro-ppl: {_INSTALL_HINT.format(extra='pyro')}"
            ) from e
        return Host(
            name="pyro",
            sample=pyro.sample,
            plate=pyro.plate,
            deterministic=pyro.deterministic,
            dist=pyro.distributions,
            np=torch,
            condition=pyro.poutine.condition,
            block=pyro.poutine.block,
            module=pyro,
            param=pyro.param,
        )
    if name == "numpyro":
        try:
            import jax.numpy as jnp
            import numpyro
            import numpyro.distributions
            from numpyro import handlers
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"The NumPyro host needs jax and numpyro: {_INSTALL_HINT.format(extra='numpyro')}"
            ) from e
        return Host(
            name="numpyro",
            sample=numpyro.sample,
            plate=numpyro.plate,
            deterministic=numpyro.deterministic,
            dist=numpyro.distributions,
            np=jnp,
            condition=handlers.condition,
            block=handlers.block,
            module=numpyro,
            param=numpyro.param,
        )
    raise ValueError(f"Unknown host {name!r}: expected one of {HOSTS}.")
