"""The NumPyro backend (jax); import it through :mod:`faithful_guides.numpyro`."""

try:
    import jax  # noqa: F401
    import numpyro  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "faithful_guides.numpyro needs jax and numpyro: pip install faithful-guides[numpyro]"
    ) from e
