"""`puma`: the piecewise forms of PUMA as SPU's LLaMA/GPT-2 examples publish them.

- SiLU: 0 below -8; a quadratic on [-8, -4); an even degree-6 polynomial plus x/2 on [-4, 4]; x above.
- GeLU: 0 below -4; a cubic on [-4, -1.95); an even degree-6 polynomial plus x/2 on [-1.95, 3]; x
  above. PUMA uses the same form for both GeLU variants.
- softmax: x - max, SPU's exp masked to zero where x - max <= -14, one division per row.
Bits are multiplied in as the examples do (`b * seg`), so their cost is what PUMA pays.
"""

from __future__ import annotations

import jax.numpy as jnp

from raympc.activations.registry import register

_SILU_LEFT = (-0.3067541139982155, -0.0819767021525476, -0.0055465625580307)  # 1, x, x^2
_SILU_MIDDLE = (0.0085064025895951, 0.5, 0.2281430841728270, -0.011113046708173, 0.0002743776353465)  # 1, x, x^2, x^4, x^6
_GELU_LEFT = (-0.5054031199708174, -0.42226581151983866, -0.11807612951181953, -0.011034134030615728)  # 1..x^3
_GELU_MIDDLE = (0.008526321541038084, 0.5, 0.3603292692789629, -0.037688200365904236, 0.0018067462606141187)  # 1, x, x^2, x^4, x^6


def _pieces(x, lo: float, mid: float, hi: float, left, middle):
    b_lo, b_mid, b_hi = x < lo, x < mid, x > hi
    in_middle = b_mid ^ b_hi ^ True
    in_left = b_lo ^ b_mid
    return b_hi * x + in_left * left + in_middle * middle


@register("silu", "puma", 0.08, (-16, 16), "PUMA: 3 comparisons, quadratic and even degree-6 pieces; 0.072 off at the jump at x = 4")
def silu(x):
    x2 = jnp.square(x)
    x4 = jnp.square(x2)
    x6 = x2 * x4
    a, b = _SILU_LEFT, _SILU_MIDDLE
    left = a[2] * x2 + a[1] * x + a[0]
    middle = b[4] * x6 + b[3] * x4 + b[2] * x2 + b[1] * x + b[0]
    return _pieces(x, -8.0, -4.0, 4.0, left, middle)


def _gelu(x):
    x2 = jnp.square(x)
    x3 = x * x2
    x4 = jnp.square(x2)
    x6 = jnp.square(x3)
    a, b = _GELU_LEFT, _GELU_MIDDLE
    left = a[3] * x3 + a[2] * x2 + a[1] * x + a[0]
    middle = b[4] * x6 + b[3] * x4 + b[2] * x2 + b[1] * x + b[0]
    return _pieces(x, -4.0, -1.95, 3.0, left, middle)


@register("gelu_tanh", "puma", 0.02, (-16, 16), "PUMA: 3 comparisons, cubic and even degree-6 pieces")
def gelu_tanh(x):
    return _gelu(x)


@register("gelu_erf", "puma", 0.02, (-16, 16), "PUMA: the same form as its tanh GeLU")
def gelu_erf(x):
    return _gelu(x)


@register("softmax", "puma", 1e-2, (-8, 8), "PUMA: x - max, SPU exp masked at -14, one division per row")
def softmax(x, axis=-1, where=None, initial=None):
    z = x - jnp.max(x, axis, where=where, initial=initial, keepdims=True)
    e = jnp.exp(z) * (z > -14)
    return e / jnp.sum(e, axis, where=where, keepdims=True)
