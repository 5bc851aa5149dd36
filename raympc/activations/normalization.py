"""`raympc` normalisation: a reciprocal square root and a GroupNorm built for few rounds.

Under a WAN link a secure step's time is mostly dependent messages (one one-way delay each). On a
latency-only link (10 Gbit/s, 20 ms one way), time over the delay gives ~86 of them for flax's
GroupNorm under SPU (its variance clamp alone is a comparison, ~8.5) and ~52 for SPU's `rsqrt`;
in the MNIST U-Net's step under `wan` with stock forms, GroupNorm took 25.5 s of 81.7
(`workloads/specs/wan-step.yaml`).
The pieces here:

- `rsqrt(v)`: one comparison of v against every power of two 2^k (k in [LO, HI)) at once gives
  v's octave j as a one-hot int tensor; public tables give 2^-j and 2^(-j/2), so m = v 2^-j lies
  in [1, 2); a quartic (powers m^2, then m^3 and m^4 in one multiply) gives m^-1/2 to 1.7e-4
  relative, times 2^(-j/2): 22 send actions per rank instead of SPU's 47. The tables are exact
  powers of two down to 2^-18, SPU's fixed-point resolution, hence HI = 18. Inputs in
  [-2^LO, 2^LO) (a variance of zero, or slightly negative from fixed-point round-off) give a
  large finite value, at most 2^(-LO/2) p(-1) ~ 712, instead of rsqrt's blow-up, so GroupNorm
  needs no clamp of the variance (flax's costs a comparison); its centred input is ~0 there.
- `group_norm`: the statistics in two multiplies (x^2 and the mean's 1/n in one, then mean^2
  and E[x^2]'s 1/n in one), the octave tables, then m and R*gamma in one multiply: 30 send
  actions per rank instead of flax's 70 (`raympc bench activations`), bytes within 10% of
  flax's. A 2-D matmul would give the sum of squares for almost no bytes, but SPU's
  (16 x 3,136) @ (3,136 x 16) matmul costs ~0.6 s of compute per call here, more than the bytes
  it saves take on a 400 Mbit/s link.
- No public value joins a secret and nothing is summed by a reduce (each would cost a p2a
  message all ranks wait for, see blocks.py): 1/n is a locally made sharing, sums are pairwise,
  and the octave tables' edge bits come from sentinel thresholds in the same comparison.
"""

from __future__ import annotations

from functools import lru_cache

import jax.numpy as jnp
import numpy as np

from . import blocks

LO, HI = -14, 18  # octaves normalised exactly: v in [2^LO, 2^HI)
RSQRT_DEGREE = 4
RECIPROCAL_DEGREE = 5


@lru_cache(maxsize=None)
def rsqrt_coefficients(degree: int = RSQRT_DEGREE) -> tuple[float, ...]:
    """m^-1/2 on [1, 2]: least squares in the Chebyshev basis, weighted for relative error (deterministic)."""
    m = np.linspace(1.0, 2.0, 4001)
    f = m ** -0.5
    fit = np.polynomial.chebyshev.Chebyshev.fit(m, f, degree, w=1.0 / f)
    return tuple(float(c) for c in fit.convert(kind=np.polynomial.Polynomial).coef)


@lru_cache(maxsize=None)
def reciprocal_coefficients(degree: int = RECIPROCAL_DEGREE) -> tuple[float, ...]:
    """1/m on [1, 2], relative error 1.3e-4 at degree 5 (6.8e-4 at 4 is too loose for softmax)."""
    m = np.linspace(1.0, 2.0, 4001)
    fit = np.polynomial.chebyshev.Chebyshev.fit(m, 1.0 / m, degree, w=m)
    return tuple(float(c) for c in fit.convert(kind=np.polynomial.Polynomial).coef)


