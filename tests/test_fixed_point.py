"""Wide products (raympc/fixed_point.py): products kept at 36 fraction bits and truncated once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from raympc import Session
from raympc.activations import get
from raympc.activations.exact import exact
from raympc.runtime import fixed_point


def _bytes(m) -> dict[str, float]:
    return {op: s.send_bytes for op, s in m.ops("mpc").items() if s.send_bytes}


def test_sum_of_products_costs_one_truncation(aby3, rng):
    """a*b + c*d + 0.3 a + 1.5, wide then narrowed: two mul_aa and one trunc_a per rank, where
    SPU's own multiplies truncate each product."""
    a, b, c, d = (rng.normal(0, 3, 2048).astype(np.float32) for _ in range(4))

    def form(a, b, c, d):
        wide = fixed_point.product(a, b) + fixed_point.product(c, d) + fixed_point.scaled(a, 0.3)
        return fixed_point.narrow(wide + fixed_point.constant(1.5))

    run = aby3.run(form, a, b, c, d)
    np.testing.assert_allclose(run.outputs, a * b + c * d + 0.3 * a + 1.5, atol=2e-4)
    ops = run.metrics.ops("mpc")
    ranks = len(run.metrics.ranks)
    assert ops["trunc_a"].count == ranks and ops["mul_aa"].count == 2 * ranks, ops
    stock = aby3.run(lambda a, b, c, d: a * b + c * d + 0.3 * a + 1.5, a, b, c, d).metrics
    assert sum(_bytes(run.metrics).values()) < sum(_bytes(stock).values())
    # the same calls in the clear are float arithmetic
    np.testing.assert_allclose(form(a, b, c, d), a * b + c * d + 0.3 * a + 1.5, rtol=1e-5, atol=1e-5)


def test_narrowed_values_meet_later_constants_on_spus_grid(aby3):
    """XLA's simplifier (inside SPU's compiler) moves constant multipliers across products: a
    narrowing written as `w * 2^-18` came out of `s * s` as ~0 and of `s * 2.5` as 2 s. The
    narrowing dot keeps both exact."""
    x = np.linspace(-7, 7, 1024, dtype=np.float32)

    def form(x):
        s = fixed_point.narrow(fixed_point.product(x, x))
        return s * s, s * 2.5, jnp.stack([s, s * s], -1) @ jnp.asarray([0.1, 0.01], jnp.float32)

    sq, scaled, dot = (np.asarray(v, np.float64) for v in aby3.run(form, x).outputs)
    s = x.astype(np.float64) ** 2
    np.testing.assert_allclose(sq, s * s, atol=5e-3)
    np.testing.assert_allclose(scaled, 2.5 * s, atol=1e-3)
    np.testing.assert_allclose(dot, 0.1 * s + 0.01 * s * s, atol=5e-3)


def test_spus_small_constant_path_is_why_narrow_is_a_dot(aby3):
    """SPU 0.9.5 multiplies by a splat constant below 2^-16 with extra fraction bits: a bigger
    truncation (13.3 B per element and rank against 9.3) that overflows once the wide value
    reaches 2^10. If SPU changes this, fixed_point.narrow's docstring is out of date."""
    x = np.array([3.0, 20.0, 30.0, 100.0], np.float32)
    ring = lambda v: jax.lax.bitcast_convert_type(v, jnp.int32)  # noqa: E731

    def by_splat(x):
        return jax.lax.bitcast_convert_type(ring(x) * ring(x), jnp.float32) * jnp.float32(2.0 ** -18)

    splat = aby3.run(by_splat, x)
    assert np.abs(splat.outputs[-1] - 1e4) > 1.0  # 100^2 >= 2^10: overflowed
    np.testing.assert_allclose(splat.outputs[:2], x[:2] ** 2, rtol=1e-4)
    narrowed = aby3.run(lambda x: fixed_point.narrow(fixed_point.product(x, x)), x)
    np.testing.assert_allclose(narrowed.outputs, x ** 2, rtol=1e-5)
    per_elem = lambda m: m.ops("mpc")["trunc_a"].send_bytes / x.size / len(m.ranks)  # noqa: E731
    assert per_elem(splat.metrics) > per_elem(narrowed.metrics)


