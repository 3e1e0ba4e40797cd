"""The NumPyro backend (jax); import it through :mod:`faithful_guides.numpyro`."""
