"""`raympc` normalisation: a reciprocal square root and a GroupNorm built for few rounds.

Under a WAN link a secure step's time is mostly dependent messages (one one-way delay each). On a
latency-only link (10 Gbit/s, 20 ms one way), time over the delay gives ~86 of them for flax's
GroupNorm under SPU (its variance clamp alone is a comparison, ~8.5) and ~52 for SPU's `rsqrt`;
in the MNIST U-Net's step under `wan` with stock forms, GroupNorm took 25.5 s of 81.7
(`workloads/specs/wan-step.yaml`).
The pieces here:

- `rsqrt(v)`: one comparison of v against the start of every half octave 2^(k/2) (k/2 in
  [LO, HI)) at once gives v's edge bits, and one integer dot product looks up its piece's row
  of public tables (`piece_tables`): 2^-j (so m = v 2^-j lies in [1, 2)) and the piece's
  quadratic in m, its coefficients already times 2^(-j/2). Horner's rule then costs two
  multiplies: 17 send actions per rank instead of SPU's 47 (one quartic per octave, by powers,
  a dot and a multiply by the root, took 22). Relative error 4e-4 where SPU's fixed point is
  fine; see `power_tables` for large v. Inputs in [-2^LO, 2^LO) (a variance of zero, or
  slightly negative from fixed-point round-off) give a large finite value, between 128 and 374
  (the first piece's quadratic at m in [-1, 1], times 2^(-LO/2)), instead of rsqrt's blow-up, so
  GroupNorm needs no clamp of the variance (flax's costs a comparison); its centred input is ~0
  there.
- `group_norm`: each group's sum of squares as one integer matmul (`fixed_point.row_dots`: a
  share per group is sent where squaring sent one per element, 8 B per element and rank less) and
  its mean as a local multiple of the sum, both wide, so that only the per-group sums are
  truncated, which bounds E[x^2] below 2^27 / n: 85,600 for the MNIST U-Net's groups of 1,568;
  then mean^2 and E[x^2]'s 1/n in one multiply; its own piece tables (eight linear pieces per
  octave: the same accuracy as rsqrt's two quadratics, 3.5e-4, with one Horner multiply instead
  of two), then m and gamma * C_k in one multiply, Horner's one, and the centred input's: 22.7
  send actions per rank instead of flax's 70 (`raympc bench activations`), bytes 1.14x flax's
  (the comparisons against 256 pieces, per group). Its variances below 2^LO give 128-248 times
  the centred input, which is ~0 there.
- No public value joins a secret and nothing is summed by a reduce (each would cost a p2a
  message all ranks wait for, see blocks.py): 1/n is a locally made sharing, sums are pairwise,
  and the piece tables' always-true edge bit comes from a sentinel threshold in the same
  comparison.
"""

from __future__ import annotations

from functools import lru_cache

import jax.numpy as jnp
import numpy as np

from raympc.activations import blocks
from raympc.activations.fit import SPU_FRACTION_BITS, minimax_fit
from raympc.runtime import fixed_point

LO, HI = -14, 18  # octaves normalised exactly: v in [2^LO, 2^HI)
RSQRT_PIECES, RSQRT_DEGREE = 2, 2  # per octave: 4.0e-4 relative (one quartic per octave: 1.7e-4)
# GroupNorm's own pieces: linear, so Horner is one multiply (a round per call, 18 calls a U-Net
# step), and eight per octave keep the fit at 3.5e-4; the price is 4x the comparisons, per group.
GROUPNORM_PIECES, GROUPNORM_DEGREE = 8, 1
RECIPROCAL_PIECES, RECIPROCAL_DEGREE = 4, 2  # per octave: 1.6e-4 relative (a quintic: 1.3e-4)