@pytest.mark.parametrize("field, bits, wide", [("fm64", 0, True), ("fm64", 18, True), ("fm64", 20, False),
                                                ("fm128", 0, False), ("fm32", 0, False)])
def test_wide_products_only_where_the_ring_has_room(field, bits, wide):
    assert fixed_point.wide_supported(field, bits) is wide


def test_fm128_session_keeps_spus_multiplies(ray_ready):
    """Under another field the forms compile to SPU's own fixed-point ops and stay correct."""
    x = np.linspace(-10, 10, 256, dtype=np.float32)
    with Session(field="fm128") as s:
        run = s.run(get("silu", "raympc").fn, x)
    assert "pphlo.bitcast_convert" not in run.metrics.ops("hlo")
    np.testing.assert_allclose(run.outputs, exact("silu", x), atol=5e-3)


def test_row_dots_send_a_share_per_row_not_per_term(aby3, rng, monkeypatch):
    """Each row's dot product as one integer matmul: 8 B per row and rank (mmul_aa's outputs),
    where squaring each term sends 8 B per term. In chunks when the block-diagonal operand would
    be too large, a matmul each, with the same values."""
    a = rng.normal(0, 2, (16, 300)).astype(np.float32)
    b = rng.normal(0, 2, (16, 300)).astype(np.float32)
    expected = np.sum(a.astype(np.float64) * b, axis=1)

    def dots(a, b):
        return fixed_point.narrow(fixed_point.row_dots(a, b))

    run = aby3.run(dots, a, b)
    np.testing.assert_allclose(run.outputs, expected, atol=2e-3)
    m = run.metrics
    ranks = len(m.ranks)
    assert m.ops("mpc")["mmul_aa"].count == ranks and "mul_aa" not in m.ops("mpc")
    assert _bytes(m)["mmul_aa"] == 16 * 8 * ranks
    terms = aby3.run(lambda a, b: fixed_point.narrow(jnp.sum(fixed_point.product(a, b), axis=1)), a, b).metrics
    assert _bytes(terms)["mul_aa"] == a.size * 8 * ranks
    # chunks of 5 rows (5 x 5 x 300 entries), four matmuls
    monkeypatch.setattr(fixed_point, "ROW_DOTS_MAX_ENTRIES", 5 * 5 * 300)
    chunked = aby3.run(dots, a, b)
    np.testing.assert_allclose(chunked.outputs, expected, atol=2e-3)
    assert chunked.metrics.ops("mpc")["mmul_aa"].count == 4 * ranks
    # in the clear: the products summed
    np.testing.assert_allclose(fixed_point.row_dots(a, b), expected, rtol=1e-5)


def test_products_are_one_multiply(aby3, rng):
    """Independent products in one multiply: a sign flip by an int (a's scale kept) and a wide
    square cost one mul_aa per rank together."""
    x = rng.normal(0, 3, 512).astype(np.float32)
    s = (x * x).astype(np.float32)

    def form(x, s):
        sign = 1 - 2 * (x < 0).astype(jnp.int32)
        t, fourth = fixed_point.products([(x, sign), (s, s)])
        return t, fixed_point.narrow(fourth)

    run = aby3.run(form, x, s)
    t, fourth = (np.asarray(v, np.float64) for v in run.outputs)
    np.testing.assert_allclose(t, np.abs(x), atol=1e-5)
    np.testing.assert_allclose(fourth, s.astype(np.float64) ** 2, rtol=1e-4, atol=1e-2)
    assert run.metrics.ops("mpc")["mul_aa"].count == len(run.metrics.ranks)
    np.testing.assert_allclose(form(x, s)[0], np.abs(x))
