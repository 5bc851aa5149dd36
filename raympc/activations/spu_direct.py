"""`spu-direct`: the stock JAX functions as SPU compiles them (exp and reciprocal inside).

Captured at import, before any policy can patch `jax.nn`, so they always mean the stock forms.
Which exp SPU uses (Taylor by default, Pade as CipherDM's baseline) is a runtime setting:
`SpuConfig(exp_mode="pade")`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .registry import register

_silu = jax.nn.silu
_softmax = jax.nn.softmax
_gelu = jax.nn.gelu
_softplus = jax.nn.softplus


@register("silu", "spu-direct", 5e-3, (-16, 16), "x * sigmoid(x): exp and a reciprocal per element")
def silu(x):
    return _silu(x)


@register("mish", "spu-direct", 0.05, (-16, 16),
          "x * tanh(softplus(x)): exp, log and tanh per element; SPU's log/tanh drift to 0.043 at x = 16")
def mish(x):
    return x * jnp.tanh(_softplus(x))


@register("gelu_tanh", "spu-direct", 0.025, (-16, 16),
          "jax.nn.gelu(approximate=True); SPU's tanh is loose in the tails: 0.0215 at x = +-16")
def gelu_tanh(x):
    return _gelu(x, approximate=True)


@register("gelu_erf", "spu-direct", 1e-2, (-16, 16), "jax.nn.gelu(approximate=False)")
def gelu_erf(x):
    return _gelu(x, approximate=False)


@register("softmax", "spu-direct", 1e-2, (-8, 8), "jax.nn.softmax: max, exp, one reciprocal per row")
def softmax(x, axis=-1, where=None, initial=None):
    if initial is not None:  # deprecated in jax and ignored by it; kept in the signature for callers
        return _softmax(x, axis=axis, where=where, initial=initial)
    return _softmax(x, axis=axis, where=where)


@register("exp", "spu-direct", None, (-14, 0), "jnp.exp: SPU's Taylor (default) or Pade exp")
def exp(x):
    return jnp.exp(x)
