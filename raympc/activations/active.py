"""Which implementation of each activation is current: the state that `use()` pushes and pops.

Kept apart from `policy` so that the modules a policy swaps in (`flax_modules.GroupNorm`) can ask
for the current implementation without importing the policy that swaps them. Callers look
`active.current` up when they run, so a tool that watches activation calls (the layer recorder,
`raympc record-inputs`) wraps this one function.
"""

from __future__ import annotations

from typing import Callable

from raympc.activations.registry import get

# The mapping of each open `use()`, innermost last; read for activations that jax.nn/flax do not
# provide (mish) and by the swapped-in GroupNorm.
active_policies: list[dict[str, str]] = []


def current(activation: str) -> Callable:
    """The implementation a model should call for `activation` now.

    Args:
        activation: a registered activation name (`raympc.activations.ACTIVATIONS`).

    Returns:
        The function of the innermost `use()`'s implementation, or `spu-direct`'s outside any.

    Raises:
        KeyError: the activation or its implementation is not registered.
    """
    impl = active_policies[-1].get(activation, "spu-direct") if active_policies else "spu-direct"
    return get(activation, impl).fn
