"""Secure activations: a registry of implementations per activation, and a policy to swap them in.

Implementations: `spu-direct` (the stock JAX functions), `puma` (PUMA's piecewise forms),
`cipherdm` (CipherDM's published forms, flaws included) and `raympc` (ours, see ours.py).
`raympc.activations.use(...)` swaps them into unmodified models; `stock()` undoes a swap for a
plaintext reference.
"""

from raympc.activations import (  # noqa: F401 - importing them registers the implementations
    active,
    cipherdm,
    ours,
    puma,
    spu_direct,
)
from raympc.activations.coverage import Coverage, coverage
from raympc.activations.policy import PolicyError, resolve, stock, use
from raympc.activations.registry import ACTIVATIONS, REGISTRY, Implementation, get, implementations
from raympc.activations.store import register_stored_fits

register_stored_fits()


def current(activation: str):
    """The implementation a model should call for `activation` now (`active.current`, looked up
    at call time so that tools watching activation calls see these calls too)."""
    return active.current(activation)


__all__ = ["use", "stock", "current", "resolve", "PolicyError", "coverage", "Coverage", "get", "implementations", "Implementation", "REGISTRY", "ACTIVATIONS"]
