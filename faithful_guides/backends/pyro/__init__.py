"""The Pyro backend (torch); import it through :mod:`faithful_guides.pyro`."""

try:
    import pyro  # noqa: F401
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "faithful_guides.pyro needs torch and pyro-ppl: pip install faithful-guides[pyro]"
    ) from e
