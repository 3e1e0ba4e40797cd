"""The Pyro backend (torch); import it through :mod:`faithful_guides.pyro`."""
