"""Host-specific backends: :mod:`.pyro` (torch) and :mod:`.numpyro` (jax), imported lazily."""
