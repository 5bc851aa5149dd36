"""`spu-direct`: the stock JAX functions as SPU compiles them (exp and reciprocal inside).

Captured at import, before any policy can patch `jax.nn`, `jax.lax.rsqrt` or flax's GroupNorm,
so they always mean the stock forms.
Which exp SPU uses (Taylor by default, Pade as CipherDM's baseline) is a runtime setting:
`SpuConfig(exp_mode="pade")`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from raympc.activations.flax_modules import FLAX_GROUP_NORM
from raympc.activations.registry import register

_silu = jax.nn.silu
_softmax = jax.nn.softmax
_gelu = jax.nn.gelu
_softplus = jax.nn.softplus
_rsqrt = jax.lax.rsqrt


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


@register("rsqrt", "spu-direct", None, (0.0625, 1024.0), "jax.lax.rsqrt: SPU's rsqrt")
def rsqrt(v):
    return _rsqrt(v)


@register("groupnorm", "spu-direct", None, (-4, 4),
          "flax.linen.GroupNorm's own maths: E[x^2] - E[x]^2 clamped at 0, then rsqrt")
def groupnorm(x, num_groups: int = 32, scale=None, bias=None, epsilon: float = 1e-6):
    params = {k: v for k, v in (("scale", scale), ("bias", bias)) if v is not None}
    module = FLAX_GROUP_NORM(num_groups=num_groups, epsilon=epsilon,
                             use_scale=scale is not None, use_bias=bias is not None)
    return module.apply({"params": params}, x)