@lru_cache(maxsize=None)
def power_pieces(exponent: float, pieces: int, degree: int) -> np.ndarray:
    """m^exponent on each [2^(i/P), 2^((i+1)/P)), minimax in relative error: one row per piece,
    the coefficients of m^0 .. m^degree (deterministic)."""
    rows = []
    for i in range(pieces):
        m = np.linspace(2.0 ** (i / pieces), 2.0 ** ((i + 1) / pieces), 2001)
        rows.append(minimax_fit(np.vander(m, degree + 1, increasing=True), m ** exponent, m ** -exponent))
    return np.array(rows)


def piece_tables(v, lo: int, hi: int, per_octave: int, table: np.ndarray) -> tuple:
    """The columns of row p of the public `table`, p being v's piece: v in [2^(j + i/P), 2^(j + (i+1)/P)),
    p = (j - lo) P + i for j in [lo, hi); v below 2^lo counts as the first piece, above 2^hi as
    the last. One comparison of v against every piece's lower end, all at once.

    Written for the fewest rounds and little compute: v's edge bits (v >= each piece's lower
    end, and v >= -2^30, a sentinel that is always true: joining a public one would cost a p2a
    round) are converted to arithmetic shares once, as a whole, and one integer-by-public dot
    product sums the table's steps up to v's piece: row p = row 0 + sum over i <= p of
    (row i - row i-1). The rows are first rounded to SPU's fixed point, so the steps are exact in
    it and the sum telescopes to row p exactly; each step goes in as two float32 columns (its
    float32 value and the remainder), which SPU encodes exactly. (A one-hot by slices of the bits
    would convert each slice separately, a b2a round each; one by an (n + 1) x n integer matmul
    cost ~25 ms of SPU compute per rank for GroupNorm's 256 pieces.)
    """
    n = (hi - lo) * per_octave
    table = np.asarray(table, np.float64)
    if table.shape[0] != n:
        raise ValueError(f"table has {table.shape[0]} rows for {n} pieces")
    starts = 2.0 ** (lo + np.arange(1, n, dtype=np.float64) / per_octave)
    thresholds = np.concatenate([[-(2.0 ** 30)], starts])
    edges = blocks.bit(v[..., None] >= jnp.asarray(thresholds, jnp.float32))
    looked_up = edges @ jnp.asarray(_exact_steps(table))
    cols = table.shape[1]
    return tuple(looked_up[..., i] + looked_up[..., cols + i] for i in range(cols))


def _exact_steps(table: np.ndarray) -> np.ndarray:
    """[row 0, row 1 - row 0, ...] of `table` on SPU's fixed-point grid, as float32 columns
    [high parts | low parts] whose sums are exact: a float32 at or above 2^5 is a multiple of the
    grid (2^-18), and what it leaves over is a small multiple, exact in float32 too."""
    grid = 2.0 ** -SPU_FRACTION_BITS
    steps = np.diff(np.round(table / grid) * grid, axis=0, prepend=0.0)
    high = steps.astype(np.float32)
    low = (steps - high).astype(np.float32)
    if not np.array_equal(high.astype(np.float64) + low, steps):
        raise ValueError("piece table too large for exact float32 steps")
    return np.concatenate([high, low], axis=1)


def power_tables(v, exponent: float, lo: int, hi: int, pieces: int, degree: int) -> tuple:
    """(2^-j, C_0, .., C_D) for v's piece: v^exponent = sum_k C_k m^k, m = v 2^-j in [1, 2).

    C_k = c_k,i 2^(j * exponent) folds the octave's factor into the piece's coefficients, so
    evaluating needs m and Horner's rule only: D + 1 multiplies after the lookup, instead of
    powers, a dot and a multiply by the octave's factor. The price is precision where that factor
    is small: C_k and Horner's partial sums are then small too, and SPU's fixed point (2^-18) is
    absolute, so rsqrt's relative error grows from the fit's 4e-4 to 1.2e-3 at most on [0.05,
    2000] and 3e-3 at 2^17.5 (a reciprocal's result, times e <= 1 in softmax, keeps its absolute
    error). 2^-j is exact down to 2^-18, SPU's resolution, hence HI = 18.
    """
    coeffs = power_pieces(exponent, pieces, degree)
    j = np.repeat(np.arange(lo, hi, dtype=np.float64), pieces)
    table = np.column_stack([2.0 ** -j, np.tile(coeffs, (hi - lo, 1)) * 2.0 ** (j * exponent)[:, None]])
    return piece_tables(v, lo, hi, pieces, table)


