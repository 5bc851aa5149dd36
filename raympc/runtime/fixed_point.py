"""Products kept at twice SPU's fraction bits, so that a sum of them is truncated once.

SPU truncates every fixed-point product on its own (`trunc_a`: 9.3 B per element and rank under
ABY3/FM64, after `mul_aa`'s 8). But a secret's ring element can be reinterpreted as an integer
for free (`bitcast_convert_type`), and an integer product is `mul_aa` alone: a * b then sits at
36 fraction bits ("wide"), where sums and multiples by public integers are local. One truncation
brings the total back to SPU's 18 bits (`narrow`).

Under SPU a wide value is a float32 array whose ring element is value * 2^36, so SPU reads it as
value * 2^18: `product` makes one, `scaled` and `constant` write public terms in that form, and
comparisons and integer selects work on it as on any secret. In the clear (plain JAX: `raympc
evaluate`, plaintext references) the same calls are float arithmetic at scale 1, so a form
computes the same values either way, up to SPU's rounding.

The ring holds 63 bits of magnitude: a wide value must stay below 2^27 (|x| < 11,585 for x^2).
Wide products are made only while a program is lowered for FM64 at its default 18 fraction bits
(`lowering`, entered by the compiler); elsewhere these calls are SPU's own fixed-point ops.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

FRACTION_BITS = 18  # SPU's default under FM64; a wide value holds twice as many

# None: traced in the clear; False: for SPU with its own products; True: for SPU, wide products
_LOWERING: ContextVar[bool | None] = ContextVar("raympc_lowering", default=None)


@contextmanager
def lowering(wide: bool) -> Iterator[None]:
    """Trace a program for SPU; inside, `product` keeps products wide when `wide` is true."""
    token = _LOWERING.set(bool(wide))
    try:
        yield
    finally:
        _LOWERING.reset(token)


def _wide() -> bool:
    return _LOWERING.get() is True


def wide_supported(field: str, fraction_bits: int) -> bool:
    """Wide products need FM64's headroom at its default 18 fraction bits (0 means the default)."""
    return field.lower() == "fm64" and fraction_bits in (0, FRACTION_BITS)


def _scale() -> float:
    return 2.0 ** FRACTION_BITS if _wide() else 1.0


def _ring(v) -> jnp.ndarray:
    return jax.lax.bitcast_convert_type(jnp.asarray(v, jnp.float32), jnp.int32)


def _value(i) -> jnp.ndarray:
    return jax.lax.bitcast_convert_type(i, jnp.float32)


def product(a, b) -> jnp.ndarray:
    """a * b, wide: one `mul_aa` under SPU and no truncation (broadcasts like `*`)."""
    if not _wide():
        return a * b
    return _value(_ring(a) * _ring(b))


# row_dots' matmul takes a (rows x rows * len) operand; past this many entries (128 MB of FM64
# shares, half of where SPU would split the matmul itself) the rows go in chunks, a matmul (and a
# message) each
ROW_DOTS_MAX_ENTRIES = 1 << 23


def row_dots(a, b) -> jnp.ndarray:
    """sum_j a[g, j] * b[g, j] for each row g of (rows, len) secrets, wide.

    ABY3 resolves a product by sending one share of it, and an inner product summed before that
    costs one share in all: a matmul's `mmul_aa` sends its outputs, not its terms. So the rows'
    dots are one integer matmul of the block-diagonal (rows x rows * len) matrix whose row g holds
    b's row g at g * len, by a's rows laid end to end: 8 B per row where the squares cost 8 B per
    term. The block diagonal is made locally, by a shift: b's rows padded with rows * len zeros
    (a sharing of zero made locally) and the flat run cut to rows of rows * len. (A (rows x len)
    @ (len x rows) matmul has the same dots on its diagonal, but SPU 0.9.5 takes ~0.3 s for
    16 x 1,568 x 16.) In the clear, and under SPU without wide products, the products are summed.
    """
    if not _wide():
        return jnp.sum(product(a, b), axis=-1)
    rows, length = a.shape
    zero = _ring(a[:1, :1] - a[:1, :1])
    step = min(rows, max(1, int(np.sqrt(ROW_DOTS_MAX_ENTRIES / length))))
    outs = []
    for start in range(0, rows, step):
        a_c, b_c = _ring(a[start: start + step]), _ring(b[start: start + step])
        r = a_c.shape[0]
        padded = jnp.concatenate([b_c, jnp.broadcast_to(zero, (r, r * length))], axis=-1)
        diagonal = padded.reshape(-1)[: r * r * length].reshape(r, r * length)
        outs.append(diagonal @ a_c.reshape(-1))
    return _value(jnp.concatenate(outs) if len(outs) > 1 else outs[0])


