"""Torch parts of the Pyro AutoFaithfulMADE guide: masked MLPs (run generation by
generation), plate-summary embeddings, the per-site layout and transform.

All modules are :class:`~pyro.nn.PyroModule` so that their parameters go through
``pyro.param`` (the optimizer of ``SVI`` sees them) and their masks are buffers (they travel
with ``state_dict``). Masks follow :mod:`faithful_guides.graph.masks`: numpy bool arrays shaped
``(out, in)``, the layout of ``torch.nn.Linear.weight``.

Example:
    >>> import numpy as np, torch
    >>> from faithful_guides.graph.masks import made_masks
    >>> masks = made_masks(2, [{0}, {0}], [8])
    >>> net = MaskedMLP(masks, np.array([[True, False]] * 2), torch.zeros(1), 0.1)
    >>> loc, scale = net(torch.zeros(2))
    >>> tuple(loc.shape), round(float(scale), 3)
    ((1,), 0.1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.distributions.transforms import ComposeTransform, ReshapeTransform, Transform
from torch.nn import functional as F

from faithful_guides.autoguides.made_plan import PassSchedule

__all__ = [
    "Embedding",
    "MadeSteps",
    "MaskedLinear",
    "MaskedMLP",
    "SiteLayout",
    "SiteTransform",
    "inverse_softplus",
]

OUTPUT_WEIGHT_SCALE = 1e-2
"""Output weights start at this fraction of torch's default init: the guide starts close to
``N(init_loc, init_scale)`` but every weight already receives a gradient."""


def inverse_softplus(y: float) -> float:
    """``x`` with ``softplus(x) == y`` (``y > 0``)."""
    return y + math.log(-math.expm1(-y))


class MaskedLinear(PyroModule):
    """``y = x @ (W * M).T + b`` with a fixed bool mask ``M`` shaped ``(out, in)``
    (``bias=False``: no ``b``)."""

    def __init__(self, mask: np.ndarray, weight_scale: float = 1.0, bias: bool = True) -> None:
        super().__init__()
        out_f, in_f = mask.shape
        lin = nn.Linear(max(in_f, 1), out_f)  # torch's default init (fan-in uniform)
        self.weight = nn.Parameter(lin.weight.detach()[:, :in_f].clone() * weight_scale)
        self.bias = nn.Parameter(lin.bias.detach().clone()) if bias else None
        self.register_buffer("mask", torch.as_tensor(np.asarray(mask, dtype=bool)))

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask.to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


class MaskedMLP(PyroModule):
    """A DAG-masked MADE returning ``(loc, scale)`` with ``out`` features each.

    The last mask has ``2 * out`` rows (location rows, then scale rows). ``skip`` masks the
    direct input-to-output connections, whose weights start at zero. At init the
    location is ``init_loc`` and the scale ``init_scale`` (up to tiny output weights):
    the output biases hold them, ``scale = softplus(raw)``.
    """

    def __init__(
        self,
        masks: Sequence[np.ndarray],
        skip: np.ndarray,
        init_loc: torch.Tensor,
        init_scale: float,
    ) -> None:
        super().__init__()
        *hidden, last = masks
        self.hidden = PyroModule[nn.ModuleList]([MaskedLinear(m) for m in hidden])
        self.out = MaskedLinear(last, weight_scale=OUTPUT_WEIGHT_SCALE)
        self.skip = MaskedLinear(skip, weight_scale=0.0, bias=False)
        n = last.shape[0] // 2
        if init_loc.shape != (n,):
            raise ValueError(f"init_loc must have shape ({n},), found {tuple(init_loc.shape)}.")
        with torch.no_grad():
            self.out.bias[:n] = init_loc
            self.out.bias[n:] = inverse_softplus(init_scale)
        self.out_size = n
        self.width = int(masks[0].shape[0])  # of the first hidden layer

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` of all outputs for inputs ``x`` shaped ``(..., in)``."""
        h = x
        for m in self.hidden:
            h = F.elu(m(h))
        y = self.out(h) + self.skip(x)
        return y[..., : self.out_size], F.softplus(y[..., self.out_size :])

    def steps(self, schedule: PassSchedule, known: torch.Tensor | None) -> MadeSteps:
        """Start a generation-by-generation evaluation for the ``known`` input features
        (the blocks ``schedule.known``, concatenated; None when there are none)."""
        return MadeSteps(self, schedule, known)


