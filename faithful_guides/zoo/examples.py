"""The record of one host example (a model copied from Pyro's or NumPyro's own examples).

The models themselves live in :mod:`faithful_guides.zoo.examples_numpyro` and
:mod:`faithful_guides.zoo.examples_pyro`, each with a registry ``EXAMPLES``. This module is
neutral (it imports neither host), so that both registries share one record type.

An :class:`Example` is lazy: its data are made by ``data()`` (deterministic, numpy-seeded)
on first access of :attr:`Example.args` / :attr:`Example.kwargs`, never at import.

Example:
    >>> ex = Example(
    ...     name="toy", host="numpyro", model=print, data=lambda n=3: ((n,), {}),
    ...     lr=0.01, num_steps=10, latents=(), source="none", small={"n": 1},
    ... )
    >>> ex.args, ex.shrunk().args
    ((3,), (1,))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

__all__ = ["Example"]


@dataclasses.dataclass(frozen=True, eq=False)
class Example:
    """One host example: the model, its data and the optimizer settings of its source.

    Attributes:
        name: registry key.
        host: ``"pyro"`` or ``"numpyro"``.
        model: the model function, verbatim from the host's source.
        data: ``data(**small) -> (args, kwargs)``, deterministic (numpy seed).
        lr: Adam learning rate of the source's SVI (or the stated default where the source
            only runs MCMC; see ``settings``).
        num_steps: SVI steps of the source (same caveat).
        latents: sample or deterministic sites compared against the reference posterior.
        source: where the model was copied from (repository path, license).
        settings: where ``lr`` and ``num_steps`` come from.
        optim_kwargs: further Adam arguments of the source (e.g. ``betas``).
        batches: ``batches(args, kwargs) -> list of (args, kwargs)``, the minibatches an SVI
            loop cycles through (``None``: every step sees ``args``/``kwargs``).
        fresh_model: builds a new model with fresh network weights (models that own
            ``torch.nn`` modules); ``None`` when ``model`` is stateless.
        exact: ``{site: (mean, sd)}`` of the exact posterior where it is known (then no
            MCMC reference is needed).
        small: ``data`` keyword arguments of a small version (tests); see :meth:`shrunk`.
    """

    name: str
    host: str
    model: Callable[..., Any]
    data: Callable[..., tuple[tuple[Any, ...], dict[str, Any]]]
    lr: float
    num_steps: int
    latents: tuple[str, ...]
    source: str
    settings: str = ""
    optim_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batches: Callable[[tuple, dict], list[tuple[tuple, dict]]] | None = None
    fresh_model: Callable[[], Callable[..., Any]] | None = None
    exact: Mapping[str, tuple[Any, Any]] | None = None
    small: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @cached_property
    def _data(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self.data()

    @property
    def args(self) -> tuple[Any, ...]:
        """Positional model arguments (made on first access)."""
        return self._data[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword model arguments (made on first access)."""
        return self._data[1]

    def new_model(self) -> Callable[..., Any]:
        """A model with fresh parameters where it owns any, else :attr:`model` itself."""
        return self.fresh_model() if self.fresh_model is not None else self.model

    def minibatches(self) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The ``(args, kwargs)`` an SVI loop cycles through (one entry without batches)."""
        if self.batches is None:
            return [(self.args, self.kwargs)]
        return self.batches(self.args, self.kwargs)

    def shrunk(self) -> Example:
        """The same example on its small data (``data(**small)``), for quick tests."""
        if not self.small:
            return self
        small = dict(self.small)
        return dataclasses.replace(self, data=lambda: self.data(**small), small={})