def octave_tables(v, lo: int, hi: int, *exponents: float) -> tuple:
    """2^(-j * e) for each exponent e, j being v's octave in [lo, hi), from one comparison of v
    against every power of two at once; v below 2^lo counts as octave lo, above 2^hi as hi - 1.

    Written for the fewest rounds: sentinel thresholds that no input crosses (v >= -2^30 always,
    v >= 2^40 never) give the edge bits from the same comparison (joining public ones and zeros
    would cost a p2a round), and the one-hot and the table lookups are integer-by-public dot
    products, so the comparison bits are converted to arithmetic shares once (slices of them
    would be converted separately, a round each).
    """
    thresholds = np.concatenate([[-(2.0 ** 30)], 2.0 ** np.arange(lo + 1, hi, dtype=np.float64), [2.0 ** 40]])
    edges = blocks.bit(v[..., None] >= jnp.asarray(thresholds, jnp.float32))
    n = hi - lo
    step_down = np.zeros((n + 1, n), np.int32)  # one-hot_j = edge_j - edge_(j+1)
    step_down[np.arange(n), np.arange(n)] = 1
    step_down[np.arange(1, n + 1), np.arange(n)] = -1
    onehot = edges @ jnp.asarray(step_down)
    js = np.arange(lo, hi, dtype=np.float64)
    tables = np.stack([2.0 ** (-js * e) for e in exponents], axis=-1)
    looked_up = onehot @ jnp.asarray(tables, jnp.float32)
    return tuple(looked_up[..., i] for i in range(len(exponents)))


def rsqrt(v):
    scale, root = octave_tables(v, LO, HI, 1.0, 0.5)
    return blocks.polynomial(v * scale, rsqrt_coefficients()) * root


def divide_rows(e, total, axis: int = -1):
    """e / total for positive row sums total >= 1 (softmax's, kept as a size-1 `axis`): the octave
    of each total, then (total, e) times 2^-j in one multiply, then e times a quintic in the
    normalised total. Totals up to the row length are normalised exactly."""
    e = jnp.moveaxis(e, axis, -1)
    total = jnp.moveaxis(total, axis, -1)[..., 0]
    (scale,) = octave_tables(total, 0, int(np.ceil(np.log2(e.shape[-1]))) + 1, 1.0)
    k = total.size
    both = jnp.concatenate([total.reshape(-1), e.reshape(-1)]) * \
        jnp.concatenate([scale.reshape(-1), jnp.broadcast_to(scale[..., None], e.shape).reshape(-1)])
    inverse = blocks.polynomial(both[:k].reshape(total.shape), reciprocal_coefficients())
    return jnp.moveaxis(both[k:].reshape(e.shape) * inverse[..., None], -1, axis)


def group_norm(x, num_groups: int = 32, scale=None, bias=None, epsilon: float = 1e-6):
    """GroupNorm over all axes but the first (batch) and the channel groups of the last."""
    b, c = x.shape[0], x.shape[-1]
    gs = c // num_groups
    xg = x.reshape(b, -1, num_groups, gs)
    n = xg.shape[1] * gs
    k = b * num_groups
    s1 = blocks.secret_sum(xg, (1, 3)).reshape(-1)
    inv_n = blocks.secret_constant(s1, 1.0 / n)  # joins secrets below: shared without a round
    # one multiply: every x^2, and the mean (S1 / n)
    first = jnp.concatenate([xg.reshape(-1), s1]) * jnp.concatenate([xg.reshape(-1), inv_n])
    s2 = blocks.secret_sum(first[:-k].reshape(xg.shape), (1, 3)).reshape(-1)
    mean = first[-k:]
    # one multiply: E[x^2] = S2 / n and mean^2
    second = jnp.concatenate([s2, mean]) * jnp.concatenate([inv_n, mean])
    var = (second[:k] - second[k:] + epsilon).reshape(b, num_groups)
    octave, root = octave_tables(var, LO, HI, 1.0, 0.5)
    root_b = jnp.broadcast_to(root[..., None], (b, num_groups, gs))
    if scale is None:  # gamma = 1: nothing to fold into the octave multiply
        m, gain = var * octave, root_b
    else:
        gamma_b = jnp.broadcast_to(scale.reshape(num_groups, gs), (b, num_groups, gs))
        # one multiply: the normalised variance m, and gamma * 2^(-j/2)
        third = jnp.concatenate([var.reshape(-1), root_b.reshape(-1)]) * \
            jnp.concatenate([octave.reshape(-1), gamma_b.reshape(-1)])
        m, gain = third[:k].reshape(b, num_groups), third[k:].reshape(b, num_groups, gs)
    mul = blocks.polynomial(m, rsqrt_coefficients())[..., None] * gain
    y = (xg - mean.reshape(b, 1, num_groups, 1)) * mul[:, None]
    if bias is not None:
        y = y + bias.reshape(num_groups, gs)
    return y.reshape(x.shape)
