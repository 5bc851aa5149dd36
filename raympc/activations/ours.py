"""`raympc`: our activations, the cheapest forms we found that keep max abs error <= 5e-3.

Each design (measured figures: `raympc bench activations`; costs per step: blocks.py):
- SiLU, GeLU (tanh and erf): f - relu is even, so a single public polynomial in |x| does the rest
  inside |x| <= L once relu and |x| are known, and f = relu + a constant beyond. x^2 comes first, so the sign
  (x < 0) and the range (x^2 > L^2) are one comparison op: one comparison's rounds, not two in a
  row (21.0 send actions per rank instead of 32.3, and 20.0 with |x| and x^4 in one multiply);
  the polynomial is E(x^2) + |x| O(x^2), E's terms and |x| O summed wide, masked by the range bit
  (one select fewer than clamping |x| and x^2 first) and truncated once with relu
  (`blocks.mirror_range`, `blocks.even_odd`).
  SiLU: degree 5 up to |x| = 7.25. GeLU: degree 7 up to |x| = 3.75 (max error 1.1e-4; a quartic,
  c0 + c1|x| + c2 x^2 + x^2 (c3|x| + c4 x^2) without x^4, is cheaper but its 1.7e-3 leaves a
  two-block GPT-2's logits 7e-3 off).
- Mish: f - relu is not even; degree 6 per side in u = x - c, c the centre of the window
  [-8.25, 4.5], f = relu + a constant outside it: the sign and "u^2 > r^2" are one comparison op
  (blocks.sign_and_window); both polynomials from shared powers of u, their dots wide, one op
  picks the side and makes relu, the window's bit masks the polynomial, one truncation. Degree 6 rather than 5 (+17 B/element/rank, no more
  rounds) because the shipped Mish U-Net is sensitive to its activation's error: degree 5 (max
  error 4.3e-3) moved its FID proxy by +14.5%, degree 6 (2.6e-3) by +2.3% (README). Plain
  rounding of its coefficients to SPU's fixed point would cost 5.9e-3; see DESIGNS.
- exp (for z <= 0, softmax's case): clamp at -16, a quartic in z / 8 fitted for relative
  accuracy down to -10, three squarings: never negative. A cubic is cheaper but leaves softmax
  2e-3 off on rows of 196 Gaussian logits; a quartic in z itself has coefficients of a few ulps
  and left rows of 4,096 logits 1.9e-3 off (fit.SquaringExp).
- softmax: the row max, that exp, and each row's sum (in [1, n]) inverted through its quarter
  octave and that piece's quadratic (coefficients times the octave's 2^-j, so Horner's two
  multiplies per row and one of e are all), where SPU's reciprocal takes 57 rounds. The row max
  is per call site the cheaper of two on the session's network (softmax_forms.py): a tournament
  (groups of 4, then all pairs of the last <= 16 where that costs at most two comparisons per
  element: two comparison rounds for rows of 49 instead of six) where rounds cost most, a
  pairwise tree (one comparison and one select per element in all: fewer bytes, a third of the
  compute, log2(n) comparison rounds) elsewhere. `raympc-tournament` and `raympc-lean` fix
  one of them everywhere.
- rsqrt and GroupNorm: built for few rounds, see normalization.py.
The fits are deterministic and made on first use (0.4-0.5 s each, Mish 1.3 s, on the 2-core VM).
"""

from __future__ import annotations

from functools import lru_cache

from raympc.activations import blocks, normalization, softmax_forms
from raympc.activations.fit import SPU_FRACTION_BITS, SignSplitFit, SquaringExp, fit_sign_split, fit_squaring_exp
from raympc.activations.registry import register

