"""Building blocks for cheap secure activations, written so SPU picks its cheapest kernels.

Costs below are rank-0 bytes per element under ABY3/FM64, read from SPU's MPC-level profile
(`raympc bench activations` re-measures the composed functions):

- a comparison (`msb_a2b`) costs 36; a fixed-point multiply 20 (`mul_aa` 8 + `trunc_a` 12);
  a multiply by a public fixed-point constant 12 (the truncation alone).
- `jnp.where(pred, a, b)` on its own lowers to `mul_a1b`, 24. A predicate used by two selects, or
  turned into an int32 and multiplied arithmetically, is converted once (`b2a`, 8) and then each use
  is an integer-by-fixed-point multiply with no truncation (`mul_aa`, 8).
- A dot product with public coefficients truncates once (12), whatever its length.
- A product kept wide (`fixed_point.product`: integer ring elements, 36 fraction bits) is `mul_aa`
  alone (8); sums and public multiples of wide values are local, and one truncation ends them.
- A public array joined to a secret one (`jnp.concatenate`, a mixed multiply's operand) is shared
  by `p2a`: a few bytes, but one message every rank waits for, a full one-way delay on a WAN.
  `secret_constant` makes the same sharing locally. `jnp.sum` pays one too, sealing its zero
  init; `secret_sum` adds pairwise instead.

Rounds matter as much on a WAN: SPU runs ops one after another, so independent work stacked into
one op pays one op's messages (a comparison: 8 send actions per rank; a multiply with its
truncation ~2.7). Slices of one comparison's bits used in different ops are converted to
arithmetic shares separately, a `b2a` round each; an integer dot on the whole bit tensor
converts it once.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from raympc.runtime import fixed_point


def bit(pred) -> jnp.ndarray:
    """A comparison result as an int32 0/1 tensor, so SPU converts it to arithmetic shares once."""
    return pred.astype(jnp.int32)


def secret_constant(like, value: float) -> jnp.ndarray:
    """`value` in `like`'s shape and dtype, secret-shared without a message.

    `like - like` is a sharing of zero computed locally by every party, and adding a public value
    is local too; SPU's `p2a` would cost a round for the same public information.
    """
    return (like - like) + jnp.asarray(value, like.dtype)


def secret_sum(x, axis: int | tuple[int, ...] = -1, keepdims: bool = False) -> jnp.ndarray:
    """`jnp.sum(x, axis)` by pairwise adds of slices: local, where a reduce would seal its public
    zero init with a p2a round first."""
    return _pairwise(x, axis, keepdims, jnp.add)


def secret_all(x, axis: int | tuple[int, ...] = -1, keepdims: bool = False) -> jnp.ndarray:
    """`jnp.all(x, axis)` by pairwise ANDs: the same ceil(log2 n) AND rounds, without the reduce's
    p2a of its public init."""
    return _pairwise(x, axis, keepdims, jnp.logical_and)


def _pairwise(x, axis, keepdims: bool, combine) -> jnp.ndarray:
    axes = tuple(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))
    kept = [d for d in range(x.ndim) if d not in axes]
    out_shape = tuple(1 if d in axes else x.shape[d] for d in range(x.ndim)) if keepdims else \
        tuple(x.shape[d] for d in kept)
    y = jnp.transpose(x, kept + list(axes)).reshape(tuple(x.shape[d] for d in kept) + (-1,))
    while y.shape[-1] > 1:
        half = y.shape[-1] // 2
        paired = combine(y[..., :half], y[..., half: 2 * half])
        if y.shape[-1] % 2:  # the odd one out joins the last pair
            paired = jnp.concatenate([paired[..., :-1], combine(paired[..., -1:], y[..., -1:])], axis=-1)
        y = paired
    return y.reshape(out_shape)


def sign_split(x, shift_neg: float = 0.0, shift_pos: float = 0.0):
    """(x < 0, |x| + shift of its side, relu(x)) from one comparison (60).

    Two selects on one predicate make SPU convert it once and multiply as integers, so the second
    output costs 8; the shifts ride along in the select for free.
    """
    neg = x < 0
    return neg, jnp.where(neg, shift_neg - x, x + shift_pos), jnp.where(neg, 0.0, x)


def clamp_above(v, limit: float):
    """min(v, limit): one comparison and one select (60); `v - result` is relu(v - limit) for free."""
    return jnp.where(v > limit, limit, v)


def clamp_below(v, limit: float):
    """max(v, limit): one comparison and one select (60)."""
    return jnp.where(v < limit, limit, v)


def horner(u, coeffs: Sequence) -> jnp.ndarray:
    """sum c_k u^k by Horner: one multiply per degree (20 each; the first is 12 if c_D is public).
    The coefficients may be secret too (table lookups, normalization.py).

    One round per degree, against `polynomial`'s ceil(log2 degree) + 1, but better conditioned
    where coefficients are a few fixed-point ulps and u is large: a quartic in z in [-16, 0]
    has c_4 ~ 4.9e-6, 1.3 ulps of 2^-18. Horner's first multiply is a splat below 2^-16, which
    SPU encodes with more fraction bits; a public dot encodes it on the 2^-18 grid. Better still
    is a better-scaled variable: exp's quartic (fit.SquaringExp) is in z / 8.
    """
    acc = coeffs[-1] * u + coeffs[-2]
    for c in reversed(coeffs[:-2]):
        acc = acc * u + c
    return acc


def polynomial(u, coeffs: Sequence) -> jnp.ndarray:
    """sum c_k u^k for public coefficients: the powers in ceil(log2 degree) multiply rounds, then
    one public dot. Horner's rule costs the same bytes in degree rounds (see `horner`)."""
    if len(coeffs) == 1:
        return jnp.zeros_like(u) + coeffs[0]
    return public_dot(powers(u, len(coeffs) - 1), coeffs[1:]) + coeffs[0]


