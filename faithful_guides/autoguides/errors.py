"""User errors of every guide family, worded once, with the guide's name as a parameter.

Example:
    >>> str(missing_observation("x", "a latent site", "AutoFaithfulMADE"))[:40]
    "Observed site 'x' has no observed value "
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "jit_gradient_error",
    "missing_observation",
    "no_bijection_error",
    "non_finite_error",
    "observed_shape_error",
    "structure_cycle_error",
    "unknown_structure_error",
]


def unknown_structure_error(structure: object, allowed: Sequence[str]) -> ValueError:
    return ValueError(f"Unknown structure {structure!r}: expected one of {', '.join(allowed)}.")


def structure_cycle_error(structure: str, guide_name: str) -> ValueError:
    return ValueError(
        f"With structure={structure!r}, {guide_name} would have to sample latents of some "
        "plates before and after each other (a coarser latent conditioning on a finer one). "
        "Use structure='nami', whose plate-aware inversion samples coarse latents first."
    )


def observed_shape_error(
    name: str, shape: tuple[int, ...], expected: tuple[int, ...], guide_name: str
) -> ValueError:
    return ValueError(
        f"Observed site {name!r} has shape {tuple(shape)} in this call, which does not "
        f"broadcast to the site's shape {tuple(expected)}; {guide_name} was set up with "
        "the same site shaped like this except for plate sizes. Give data of the set-up "
        "shape (only plate sizes may change), or create a new guide."
    )


def missing_observation(name: str, found: str, guide_name: str) -> ValueError:
    """An observed site whose value this call does not give and set-up did not record."""
    return ValueError(
        f"Observed site {name!r} has no observed value in this call (found {found}) and "
        f"{guide_name} has no set-up value of that shape to fall back on. Pass its data to "
        "the guide as to the model (guide(x) rather than guide(None))."
    )


def no_bijection_error(name: str, support: object) -> ValueError:
    return ValueError(
        f"Latent site {name!r} has support {support} with no bijection to unconstrained "
        "space (biject_to): register one with biject_to.register, reparametrize the site, "
        "or hide it with block(hide=[...]) and guide it separately (AutoGuideList)."
    )


def non_finite_error(what: str, sites: Sequence[str], guide_name: str) -> FloatingPointError:
    shown = ", ".join(repr(s) for s in sites) or "(none found)"
    return FloatingPointError(
        f"{guide_name}: {what} is not finite at site(s) {shown}. Lower the learning rate, "
        "check the scale of the data and of init_loc_fn, or use a smaller init_scale."
    )


def jit_gradient_error(guide_name: str) -> ValueError:
    """An inner ``torch.autograd.grad`` under ``torch.jit.trace`` (Pyro's JitTrace_ELBO)."""
    return ValueError(
        f"{guide_name}(inputs='gradient') takes torch.autograd.grad of the model inside the "
        "guide, which torch.jit.trace (JitTrace_ELBO) cannot record. Train it with "
        "Trace_ELBO or IterativeELBO, or use inputs='error' (no inner gradient), which "
        "JitTrace_ELBO traces."
    )