# (degree, limit below zero, limit above zero, tail): chosen by `raympc fit` scans, see the README.
# Every design's coefficients are rounded to SPU's fixed point with refits (fit.py): same cost,
# and SPU's error comes out at the float fit's (SiLU: 3.9e-3 with plain rounding, 3.0e-3).
# tail "relu" (f = relu + a constant offset beyond the limits) saves a select over "clamp" where
# f - relu is even, and with the offset in the middle of f - relu's range out there, SiLU keeps
# its limit at 7.25 and its max error falls from 3.0e-3 to 2.6e-3 (3.4e-3 at its best limit,
# 7.75, with no offset); GeLU's stays where it was. For Mish it makes the sign and the window one
# comparison op instead of two in a row (the clamp needed |x| first), and its error falls from
# 2.6e-3 (clamped at 7.25) to 2.4e-3 (window [-8.25, 4.5]).
DESIGNS = {
    "silu": (5, 7.25, 7.25, "relu"),
    # GeLU at degree 7 (fit error 1.1e-4 / 1.7e-4) rather than 4 (1.7e-3): the same multiplies as
    # degree 5 or 6, about 35 B/element/rank more than the quartic, and transformers' GPT-2 logits
    # (2 blocks, causal mask) come within 1.1e-3 of plaintext instead of 7.2e-3 (the quartic)
    "gelu_tanh": (7, 3.75, 3.75, "relu"),
    "gelu_erf": (7, 3.75, 3.75, "relu"),
    "mish": (6, 8.25, 4.5, "relu"),
}
EXP_DESIGN = (3, 4, 16.0)  # squarings, degree, clamp


@lru_cache(maxsize=None)
def design(activation: str) -> SignSplitFit:
    degree, limit_neg, limit_pos, tail = DESIGNS[activation]
    return fit_sign_split(activation, degree, 1, limit_neg, limit_pos, fraction_bits=SPU_FRACTION_BITS, tail=tail)


@lru_cache(maxsize=None)
def exp_design() -> SquaringExp:
    return fit_squaring_exp(*EXP_DESIGN)


@register("silu", "raympc", 5e-3, (-16, 16), "sign and range in one comparison + degree-5 polynomial in |x|, masked; relu beyond 7.25")
def silu(x):
    return design("silu")(x)


@register("gelu_tanh", "raympc", 5e-3, (-16, 16), "sign and range in one comparison + degree-7 polynomial in |x|, masked; relu beyond 3.75")
def gelu_tanh(x):
    return design("gelu_tanh")(x)


@register("gelu_erf", "raympc", 5e-3, (-16, 16), "sign and range in one comparison + degree-7 polynomial in |x|, masked; relu beyond 3.75")
def gelu_erf(x):
    return design("gelu_erf")(x)


@register("mish", "raympc", 5e-3, (-16, 16),
          "sign and window in one comparison + degree-6 polynomial per side, masked; relu outside [-8.25, 4.5]")
def mish(x):
    return design("mish")(x)


@register("exp", "raympc", 5e-3, (-14, 0), "clamp at -16, quartic, three squarings (inputs <= 0)")
def exp(z):
    return exp_design()(z)


@register("softmax", "raympc", 1e-3, (-8, 8),
          "row max by a tournament where rounds cost most, by a pairwise tree elsewhere (priced per call site on the "
          "session's network), squaring exp, row sums inverted by quarter-octave quadratics",
          form=softmax_forms.describe)
def softmax(x, axis=-1, where=None, initial=None):
    row_max = softmax_forms.for_shape(x.shape, axis)
    return _softmax(x, axis, where, initial, row_max.fan_in, row_max.final)


@register("softmax", "raympc-tournament", 1e-3, (-8, 8),
          "raympc's softmax with the row max by a tournament at every call site: fewest rounds (latency-bound runs)")
def softmax_tournament(x, axis=-1, where=None, initial=None):
    return _softmax(x, axis, where, initial, softmax_forms.TOURNAMENT.fan_in, softmax_forms.TOURNAMENT.final)


@register("softmax", "raympc-lean", 1e-3, (-8, 8),
          "raympc's softmax with the row max by a pairwise tree at every call site: fewest bytes, least compute")
def softmax_lean(x, axis=-1, where=None, initial=None):
    return _softmax(x, axis, where, initial, softmax_forms.TREE.fan_in, softmax_forms.TREE.final)


def _softmax(x, axis: int, where, initial, fan_in: int, final: int):
    if where is not None or initial is not None:
        raise NotImplementedError("raympc softmax does not take `where`/`initial`; mask the logits instead")
    z = x - blocks.row_max_tournament(x, axis=axis, fan_in=fan_in, final=final)
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
