r"""Where each site's value lives on the model's *plate grid*, written once for both hosts.

Every feature tensor a guide network reads or writes has the shape

.. math:: (\ldots \text{extra},\ s_1, \ldots, s_K,\ F)

where the :math:`K` axes are the model's plates, outermost (most negative ``dim``) first,
:math:`s_k` is the plate's (sub)sample size if the site sits in plate :math:`k` and 1 if
it does not, and :math:`F` counts the site's features per grid cell: its event elements
times its batch elements that belong to no plate (``dist.Normal(0, 1).expand([n])``
outside any plate has ``F = n``). Leading ``extra`` axes are the caller's (vectorized
particles, ``sample_shape``).

Because a site outside a plate has size 1 on that plate's axis, features of coarser sites
broadcast onto finer grids by the array library's own broadcasting, and finer sites reduce
onto coarser grids by a mean over the axes they have and the target lacks (a plate
summary). Nested and side-by-side plates need nothing more.

The functions take the array namespace ``xp`` (``torch`` or ``jax.numpy``): the layout is
host-neutral, only ``reshape``/``permute`` differ in name.

Example:
    >>> import numpy as np
    >>> lay = SiteLayout("y", shape=(3, 2), batch_ndim=1, plate_dims=(-1,), in_plate=(True,))
    >>> grid = lay.to_grid(np.arange(6.0).reshape(3, 2), np)
    >>> grid.shape, lay.features
    ((3, 2), 2)
    >>> bool((lay.from_grid(grid, np) == np.arange(6.0).reshape(3, 2)).all())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

__all__ = ["SiteLayout", "transpose"]


def transpose(x: Any, perm: list[int], xp: Any) -> Any:
    """``x`` with its axes permuted (``permute`` in torch, ``transpose`` in numpy/jax)."""
    if perm == list(range(len(perm))):
        return x
    return x.permute(*perm) if hasattr(x, "permute") else xp.transpose(x, perm)


@dataclass(frozen=True)
class SiteLayout:
    """How one site's value maps to grid features ``(*extra, s_1..s_K, F)`` and back.

    Attributes:
        name: the site.
        shape: its value shape at set-up (for latents: the unconstrained shape), batch
            dims first, plate dims at their sizes in that run.
        batch_ndim: how many leading dims of ``shape`` are batch dims.
        plate_dims: the ``dim`` of each of the model's plates, outermost first.
        in_plate: per plate of ``plate_dims``, whether the site sits in it.
    """

    name: str
    shape: tuple[int, ...]
    batch_ndim: int
    plate_dims: tuple[int, ...]
    in_plate: tuple[bool, ...]

    @property
    def nesting(self) -> int:
        """How many batch dims the model's plates span (``max(-dim)``)."""
        return max((-d for d in self.plate_dims), default=0)

    @property
    def event(self) -> tuple[int, ...]:
        return self.shape[self.batch_ndim :]

    @property
    def local(self) -> bool:
        """Whether the site sits in any plate."""
        return any(self.in_plate)

    @cached_property
    def _padded(self) -> int:
        """Batch dims after left-padding to the plates' nesting."""
        return max(self.batch_ndim, self.nesting)

    @cached_property
    def _plate_positions(self) -> tuple[int, ...]:
        """Positions (in the padded batch) of the plates the site sits in, grid order."""
        b = self._padded
        return tuple(
            b + d for d, inside in zip(self.plate_dims, self.in_plate, strict=True) if inside
        )

    @cached_property
    def _other_positions(self) -> tuple[int, ...]:
        """Positions of the padded batch dims that belong to no plate of the site."""
        return tuple(i for i in range(self._padded) if i not in self._plate_positions)

    @cached_property
    def _padded_shape(self) -> tuple[int, ...]:
        pad = self._padded - self.batch_ndim
        return (1,) * pad + self.shape[: self.batch_ndim]

    @property
    def free_batch(self) -> tuple[int, ...]:
        """Sizes of the batch dims that belong to no plate (they become features)."""
        return tuple(self._padded_shape[i] for i in self._other_positions)

    @property
    def features(self) -> int:
        """``F``: features per grid cell."""
        return math.prod(self.free_batch) * math.prod(self.event)

    @property
    def has_free_batch(self) -> bool:
        """Whether some batch dim of size > 1 is in no plate (so ``F`` mixes batch and
        event elements and a joint distribution over ``F`` would change event dims)."""
        return math.prod(self.free_batch) > 1

    def flattened(self) -> SiteLayout:
        """This layout with the event flattened to ``(F,)`` (the base space of a site with a
        joint distribution over its features; only without free batch dims)."""
        shape = (*self.shape[: self.batch_ndim], self.features)
        return SiteLayout(self.name, shape, self.batch_ndim, self.plate_dims, self.in_plate)

    def unpadded_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A value shape without the size-1 dims a particle plate pads onto a site that has
        fewer batch dims than the plates' nesting (``shape`` itself otherwise), so that
        :meth:`to_grid` sees the particle dims as extra dims."""
        e = len(shape) - len(self.shape)
        pad = self.nesting - self.batch_ndim
        if e > 0 and pad > 0 and all(s == 1 for s in shape[e - pad : e]):
            return tuple(shape[: e - pad]) + tuple(shape[e:])
        return tuple(shape)

    def grid_shape(self, sizes: tuple[int, ...]) -> tuple[int, ...]:
        """The site's grid axes for plate sizes ``sizes`` (1 where it is not in a plate)."""
        return tuple(s if inside else 1 for s, inside in zip(sizes, self.in_plate, strict=True))

    def cell_weight(self, sizes: tuple[int, ...], subsample_sizes: tuple[int, ...]) -> float:
        """The weight a loss gives one grid cell of the site: the product over its plates of
        ``size / subsample_size`` (1 without subsampling)."""
        w = 1.0
        for n, b, inside in zip(sizes, subsample_sizes, self.in_plate, strict=True):
            if inside:
                w *= n / b
        return w

    def setup_rows(self) -> tuple[int, ...]:
        """The site's plate sizes at set-up (grid order, plates it sits in)."""
        return tuple(self._padded_shape[p] for p in self._plate_positions)

    def to_grid(self, u: Any, xp: Any) -> Any:
        """``(*extra, *batch, *event)`` -> ``(*extra, s_1..s_K, F)``."""
        e = u.ndim - len(self.shape)
        extra = tuple(u.shape[:e])
        batch = tuple(u.shape[e : e + self.batch_ndim])
        pad = self._padded - self.batch_ndim
        u = u.reshape(extra + (1,) * pad + batch + self.event)
        perm = list(range(e))
        perm += [e + p for p in self._plate_positions]
        perm += [e + p for p in self._other_positions]
        perm += list(range(e + self._padded, u.ndim))
        u = transpose(u, perm, xp)
        rows = iter(u.shape[e : e + len(self._plate_positions)])
        grid = tuple(next(rows) if inside else 1 for inside in self.in_plate)
        return u.reshape(extra + grid + (self.features,))

    def from_grid(self, t: Any, xp: Any) -> Any:
        """Inverse of :meth:`to_grid`. With extra axes, the batch stays padded to the
        plates' nesting (the hosts' convention under particle plates)."""
        k = len(self.plate_dims)
        e = t.ndim - k - 1
        extra = tuple(t.shape[:e])
        rows = [t.shape[e + i] for i, inside in enumerate(self.in_plate) if inside]
        t = t.reshape(extra + tuple(rows) + self.free_batch + self.event)
        order = list(self._plate_positions) + list(self._other_positions)
        inverse = [order.index(i) for i in range(self._padded)]
        perm = list(range(e)) + [e + i for i in inverse]
        perm += list(range(e + self._padded, t.ndim))
        t = transpose(t, perm, xp)
        if e == 0 and self._padded > self.batch_ndim:
            t = t.reshape(tuple(t.shape[self._padded - self.batch_ndim :]))
        return t
