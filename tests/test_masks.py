"""DAG-masked MADE masks: the Jacobian of a masked network in torch and in JAX has exactly
the inverse parents as its support."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from faithful_guides import invert
from faithful_guides.graph.masks import connectivity, made_masks

STUDENT = [("D", "G"), ("I", "G"), ("I", "S"), ("G", "H"), ("G", "L")]
STUDENT += [("S", "J"), ("L", "J"), ("J", "H")]


def student_allowed() -> tuple[list[str], list[set[int]]]:
    """Features: every site; outputs: the latents, each allowed its inverse parents."""
    h = invert(nx.DiGraph(STUDENT), {"J", "H"})
    names = sorted(h.nodes)
    latents = [n for n in names if n not in {"J", "H"}]
    return names, [{names.index(u) for u in h.predecessors(v)} for v in latents]


def torch_jacobian(masks: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    import torch

    torch.manual_seed(0)
    weights = [torch.randn(m.shape, dtype=torch.float64) * torch.as_tensor(m) for m in masks]

    def net(h):
        for w in weights[:-1]:
            h = torch.tanh(w @ h + 0.3)
        return weights[-1] @ h

    return torch.autograd.functional.jacobian(net, torch.as_tensor(x)).numpy()


def jax_jacobian(masks: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(0), len(masks))
    weights = [jax.random.normal(k, m.shape) * m for k, m in zip(keys, masks, strict=True)]

    def net(h):
        for w in weights[:-1]:
            h = jnp.tanh(h @ w.T + 0.3)
        return h @ weights[-1].T

    return np.asarray(jax.jacfwd(net)(jnp.asarray(x, dtype=jnp.float32)))


@pytest.mark.parametrize("jacobian", [torch_jacobian, jax_jacobian], ids=["torch", "jax"])
@pytest.mark.parametrize("hidden", [[16], [24, 24]])
def test_jacobian_support_is_the_inverse_parents(jacobian, hidden):
    names, allowed = student_allowed()
    masks = made_masks(len(names), allowed, hidden)
    expected = np.array([[i in s for i in range(len(names))] for s in allowed])
    assert (connectivity(masks) == expected).all()
    x = np.random.default_rng(0).normal(size=len(names))
    support = np.abs(jacobian(masks, x)) > 1e-9
    assert (support == expected).all()


def test_masks_shape_convention_out_by_in():
    masks = made_masks(5, [{0}, {1, 2}], [7, 6])
    assert [m.shape for m in masks] == [(7, 5), (6, 7), (2, 6)]
    assert all(m.dtype == bool for m in masks)


def test_narrow_hidden_layer_warns():
    with pytest.warns(UserWarning, match="cannot carry all 4 input features"):
        made_masks(4, [{0, 1, 2, 3}], [2])


@pytest.mark.parametrize(
    "args, match",
    [
        ((2, [{0, 5}], [4]), r"Output 0 is allowed input features \[5\], but there are only 2"),
        ((2, [{0}], [0]), r"Hidden layer widths must be positive, found \[0\]"),
    ],
)
def test_bad_mask_requests(args, match):
    with pytest.raises(ValueError, match=match):
        made_masks(*args)