def rsqrt(v):
    scale, *coeffs = power_tables(v, -0.5, LO, HI, RSQRT_PIECES, RSQRT_DEGREE)
    return blocks.horner(v * scale, coeffs)


def divide_rows(e, total, axis: int = -1):
    """e / total for positive row sums total >= 1 (softmax's, kept as a size-1 `axis`): each
    total's quarter octave, its normalised m and the piece's quadratic (Horner, per row), then
    one multiply of e. Totals up to the row length are normalised exactly."""
    e = jnp.moveaxis(e, axis, -1)
    total = jnp.moveaxis(total, axis, -1)[..., 0]
    scale, *coeffs = power_tables(total, -1.0, 0, int(np.ceil(np.log2(e.shape[-1]))) + 1,
                                  RECIPROCAL_PIECES, RECIPROCAL_DEGREE)
    inverse = blocks.horner(total * scale, coeffs)
    return jnp.moveaxis(e * inverse[..., None], -1, axis)


def group_norm(x, num_groups: int = 32, scale=None, bias=None, epsilon: float = 1e-6):
    """GroupNorm over all axes but the first (batch) and the channel groups of the last."""
    b, c = x.shape[0], x.shape[-1]
    gs = c // num_groups
    xg = x.reshape(b, -1, num_groups, gs)
    n = xg.shape[1] * gs
    k = b * num_groups
    s1 = blocks.secret_sum(xg, (1, 3)).reshape(-1)
    inv_n = blocks.secret_constant(s1, 1.0 / n)  # joins secrets below: shared without a round
    # each group's sum of squares in one integer matmul (fixed_point.row_dots: a share per group
    # is sent, not one per square) and its mean (S1 / n, a local multiple), both wide; then both
    # in one truncation per group
    rows = jnp.transpose(xg, (0, 2, 1, 3)).reshape(k, n)
    stats = fixed_point.narrow(jnp.concatenate([fixed_point.row_dots(rows, rows), fixed_point.scaled(s1, 1.0 / n)]))
    s2, mean = stats[:k], stats[k:]
    # one multiply: E[x^2] = S2 / n and mean^2
    second = jnp.concatenate([s2, mean]) * jnp.concatenate([inv_n, mean])
    var = (second[:k] - second[k:] + epsilon).reshape(b, num_groups)
    scale_t, *coeffs = power_tables(var, -0.5, LO, HI, GROUPNORM_PIECES, GROUPNORM_DEGREE)
    if scale is None:  # gamma = 1: the piece's coefficients are the multipliers' own
        mul = blocks.horner(var * scale_t, coeffs)[..., None]
    else:
        gamma_b = jnp.broadcast_to(scale.reshape(num_groups, gs), (b, num_groups, gs))
        coeffs_b = [jnp.broadcast_to(ck[..., None], (b, num_groups, gs)).reshape(-1) for ck in coeffs]
        # one multiply: the normalised variance m, and gamma * C_k for every coefficient
        third = jnp.concatenate([var.reshape(-1)] + coeffs_b) * \
            jnp.concatenate([scale_t.reshape(-1)] + [gamma_b.reshape(-1)] * len(coeffs_b))
        size = b * num_groups * gs
        gains = [third[k + i * size: k + (i + 1) * size].reshape(b, num_groups, gs) for i in range(len(coeffs_b))]
        mul = blocks.horner(third[:k].reshape(b, num_groups, 1), gains)
    y = (xg - mean.reshape(b, 1, num_groups, 1)) * mul[:, None]
    if bias is not None:
        y = y + bias.reshape(num_groups, gs)
    return y.reshape(x.shape)
