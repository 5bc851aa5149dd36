"""Secure activations: a registry of implementations per activation, and a policy to swap them in.

Implementations: `spu-direct` (the stock JAX functions), `cipherdm` (CipherDM's published forms,
flaws included). `raympc.activations.use(...)` swaps them into unmodified models.
"""

from . import cipherdm, spu_direct  # noqa: F401 - registers the implementations
from .policy import resolve, use
from .registry import ACTIVATIONS, REGISTRY, Implementation, get, implementations

__all__ = ["use", "resolve", "get", "implementations", "Implementation", "REGISTRY", "ACTIVATIONS"]