def mirror_clamp(x, limit: float):
    """(|x|, min(|x|, limit), min(x^2, limit^2)) with both comparisons in one op (rounds of one).

    x^2 comes first, so "x < 0" and "x^2 > limit^2" do not depend on each other and SPU compares
    the two stacked at once, instead of |x| first and then |x| > limit. The multiply is not extra:
    a polynomial in the clamped |x| takes its even powers from the clamped x^2 (`even_odd`).
    x^2 stays wide (fixed_point.py) through the comparison and the clamp, and is truncated once,
    clamped: SPU's multiply would truncate it before. The sign and the clamp bits are converted
    to arithmetic shares in one op; the three outputs are then integer-by-fixed-point multiplies
    (no truncation). 8 + 72 + 21 + 16 + 8 + 9 bytes. The wide square bounds |x| below 11,585.
    """
    square = fixed_point.product(x, x)
    limit_sq = fixed_point.constant(limit * limit)
    bits = bit(jnp.stack([x, limit_sq - square]) < 0)  # [x < 0, x^2 > limit^2]
    factors = 1 - bits * jnp.asarray([2, 1], jnp.int32).reshape((2,) + (1,) * x.ndim)
    t_s = factors * jnp.stack([x, square - limit_sq])  # [|x|, min(x^2, L^2) - L^2]
    t = t_s[0]
    return t, factors[1] * (t - limit) + limit, fixed_point.narrow(t_s[1] + limit_sq)


def mirror_range(x, limit: float, fourth: bool = False):
    """(|x|, [x^2] or [x^2, x^4] with `fourth`, keep = [x^2 <= limit^2] as an int 0/1) with both
    comparisons in one op.

    For forms that are relu beyond the limit (up to a constant, see even_odd's `outside`): the
    polynomial is evaluated on the unclamped |x| and x^2 and masked by `keep`
    (fixed_point.masked), which needs one select fewer than clamping |x| and x^2 first
    (`mirror_clamp`). x^2 does not wait for the comparison, and out of range its powers may
    overflow the ring: the mask zeroes them exactly. |x| = (1 - 2 [x < 0]) x and x^4 are one
    multiply (fixed_point.products), a round fewer than one each; even_odd makes any higher
    powers (a quartic needs none). 8 (x^2, wide) + 9 (its truncation) + 72 + 21 + 8 (|x|) bytes;
    |x| below 11,585 (the wide square).
    """
    _, square, neg, keep = sign_and_window(x, limit, limit)  # a window centred on 0: u = x
    pairs = [(x, 1 - 2 * neg)] + ([(square, square)] if fourth else [])
    t, *wide_fourth = fixed_point.products(pairs)
    return t, [square] + [fixed_point.narrow(w) for w in wide_fourth], keep


