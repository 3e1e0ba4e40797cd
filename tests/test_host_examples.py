"""Smoke test of every guide family on the hosts' own examples (faithful_guides.zoo.examples_*).

Every example of both hosts, on its small data (``Example.shrunk()``), model code verbatim:
each family of :data:`families.FAMILIES` (``AutoFaithfulMADE(model)``, ...) trains 20 SVI
steps with ``Trace_ELBO`` at the example's own Adam settings, the losses must be finite,
and the trained guide must draw (Pyro: ``guide(*args, **kwargs)``; NumPyro:
``Predictive(model, guide=guide, params=..., num_samples=3)``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from families import FAMILIES, family_class

STEPS = 20


def _pyro_names() -> list[str]:
    from faithful_guides.zoo.examples_pyro import EXAMPLES

    return list(EXAMPLES)


def _numpyro_names() -> list[str]:
    from faithful_guides.zoo.examples_numpyro import EXAMPLES

    return list(EXAMPLES)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("name", _pyro_names())
def test_pyro_example(name: str, family: str) -> None:
    import pyro
    import torch
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    import faithful_guides.pyro as host
    from faithful_guides.zoo.examples_pyro import EXAMPLES

    torch.set_num_threads(1)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    ex = EXAMPLES[name].shrunk()
    model = ex.new_model()
    guide = family_class(host, family)(model)
    svi = SVI(model, guide, Adam({"lr": ex.lr, **ex.optim_kwargs}), Trace_ELBO())
    batches = ex.minibatches()
    losses = []
    for i in range(STEPS):
        args, kwargs = batches[i % len(batches)]
        losses.append(svi.step(*args, **kwargs))
    assert all(math.isfinite(loss) for loss in losses), losses
    args, kwargs = batches[0]
    with torch.no_grad():
        draw = guide(*args, **kwargs)
    assert isinstance(draw, dict)
    for site in ex.latents:
        assert torch.isfinite(draw[site]).all(), site


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("name", _numpyro_names())
def test_numpyro_example(name: str, family: str) -> None:
    import jax
    from numpyro.infer import SVI, Predictive, Trace_ELBO
    from numpyro.optim import Adam

    import faithful_guides.numpyro as host
    from faithful_guides.zoo.examples_numpyro import EXAMPLES

    ex = EXAMPLES[name].shrunk()
    guide = family_class(host, family)(ex.model)
    b1, b2 = ex.optim_kwargs.get("betas", (0.9, 0.999))
    svi = SVI(ex.model, guide, Adam(ex.lr, b1=b1, b2=b2), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(0), STEPS, *ex.args, progress_bar=False, **ex.kwargs)
    losses = np.asarray(result.losses)
    assert losses.shape == (STEPS,)
    assert np.all(np.isfinite(losses)), losses
    pred = Predictive(
        ex.model,
        guide=guide,
        params=result.params,
        num_samples=3,
        return_sites=list(ex.latents),
    )
    draws = pred(jax.random.PRNGKey(1), *ex.args, **ex.kwargs)
    for site in ex.latents:
        assert draws[site].shape[0] == 3, site
        assert np.all(np.isfinite(np.asarray(draws[site]))), site
