"""The per-site transform of the Pyro guides: base value -> site value.

Example:
    >>> import torch
    >>> from torch.distributions.transforms import ExpTransform
    >>> t = SiteTransform([ExpTransform()]).with_cache(1)
    >>> t.log_abs_det_jacobian(torch.zeros(2), t(torch.zeros(2))).tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.distributions.transforms import ComposeTransform, Transform

__all__ = ["SiteTransform"]


class SiteTransform(Transform):
    """The composition of ``parts`` (e.g. a reshape, then ``biject_to(support)``) with its
    domain and codomain computed once: a :class:`~torch.distributions.transforms.ComposeTransform`
    recomputes them, recursively, on every access, and a guide step reads them many times.

    The guide makes one per site at setup (``cache_size=0``) and one cached copy per call
    (:meth:`with_cache`), so that ``inv(value)`` of a sample is the sampled ``u`` itself.
    Each copy equals no other transform (``__eq__`` is identity): no registered KL of a
    ``TransformedDistribution`` can match the model's, so ``TraceMeanField_ELBO`` stays
    Monte Carlo (an analytic KL would be biased for a guide that samples in inverse order).

    Example:
        >>> from torch.distributions.transforms import ExpTransform
        >>> t = SiteTransform([ExpTransform()]).with_cache(1)
        >>> y = t(torch.zeros(2))
        >>> t.inv(y) is not None and t.log_abs_det_jacobian(torch.zeros(2), y).tolist()
        [0.0, 0.0]
    """

    bijective = True

    def __init__(self, parts: Sequence[Transform], cache_size: int = 0, _dom: Any = None):
        super().__init__(cache_size=cache_size)
        flat = [q for p in parts for q in (p.parts if type(p) is ComposeTransform else [p])]
        self._parts = flat
        self._inner: Transform | None = (
            None if not flat else flat[0] if len(flat) == 1 else ComposeTransform(flat)
        )
        if _dom is None:
            whole = ComposeTransform(flat)  # no parts: the identity on the reals
            _dom = (whole.domain, whole.codomain)
        self.domain, self.codomain = _dom

    def with_cache(self, cache_size: int = 1) -> SiteTransform:
        if cache_size == self._cache_size:
            return self
        return SiteTransform(self._parts, cache_size, (self.domain, self.codomain))

    @property
    def sign(self) -> int | torch.Tensor:
        return 1 if self._inner is None else self._inner.sign

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._inner is None else self._inner(x)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y if self._inner is None else self._inner.inv(y)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._inner is None:
            return torch.zeros_like(x)
        return self._inner.log_abs_det_jacobian(x, y)

    def forward_shape(self, shape: torch.Size) -> torch.Size:
        return shape if self._inner is None else self._inner.forward_shape(shape)

    def inverse_shape(self, shape: torch.Size) -> torch.Size:
        return shape if self._inner is None else self._inner.inverse_shape(shape)