def sign_and_window(x, limit_neg: float, limit_pos: float):
    """(u = x - c, u^2, [x < 0], keep = [-limit_neg <= x <= limit_pos]), the bits as int 0/1,
    with both comparisons in one op: c is the window's centre, so the window is u^2 <= r^2.

    For sided forms that are relu beyond their window (up to a constant): the sides' polynomials
    in u are evaluated unclamped and masked by `keep` (fixed_point.masked), where clamping needs
    the sign first and the clamp's comparison after it (two comparison ops in a row). u^2 is
    wide through the comparison (fixed_point.py) and then truncated once; it is the powers'
    first step (`powers(u, degree, square=...)`). 8 + 72 + 21 + 9 bytes; |u| below 11,585.
    """
    centre, radius = (limit_pos - limit_neg) / 2, (limit_pos + limit_neg) / 2
    u = x - centre
    square = fixed_point.product(u, u)
    bits = bit(jnp.stack([x, fixed_point.constant(radius * radius) - square]) < 0)  # [x < 0, outside]
    flags = 1 - bits  # [x >= 0, inside]: converted to arithmetic shares as a whole, once
    return u, fixed_point.narrow(square), 1 - flags[0], flags[1]


def even_odd(u, s, coeffs: Sequence[float], extra: tuple | None = None, keep=None,
             outside: float = 0.0) -> jnp.ndarray:
    """sum c_k u^k as E(s) + u O(s) for public coefficients (on SPU's grid), s = u^2 given (see
    mirror_clamp), or the list of its first powers [s, s^2, ...] (see mirror_range).

    O(s) is a public dot, truncated once because it multiplies u; u O(s), E's terms (public
    multiples of s's powers) and `extra=(y, w)` (w * y, so a term such as relu(x) / 2 costs no
    truncation of its own) are summed wide (fixed_point.py) and truncated together. Degree 5
    costs 45 bytes per element and rank (s^2, O's dot, u * O, the sum's truncation), where
    truncating E's dot on its own cost 54, and Horner 92. Degrees 3 and 4 are c0 + c1 u + c2 s +
    s (c3 u + c4 s) instead: no s^2, so a quartic costs 26 (the inner dot's truncation, s times
    it, the sum's truncation). A public dot encodes c3 and c4 on SPU's 2^-18 grid: scale u so
    that they are not a few ulps (see `horner`). `keep` (an int 0/1, see mirror_range)
    masks the polynomial, not `extra`, before the truncation: 8 more; where keep is 0 the
    polynomial's place takes the public `outside` instead, at no cost (its constant term gives
    it back inside).
    """
    deg = len(coeffs) - 1
    powers = list(s) if isinstance(s, (list, tuple)) else [s]
    constant = coeffs[0] - (outside if keep is not None else 0.0)
    if deg in (3, 4):
        # c0 + c1 u + c2 s + s (c3 u + c4 s): the inner dot's truncation and one wide product,
        # where E(s) + u O(s) needs s^2 too at degree 4 (17 bytes and a round more)
        terms, weights = [u, powers[0]][: deg - 2], [float(c) for c in coeffs[3:]]
        inner = _public_dot(terms, weights)
        poly = fixed_point.product(powers[0], inner) + fixed_point.scaled(u, float(coeffs[1])) + \
            wide_dot(powers[:1], [float(coeffs[2])], constant)
    else:
        while len(powers) < deg // 2:
            powers.append(powers[-1] * powers[0])
        even_w = [float(c) for c in coeffs[2::2]]
        odd_w = [float(c) for c in coeffs[3::2]]
        if odd_w:
            u_odd = fixed_point.product(u, _public_dot(powers[: len(odd_w)], odd_w) + coeffs[1])
        else:
            u_odd = fixed_point.scaled(u, float(coeffs[1]))
        poly = u_odd + wide_dot(powers[: len(even_w)], even_w, constant)
    if keep is not None:
        poly = fixed_point.masked(keep, poly) + fixed_point.constant(outside)
    if extra is not None:
        poly = poly + fixed_point.scaled(extra[0], float(extra[1]))
    return fixed_point.narrow(poly)


def wide_dot(terms: Sequence, coeffs: Sequence[float], constant: float = 0.0) -> jnp.ndarray:
    """constant + sum c_i * terms_i, wide (fixed_point.py): public multiples and sums only, so no
    bytes and no round; the caller truncates once, after whatever else it adds."""
    total = fixed_point.constant(float(constant))
    for y, c in zip(terms, coeffs):
        total = total + fixed_point.scaled(y, float(c))
    return total


def _public_dot(terms: Sequence, weights: Sequence[float]):
    """sum w_i * terms_i as one dot with a public vector: one truncation for the lot."""
    if len(terms) == 1:
        return terms[0] * weights[0]
    stacked = jnp.stack(terms, axis=-1)
    return stacked @ jnp.asarray(weights, dtype=stacked.dtype)