def products(pairs: list[tuple]) -> list[jnp.ndarray]:
    """[a * b for (a, b) in pairs] in one multiply (one `mul_aa`, one message, under SPU): a is a
    secret value; b is a secret value (the product is wide) or an int tensor such as a converted
    comparison bit or 1 - 2 bit (the product keeps a's scale: a select or a sign flip). Products
    that do not depend on each other cost one round together instead of one each."""
    if not _wide():
        return [a * b for a, b in pairs]
    flat = [(_ring(a).reshape(-1), (b if jnp.issubdtype(b.dtype, jnp.integer) else _ring(b)).reshape(-1))
            for a, b in pairs]
    joint = jnp.concatenate([f[0] for f in flat]) * jnp.concatenate([f[1].astype(jnp.int32) for f in flat])
    out, start = [], 0
    for a, _ in pairs:
        size = int(np.prod(a.shape))
        out.append(_value(joint[start: start + size].reshape(a.shape)))
        start += size
    return out


def scaled(x, coeff: float) -> jnp.ndarray:
    """coeff * x, wide, for a public coeff: under SPU a local integer multiple of x's ring element,
    coeff rounded to SPU's grid (2^-18) as SPU would encode it; in the clear, float."""
    if not _wide():
        return x * coeff
    return _value(_ring(x) * jnp.int32(np.round(coeff * 2.0 ** FRACTION_BITS)))


def constant(value) -> jnp.ndarray:
    """A public value in wide form, to add to or compare with wide values."""
    return jnp.asarray(np.asarray(value, np.float64) * _scale(), jnp.float32)


def masked(keep, w) -> jnp.ndarray:
    """keep * w for an int 0/1 `keep` (a converted comparison bit) and a wide or plain `w`.

    Under SPU an integer multiply (`mul_aa`, 8 B, no truncation): where keep is 0 the result is an
    exact 0 even if w overflowed the ring, so a form may compute w where it is out of range and
    mask it. In the clear a select, for the same reason: 0 * inf would be nan.
    """
    if _LOWERING.get() is None:
        return jnp.where(keep != 0, w, jnp.zeros_like(w))
    return keep * w


def narrow(w) -> jnp.ndarray:
    """A wide value back at SPU's fixed point: one truncation (`trunc_a`, 9.3 B per element).

    Written as a dot of [w, w] with the public [2^-18, 0] (the ring's 1, then nothing), which SPU
    runs as a local product and one truncation. A plain multiply by 2^-18 would not do: XLA's
    simplifier (run inside SPU's compiler) moves constant multipliers across later products and
    constants, so 2^-18 would meet them off SPU's grid; and SPU's executor sends a splat
    multiplier below 2^-16 through its small-constant path, which truncates by more bits (13.3 B)
    and overflows once |value| >= 2^10 (checked in tests/test_fixed_point.py).
    """
    if not _wide():
        return w
    w = jnp.asarray(w, jnp.float32)
    pair = jnp.stack([w, w], axis=-1)
    return pair @ jnp.asarray([2.0 ** -FRACTION_BITS, 0.0], jnp.float32)