class MadeSteps:
    """One call's generation-by-generation evaluation of a :class:`MaskedMLP`, equal to
    :meth:`MaskedMLP.forward` on the inputs known so far (latents not yet sampled are zero).

    The masked weights are permuted once per call (:class:`PassSchedule`): the first layer
    and the skip connection keep a running ``z = [W_1 x + b_1; S x]`` updated by each
    sampled generation's columns only, and a generation's pass computes only its own
    output rows. The further hidden layers are recomputed in full at each generation:
    eagerly, the extra operations of updating them through ``schedule.changed`` (as the
    NumPyro guide does) cost more than the small matrix products they save.

    Example:
        >>> import numpy as np, torch
        >>> from faithful_guides import ModelGraph
        >>> from faithful_guides.autoguides.made_plan import build_made_plan
        >>> g = ModelGraph.from_edges([("z", "y"), ("y", "x")], observed={"x"})
        >>> plan = build_made_plan(g, sizes={"z": 1, "y": 1, "x": 1}, hidden=(8,)).global_
        >>> net = MaskedMLP(plan.masks, plan.skip, torch.zeros(2), 0.1)
        >>> steps = net.steps(plan.schedule, torch.ones(1))
        >>> loc, scale = steps.outputs()  # generation ('y',)
        >>> steps.update(torch.ones(1))
        >>> loc, scale = steps.outputs()  # generation ('z',)
        >>> tuple(loc.shape)
        (1,)
    """

    def __init__(self, net: MaskedMLP, schedule: PassSchedule, known: torch.Tensor | None):
        first, *rest = net.hidden
        rows = torch.as_tensor(schedule.rows)
        cols = torch.as_tensor(schedule.columns)
        w_in = torch.cat([first.masked_weight(), net.skip.masked_weight()[rows]])[:, cols]
        w_known, *self._w_gens = w_in.split(schedule.column_splits, dim=1)
        w_out, b_out = net.out.masked_weight()[rows], net.out.bias[rows]
        splits = schedule.row_splits
        self._out = list(zip(w_out.split(splits), b_out.split(splits), strict=True))
        self._hidden = [(m.masked_weight(), m.bias) for m in rest]
        self._width = net.width  # python ints only: sizes are tensors under torch.jit.trace
        self._splits = splits
        bias = torch.cat([first.bias, first.bias.new_zeros(len(schedule.rows))])
        self._z = bias if known is None else F.linear(known, w_known, bias)
        self._row = self._width  # where the next generation's skip rows start in z
        self._gen = 0

    def outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` of the next generation, ``(..., k_g)`` each."""
        w, b = self._out[self._gen]
        n = self._splits[self._gen]
        h = F.elu(self._z[..., : self._width])
        for w_h, b_h in self._hidden:
            h = F.elu(F.linear(h, w_h, b_h))
        y = F.linear(h, w, b) + self._z[..., self._row : self._row + n]
        return y[..., : n // 2], F.softplus(y[..., n // 2 :])

    def update(self, u: torch.Tensor) -> None:
        """Feed the generation just sampled: its latents' features ``u`` shaped ``(..., k_g)``."""
        if self._gen + 1 < len(self._w_gens):  # the last generation feeds no one
            self._z = self._z + F.linear(u, self._w_gens[self._gen])
        self._row += self._splits[self._gen]
        self._gen += 1


class Embedding(PyroModule):
    r"""The permutation-invariant summary of a plate's observed sites:
    :math:`[\bar x;\ \overline{\phi(x)}]`, the rows' mean next to the mean of a per-row
    embedding :math:`\phi` ``in_size -> dim`` (one ELU hidden layer)."""

    def __init__(self, in_size: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.l1 = PyroModule[nn.Linear](in_size, hidden)
        self.l2 = PyroModule[nn.Linear](hidden, dim)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` shaped ``(..., N, in_size)`` -> ``(..., in_size + dim)``."""
        return torch.cat([rows.mean(-2), self.l2(F.elu(self.l1(rows))).mean(-2)], -1)


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


@dataclass(frozen=True)
class SiteLayout:
    """How one site's (unconstrained) value maps to per-row features and back, and (latent
    sites) how the Gaussian base value maps to the site's value."""

    name: str
    shape: tuple[int, ...]  # unconstrained value shape at setup (plate dim included)
    batch_ndim: int
    axis: int | None  # position of the plate dim in ``shape`` (None: global site)
    size: int  # features per row
    transform: Any = None  # biject_to(support) (latents)
    mvn: bool = False  # a full-covariance block (size > 1, no extra batch dims)

    @property
    def flat(self) -> bool:
        """Whether the base value is the flattened event (a full-covariance block)."""
        return self.mvn and self.event != (self.size,)

    @cached_property
    def site_transform(self) -> SiteTransform:
        """Base value -> site value (latents): reshape a flattened event, then biject_to."""
        event = torch.Size(self.event)
        reshape = [ReshapeTransform(torch.Size((self.size,)), event)] if self.flat else []
        return SiteTransform([*reshape, self.transform])

    @property
    def event(self) -> tuple[int, ...]:
        return self.shape[self.batch_ndim :]

    @property
    def base_shape(self) -> tuple[int, ...]:
        """Shape (plate dim included) of the Gaussian base distribution's value."""
        return self.shape[: self.batch_ndim] + ((self.size,) if self.mvn else self.event)

    def rows(self, u: torch.Tensor, nesting: int) -> torch.Tensor:
        """``(*outer, [N,] size)`` features of a value shaped ``(*extra, *shape)``."""
        k = len(self.shape)
        extra = u.shape[: u.dim() - k]
        if self.axis is None:
            pad = max(nesting - self.batch_ndim, 0) if extra else 0
            return u.reshape(*extra[: max(len(extra) - pad, 0)], self.size)
        u = u.movedim(len(extra) + self.axis, len(extra))
        return u.reshape(*extra, u.shape[len(extra)], self.size)

    def unrows(self, t: torch.Tensor, nesting: int, local: bool) -> torch.Tensor:
        """Inverse of :meth:`rows` onto :attr:`base_shape`."""
        shape = self.base_shape
        if self.axis is None:
            outer = t.shape[: t.dim() - 1 - int(local)]
            pad = (1,) * max(nesting - self.batch_ndim, 0) if outer else ()
            return t.reshape((*outer, *pad, *shape))
        outer = t.shape[: t.dim() - 2]
        rest = shape[: self.axis] + shape[self.axis + 1 :]
        t = t.reshape((*outer, t.shape[-2], *rest))
        return t.movedim(len(outer), len(outer) + self.axis)