def public_dot(terms: Sequence, weights) -> jnp.ndarray:
    """terms (stacked on the last axis) times a public matrix: one truncation per output column."""
    return jnp.stack(terms, axis=-1) @ jnp.asarray(weights, dtype=jnp.float32)


def powers(m, degree: int, square=None) -> list:
    """[m, m^2, ..., m^degree] in ceil(log2(degree)) multiplies: each round multiplies the highest
    power so far by all lower ones in one op (SPU pays rounds per op, not per element). `square`:
    m^2 if it is already known (one round fewer)."""
    out = [m] if square is None or degree < 2 else [m, square]
    while len(out) < degree:
        top = out[-1]
        lower = out[: min(len(out), degree - len(out))]
        more = top[..., None] * jnp.stack(lower, axis=-1)
        out += [more[..., i] for i in range(len(lower))]
    return out


def tournament_fan_ins(n: int, fan_in: int = 4, final: int = 1, final_pairs: float = 2.0) -> list[int]:
    """Each level's group size for a max over n values: `fan_in` per group, except that once at
    most `final` values are left, and comparing all their pairs costs at most `final_pairs`
    comparisons per value of the row, one last level compares them all.

    The last levels hold few values, so that level saves whole levels for few bytes: rows of 49
    take [4, 13], two levels where fan-in 4 alone takes three. The pairs bound keeps short rows
    (SD's 8 text tokens, 16 latent positions) on fan-in 4, where all pairs would cost 3.5 and
    7.5 comparisons per value, and keeps the bytes per value near-constant across row lengths.
    """
    sizes = []
    left = n
    while left > 1:
        if left <= final and left * (left - 1) / 2 <= final_pairs * n:
            sizes.append(left)
            break
        sizes.append(min(fan_in, left))
        left = -(-left // fan_in)
    return sizes


def row_max_tournament(x, axis: int = -1, fan_in: int = 4, final: int = 1):
    """max along `axis` in a few levels of comparisons instead of log2(n) (`tournament_fan_ins`).

    Each group compares all its pairs at once; the element that beats the others (ties go to the
    lower index, so exactly one wins) is picked by a one-hot integer dot. A level of fan-in f costs
    (f - 1) / 2 comparisons per element and ceil(log2(f - 1)) AND rounds after its comparison,
    against a pairwise tree's one comparison per element and none (fan_in=2).
    """
    x = jnp.moveaxis(x, axis, -1)
    for size in tournament_fan_ins(x.shape[-1], fan_in, final):
        x = _tournament_level(x, size)
    return jnp.moveaxis(x, -1, axis)


def _tournament_level(x, fan_in: int):
    """The maxima of consecutive groups of `fan_in` along the last axis (the last group padded)."""
    n = x.shape[-1]
    groups = -(-n // fan_in)
    if groups * fan_in != n:
        # pad with a value below any logit; it never wins against a real entry
        pad = jnp.broadcast_to(secret_constant(x[..., :1], -(2.0 ** 24)),
                               x.shape[:-1] + (groups * fan_in - n,))
        x = jnp.concatenate([x, pad], axis=-1)
    g = x.reshape(x.shape[:-1] + (groups, fan_in))
    if fan_in == 2:  # one select per pair (a multiply by the bit) instead of a one-hot dot of two
        return jnp.where(g[..., 0] < g[..., 1], g[..., 1], g[..., 0])
    pairs = [(i, j) for i in range(fan_in) for j in range(i + 1, fan_in)]
    first = np.array([i for i, _ in pairs])
    second = np.array([j for _, j in pairs])
    less = g[..., first] < g[..., second]  # (…, pairs): x_i < x_j for i < j
    # i beats j (j > i) when not x_i < x_j; i beats j (j < i) when x_j < x_i: one gather from
    # [less, not less] (a slice and a stack per term would be hundreds of SPU ops at fan-in 13)
    beats_at = np.array([[len(pairs) + p if a == i else p for p, (a, b) in enumerate(pairs) if i in (a, b)]
                         for i in range(fan_in)])
    beats = jnp.concatenate([less, ~less], axis=-1)[..., beats_at]  # (…, groups, fan_in, fan_in - 1)
    wins = bit(secret_all(beats, axis=-1))  # (…, groups, fan_in) one-hot
    return secret_sum(wins * g, axis=-1)
