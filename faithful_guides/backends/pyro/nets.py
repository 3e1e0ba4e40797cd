"""Torch parts of the Pyro AutoFaithfulMADE guide: masked MLPs (run generation by
generation) and plate-summary embeddings.

All modules are :class:`~pyro.nn.PyroModule` so that their parameters go through
``pyro.param`` (the optimizer of ``SVI`` sees them) and their masks are buffers (they travel
with ``state_dict``). Masks follow :mod:`faithful_guides.graph.masks`: numpy bool arrays shaped
``(out, in)``, the layout of ``torch.nn.Linear.weight``.

Example:
    >>> import numpy as np, torch
    >>> from faithful_guides.graph.masks import made_masks
    >>> masks = made_masks(2, [{0}, {0}], [8])
    >>> net = MaskedMLP(masks, np.array([[True, False]] * 2))
    >>> mu, rho = net(torch.ones(2))
    >>> tuple(mu.shape), abs(float(mu)) < 0.05  # almost zero at initialization
    ((1,), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

from faithful_guides.autoguides.defaults import OUTPUT_INIT
from faithful_guides.autoguides.made_plan import PassSchedule, row_multipliers

__all__ = ["Embedding", "MadeSteps", "MaskedLinear", "MaskedMLP"]


class MaskedLinear(PyroModule):
    r"""``y = x @ (W * M).T + b`` with a fixed mask ``M`` shaped ``(out, in)`` that also
    carries each row's multiplier: :math:`M_{ji} = m_{ji} / \sqrt{n_j}` (``n_j`` the
    row's allowed inputs; ``output=True``: :math:`1 / n_j` and raw weights that start at
    ``OUTPUT_INIT`` times a standard normal, so the guide starts at its free parameters up
    to a tiny perturbation while every weight already receives a gradient).

    With the multiplier inside the mask, one Adam step (which moves every raw weight by
    about the learning rate) moves a pre-activation by about ``lr * sqrt(n_j)`` times a
    typical input, and an output by about ``lr`` times a typical hidden unit, whatever the
    width: the parameterization in which a guide's location moves as AutoNormal's does.
    """

    def __init__(self, mask: np.ndarray, *, kind: str = "hidden", bias: bool = True) -> None:
        super().__init__()
        mask = np.asarray(mask, dtype=bool)
        out_f, in_f = mask.shape
        scale = {"hidden": 1.0, "output": OUTPUT_INIT, "direct": 0.0}[kind]
        self.weight = nn.Parameter(torch.randn(out_f, in_f) * scale)
        self.bias = nn.Parameter(torch.zeros(out_f)) if bias else None
        self.register_buffer("mask", torch.as_tensor(row_multipliers(mask, kind=kind)))

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask.to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


class MaskedMLP(PyroModule):
    """A DAG-masked MADE returning the raw corrections ``(mu, rho)``, ``out`` features each.

    The last mask has ``2 * out`` rows (location rows, then scale rows). ``skip`` masks the
    direct input-to-output connections (None: there are none). The direct connections and
    the output layer start at zero, so at initialization ``(mu, rho) == 0``: the guide adds
    ``mu`` to the free locations and ``rho`` (bounded) to the free log-scales.
    """

    def __init__(self, masks: Sequence[np.ndarray], skip: np.ndarray | None) -> None:
        super().__init__()
        *hidden, last = masks
        self.hidden = PyroModule[nn.ModuleList]([MaskedLinear(m) for m in hidden])
        self.out = MaskedLinear(last, kind="output", bias=False)
        self.skip = None if skip is None else MaskedLinear(skip, kind="direct", bias=False)
        self.out_size = last.shape[0] // 2
        self.width = int(masks[0].shape[0])  # of the first hidden layer

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, rho)`` of all outputs for inputs ``x`` shaped ``(..., in)``."""
        h = x
        for m in self.hidden:
            h = F.elu(m(h))
        y = self.out(h) if self.skip is None else self.out(h) + self.skip(x)
        return y[..., : self.out_size], y[..., self.out_size :]

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
        >>> from faithful_guides.autoguides.layout import SiteLayout
        >>> from faithful_guides.autoguides.structure import build_structure
        >>> s = build_structure(g, {n: SiteLayout(n, (), 0, (), ()) for n in g.sites})
        >>> plan = build_made_plan(s, hidden=(8,)).groups[0]
        >>> net = MaskedMLP(plan.masks, plan.skip)
        >>> steps = net.steps(plan.schedule, torch.ones(1))
        >>> mu, rho = steps.outputs()  # generation ('y',)
        >>> steps.update(torch.ones(1))
        >>> mu, rho = steps.outputs()  # generation ('z',)
        >>> tuple(mu.shape)
        (1,)
    """

    def __init__(self, net: MaskedMLP, schedule: PassSchedule, known: torch.Tensor | None):
        first, *rest = net.hidden
        rows = torch.as_tensor(schedule.rows)
        cols = torch.as_tensor(schedule.columns)
        w_in = torch.cat([first.masked_weight(), net.skip.masked_weight()[rows]])[:, cols]
        w_known, *self._w_gens = w_in.split(schedule.column_splits, dim=1)
        splits = schedule.row_splits
        self._out = list(net.out.masked_weight()[rows].split(splits))
        self._hidden = [(m.masked_weight(), m.bias) for m in rest]
        self._width = net.width  # python ints only: sizes are tensors under torch.jit.trace
        self._splits = splits
        bias = torch.cat([first.bias, first.bias.new_zeros(len(schedule.rows))])
        self._z = bias if known is None else F.linear(known, w_known, bias)
        self._row = self._width  # where the next generation's skip rows start in z
        self._gen = 0

    def outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, rho)`` of the next generation, ``(..., k_g)`` each."""
        w = self._out[self._gen]
        n = self._splits[self._gen]
        h = F.elu(self._z[..., : self._width])
        for w_h, b_h in self._hidden:
            h = F.elu(F.linear(h, w_h, b_h))
        y = F.linear(h, w) + self._z[..., self._row : self._row + n]
        return y[..., : n // 2], y[..., n // 2 :]

    def update(self, u: torch.Tensor) -> None:
        """Feed the generation just sampled: its latents' features ``u`` shaped ``(..., k_g)``."""
        if self._gen + 1 < len(self._w_gens):  # the last generation feeds no one
            self._z = self._z + F.linear(u, self._w_gens[self._gen])
        self._row += self._splits[self._gen]
        self._gen += 1


class Embedding(PyroModule):
    r"""The learned part of a plate summary: :math:`\overline{\phi(r)}`, the mean over the
    grid axes ``dims`` of a per-row embedding :math:`\phi` ``in_size -> dim`` (one ELU
    hidden layer)."""

    def __init__(self, in_size: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.l1 = PyroModule[nn.Linear](in_size, hidden)
        self.l2 = PyroModule[nn.Linear](hidden, dim)

    def forward(self, rows: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """``rows`` shaped ``(..., in_size)`` -> their embeddings' mean over ``dims``
        (kept as size-1 axes)."""
        return self.l2(F.elu(self.l1(rows))).mean(dims, keepdim=True)
