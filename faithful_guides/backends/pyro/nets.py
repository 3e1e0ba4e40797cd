"""Torch networks of the Pyro AutoFaithfulMADE guide: masked MLPs and plate-summary embeddings.

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

import numpy as np
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

__all__ = ["Embedding", "MaskedLinear", "MaskedMLP", "inverse_softplus"]

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

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The masked ``(weight, bias)`` of every layer: compute once, apply many times
        (the guide makes one pass per generation of the inverse graph)."""
        return [(m.masked_weight(), m.bias) for m in [*self.hidden, self.out]] + [
            (self.skip.masked_weight(), None)
        ]

    def forward(
        self, x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        *hidden, (w_out, b_out), (w_skip, _) = self.layers() if layers is None else layers
        h = x
        for w, b in hidden:
            h = F.elu(F.linear(h, w, b))
        y = F.linear(h, w_out, b_out) + F.linear(x, w_skip)
        return y[..., : self.out_size], F.softplus(y[..., self.out_size :])


class Embedding(PyroModule):
    """A per-row embedding ``in_size -> dim`` (one ELU hidden layer), averaged over rows:
    the permutation-invariant summary of a plate's observed sites."""

    def __init__(self, in_size: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.l1 = PyroModule[nn.Linear](in_size, hidden)
        self.l2 = PyroModule[nn.Linear](hidden, dim)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` shaped ``(..., N, in_size)`` -> ``(..., dim)`` (mean over the N rows)."""
        return self.l2(F.elu(self.l1(rows))).mean(-2)
