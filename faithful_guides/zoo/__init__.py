"""Models written once for both hosts (Pyro and NumPyro) through a thin :class:`Host` shim.

Example:
    >>> from faithful_guides.zoo import ZOO, get_host
    >>> model, args, kwargs = ZOO["collider"](get_host("pyro"))
"""

from faithful_guides.zoo.host import HOSTS, Host, HostName, get_host
from faithful_guides.zoo.models import (
    ZOO,
    ModelSpec,
    arithmetic_circuit,
    binary_tree,
    collider,
    constrained,
    eight_schools,
    hier_regression,
    hmm_chain,
    latent_grid,
    student,
    vae,
    vector_event,
)

__all__ = [
    "HOSTS",
    "ZOO",
    "Host",
    "HostName",
    "ModelSpec",
    "arithmetic_circuit",
    "binary_tree",
    "collider",
    "constrained",
    "eight_schools",
    "get_host",
    "hier_regression",
    "hmm_chain",
    "latent_grid",
    "student",
    "vae",
    "vector_event",
]
