"""`raympc`: our activations, the cheapest forms we found that keep max abs error <= 5e-3.

Each design (measured figures: `raympc bench activations`; costs per step: blocks.py):
- SiLU, GeLU (tanh and erf): f - relu is even, so a single public polynomial in u = min(|x|, L)
  does the rest once relu and |x| are known. x^2 comes first, so the sign (x < 0) and the clamp
  (x^2 > L^2) are one comparison op: one comparison's rounds, not two in a row (21.0 send actions
  per rank instead of 32.3, for 3% more bytes); the clamped x^2 is u^2 for the polynomial, which
  is evaluated as E(u^2) + u O(u^2), E's terms, relu and u O summed wide and truncated once
  (`blocks.even_odd`, fixed_point.py; x^2 stays wide through the comparison and the clamp).
  SiLU: degree 5 up to |x| = 7.25. GeLU: degree 4 up to |x| = 3.25.
- Mish: f - relu is not even; degree 6 per side, up to 7.25 below zero and 4.5 above (one clamp
  serves both by shifting the positive side); both polynomials from shared powers, their dots
  wide, the sign bit picks and relu joins before the one truncation. Degree 6 rather than 5 (+17 B/element/rank, no more
  rounds) because the shipped Mish U-Net is sensitive to its activation's error: degree 5 (max
  error 4.3e-3) moved its FID proxy by +14.5%, degree 6 (2.6e-3) by +2.3% (README). Plain
  rounding of its coefficients to SPU's fixed point would cost 5.9e-3; see DESIGNS.
- exp (for z <= 0, softmax's case): clamp at -16, a quartic fitted to exp(z / 8) for relative
  accuracy down to -10, three squarings: never negative. A cubic is cheaper but leaves softmax
  2e-3 off on rows of 196 Gaussian logits.
- softmax: row max by a tournament (groups of 4, then all pairs of the last <= 16 where that
  costs at most two comparisons per element: two comparison rounds for rows of 49 instead of
  six), that exp, and each row's sum (in [1, n]) inverted through its quarter octave and that
  piece's quadratic (coefficients times the octave's 2^-j, so Horner's two multiplies per row and
  one of e are all), where SPU's reciprocal takes 57 rounds.
- rsqrt and GroupNorm: built for few rounds, see normalization.py.
The fits are deterministic and made on first use (0.4-0.5 s each, Mish 1.3 s, on the 2-core VM).
"""

from __future__ import annotations

from functools import lru_cache

import jax.numpy as jnp

from . import blocks, normalization
from .fit import SPU_FRACTION_BITS, SignSplitFit, SquaringExp, fit_sign_split, fit_squaring_exp
from .registry import register

# (degree, limit below zero, limit above zero, tail): chosen by `raympc fit` scans, see the README.
# Every design's coefficients are rounded to SPU's fixed point with refits (fit.py): same cost,
# and SPU's error comes out at the float fit's (SiLU: 3.9e-3 with plain rounding, 3.0e-3).
# tail "relu" (f = relu beyond the limit) saves a select over "clamp" where f - relu is even; it
# moves SiLU's best limit from 7.25 to 7.75 (g(L) is then the tail's error) and its max error
# from 3.0e-3 to 3.4e-3, and leaves GeLU's where it was.
DESIGNS = {
    "silu": (5, 7.75, 7.75, "relu"),
    "gelu_tanh": (4, 3.25, 3.25, "relu"),
    "gelu_erf": (4, 3.25, 3.25, "relu"),
    "mish": (6, 7.25, 4.5, "clamp"),
}
EXP_DESIGN = (3, 4, 16.0)  # squarings, degree, clamp
# softmax's row max: groups of 4 (1.5 comparisons per element) until at most 16 values are left,
# then all their pairs in one level if that costs at most 2 comparisons per element of the row:
# rows of 49 take two levels, not three
MAX_FAN_IN, MAX_FINAL = 4, 16


@lru_cache(maxsize=None)
def design(activation: str) -> SignSplitFit:
    degree, limit_neg, limit_pos, tail = DESIGNS[activation]
    return fit_sign_split(activation, degree, 1, limit_neg, limit_pos, fraction_bits=SPU_FRACTION_BITS, tail=tail)


@lru_cache(maxsize=None)
def exp_design() -> SquaringExp:
    return fit_squaring_exp(*EXP_DESIGN)


@register("silu", "raympc", 5e-3, (-16, 16), "sign and clamp in one comparison + degree-5 polynomial in |x|, relu folded in")
def silu(x):
    return design("silu")(x)


@register("gelu_tanh", "raympc", 5e-3, (-16, 16), "sign and clamp in one comparison + degree-4 polynomial in |x|")
def gelu_tanh(x):
    return design("gelu_tanh")(x)


@register("gelu_erf", "raympc", 5e-3, (-16, 16), "sign and clamp in one comparison + degree-4 polynomial in |x|")
def gelu_erf(x):
    return design("gelu_erf")(x)


@register("mish", "raympc", 5e-3, (-16, 16),
          "sign + shifted clamp + degree-6 polynomial per side, coefficients on SPU's grid")
def mish(x):
    return design("mish")(x)


@register("exp", "raympc", 5e-3, (-14, 0), "clamp at -16, quartic, three squarings (inputs <= 0)")
def exp(z):
    return exp_design()(z)


@register("softmax", "raympc", 1e-3, (-8, 8),
          "max by a tournament (fan-in 4, last level all pairs), squaring exp, row sums inverted by quarter-octave quadratics")
def softmax(x, axis=-1, where=None, initial=None):
    if where is not None or initial is not None:
        raise NotImplementedError("raympc softmax does not take `where`/`initial`; mask the logits instead")
    z = x - blocks.row_max_tournament(x, axis=axis, fan_in=MAX_FAN_IN, final=MAX_FINAL)
    e = exp_design()(z)
    return normalization.divide_rows(e, blocks.secret_sum(e, axis=axis, keepdims=True), axis=axis)


@register("rsqrt", "raympc", 2e-3, (0.0625, 1024.0),
          "one comparison against every half octave, piece tables, quadratic by Horner")
def rsqrt(v):
    return normalization.rsqrt(v)


@register("groupnorm", "raympc", None, (-4, 4),
          "statistics in two multiplies, raympc rsqrt's pieces with gamma folded into their coefficients")
def groupnorm(x, num_groups: int = 32, scale=None, bias=None, epsilon: float = 1e-6):
    return normalization.group_norm(x, num_groups, scale, bias, epsilon)
