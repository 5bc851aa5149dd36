"""`cipherdm`: CipherDM's forms exactly as published in its code, flaws included.

Documented flaws (../shared/reference/cipherdm.md):
- exp: a degree-7 Chebyshev series on [-14, 0] that gives exp(0) = 0.9515 and turns negative on
  [-14, -4.49]; its softmax masks x - max <= -14 but can still see a row sum at or below zero.
- SiLU and Mish: four pieces with jumps at the breakpoints; largest errors 0.075 (SiLU, at x = 6)
  and 0.127 (Mish).
"""

from __future__ import annotations

import jax.numpy as jnp

from raympc.activations.registry import register

EXP_CHEBYSHEV = (0.14021878, 0.27541278, 0.22122865, 0.14934221, 0.0907736, 0.04369614, 0.02087868, 0.00996535)


def _chebyshev(t, coeffs):
    """sum c_k T_k(t) by the three-term recurrence."""
    t_prev, t_cur = jnp.ones_like(t), t
    out = coeffs[0] * t_prev + coeffs[1] * t_cur
    for c in coeffs[2:]:
        t_prev, t_cur = t_cur, 2 * t * t_cur - t_prev
        out = out + c * t_cur
    return out


@register("exp", "cipherdm", 0.05, (-14, 0), "Chebyshev degree 7 in x/7 + 1; exp(0) = 0.9515; negative on [-14, -4.49]")
def exp(x):
    return _chebyshev(x / 7 + 1, EXP_CHEBYSHEV)


@register("softmax", "cipherdm", None, (-8, 8),
          "x - max, mask x - max <= -14, Chebyshev exp, one reciprocal per row; row sums can reach <= 0")
def softmax(x, axis=-1, where=None, initial=None):
    z = x - jnp.max(x, axis=axis, keepdims=True)
    e = jnp.where(z > -14, exp(z), 0.0)
    return e / jnp.sum(e, axis=axis, keepdims=True)


def _four_pieces(x, left, middle):
    return jnp.where(x < -6, 0.0,
                     jnp.where(x < -2, left(x),
                               jnp.where(x <= 6, middle(x), x)))


@register("silu", "cipherdm", 0.08, (-16, 16), "3 comparisons, 4 pieces; largest error 0.075 at x = 6")
def silu(x):
    return _four_pieces(
        x,
        lambda v: -0.52212664 - 0.16910363 * v - 0.01420163 * v ** 2,
        lambda v: 0.03453821 + 0.49379432 * v + 0.19784596 * v ** 2 - 0.00602401 * v ** 4 + 0.00008032 * v ** 6,
    )


@register("mish", "cipherdm", 0.13, (-16, 16), "3 comparisons, 4 pieces; largest error 0.127")
def mish(x):
    return _four_pieces(
        x,
        lambda v: -0.55684445 - 0.18375535 * v - 0.01572019 * v ** 2,
        lambda v: 0.07559242 + 0.54902050 * v + 0.20152583 * v ** 2 - 0.00735309 * v ** 4 + 0.00010786 * v ** 6,
    )
