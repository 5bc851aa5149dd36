"""raympc's round-lean normalisation (rsqrt, GroupNorm, softmax's row max and division): accurate
under SPU, a drop-in for flax's GroupNorm, and fewer send actions (SPU's deterministic count) than
the stock forms."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import raympc.activations as acts
from raympc import Secret
from raympc.activations import blocks, normalization
from raympc.activations.exact import exact
from raympc.activations.flax_modules import FLAX_GROUP_NORM


def _group_input(rng, shape, spread, offset):
    return (rng.standard_normal(shape) * spread + rng.standard_normal(shape[-1]) * offset).astype(np.float32)


def test_rsqrt_covers_its_octaves_and_stays_finite_below_them(aby3):
    v = np.array([2.0 ** -14, 2.0 ** -6, 0.3, 1.0, 1.5, 7.0, 1000.0, 2.0 ** 15, 2.0 ** 17.5], np.float32)
    got = aby3.run(acts.get("rsqrt", "raympc").fn, v).outputs
    # 1e-3 relative, or two fixed-point ulps (2^-17) where the result itself is that small
    np.testing.assert_allclose(got, exact("rsqrt", v), rtol=1e-3, atol=2.0 ** -17)
    # a variance of zero or slightly negative (fixed-point round-off, ~1e-5) gives a large finite
    # value: the first piece's quadratic on [-1, 1] times 2^(-LO/2), in [128, 374]
    low = aby3.run(acts.get("rsqrt", "raympc").fn, np.array([0.0, -3e-5, 2.0 ** -16], np.float32)).outputs
    assert np.all(low > 100) and np.all(low < 400), low


@pytest.mark.parametrize("shape,spread,offset", [((2, 7, 7, 64), 3.0, 3.0), ((2, 14, 14, 32), 0.5, 0.2),
                                                 ((1, 4, 4, 16), 20.0, 5.0)])
def test_group_norm_matches_flax_under_spu(aby3, rng, shape, spread, offset):
    x = _group_input(rng, shape, spread, offset)
    groups = 8 if shape[-1] % 8 == 0 else 4
    module = FLAX_GROUP_NORM(groups)
    params = module.init(jax.random.PRNGKey(0), x)
    params = jax.tree_util.tree_map(lambda a: a + rng.standard_normal(a.shape).astype(np.float32) * 0.3, params)
    expected = np.asarray(module.apply(params, x), np.float64)
    fn = acts.get("groupnorm", "raympc").fn
    got = aby3.run(lambda p, x: fn(x, groups, p["params"]["scale"], p["params"]["bias"]),
                   Secret(params, owner="model"), x).outputs
    # normalised values reach ~4 sigma; rsqrt's 4e-4 relative error and fixed point give ~5e-3
    assert np.abs(got - expected).max() <= 5e-3 * max(1.0, np.abs(expected).max() / 4)


def test_swapped_group_norm_keeps_flax_parameters_and_stock_restores_it():
    x = np.ones((2, 4, 4, 16), np.float32)
    stock_rsqrt = jax.lax.rsqrt
    stock_params = nn.GroupNorm(4).init(jax.random.PRNGKey(0), x)
    with acts.use("raympc"):
        assert nn.GroupNorm is not FLAX_GROUP_NORM and nn.GroupNorm.__name__ == "GroupNorm"
        swapped = nn.GroupNorm(4).init(jax.random.PRNGKey(0), x)
        assert jax.tree_util.tree_structure(swapped) == jax.tree_util.tree_structure(stock_params)
        with acts.stock():
            assert nn.GroupNorm is FLAX_GROUP_NORM and jax.lax.rsqrt is stock_rsqrt
    assert nn.GroupNorm is FLAX_GROUP_NORM and jax.lax.rsqrt is stock_rsqrt
    with acts.use({"groupnorm": "spu-direct"}):  # flax's own maths through the swapped module
        y = nn.GroupNorm(4).apply(stock_params, x + np.arange(16, dtype=np.float32))
    np.testing.assert_array_equal(y, FLAX_GROUP_NORM(4).apply(stock_params, x + np.arange(16, dtype=np.float32)))


def test_group_norm_takes_fewer_send_actions_than_flax(aby3, rng):
    x = _group_input(rng, (2, 7, 7, 64), 2.0, 1.0)
    params = FLAX_GROUP_NORM(8).init(jax.random.PRNGKey(0), x)
    stock = aby3.run(lambda p, x: FLAX_GROUP_NORM(8).apply(p, x), Secret(params, owner="model"), x).metrics
    fn = acts.get("groupnorm", "raympc").fn
    ours = aby3.run(lambda p, x: fn(x, 8, p["params"]["scale"], p["params"]["bias"]),
                    Secret(params, owner="model"), x).metrics
    # send actions are deterministic for a program; under a WAN each is about one round trip leg.
    # 68 against 211: linear pieces leave one Horner multiply (quadratic ones sent 76)
    assert ours.send_actions <= 0.33 * stock.send_actions, (ours.send_actions, stock.send_actions)


def test_tournament_max_is_exact_with_ties_and_padding():
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 5, 49, 196):
        x = rng.normal(0, 3, (3, n)).astype(np.float32)
        x[0, : min(n, 3)] = 9.0  # ties at the maximum
        for fan_in, final in [(2, 1), (3, 1), (4, 1), (7, 1), (4, 16), (2, 5)]:
            got = np.asarray(blocks.row_max_tournament(jnp.asarray(x), fan_in=fan_in, final=final))
            np.testing.assert_array_equal(got[:, 0], x.max(-1))


def test_tournament_compares_the_last_few_values_in_one_level(aby3, rng):
    assert blocks.tournament_fan_ins(49, 4, 16) == [4, 13]
    assert blocks.tournament_fan_ins(49, 4) == [4, 4, 4]
    assert blocks.tournament_fan_ins(128, 4, 16) == [4, 4, 8]
    assert blocks.tournament_fan_ins(128, 4) == [4, 4, 4, 2] and blocks.tournament_fan_ins(1, 4, 16) == []
    # all pairs of 16 would be 7.5 comparisons per value: short rows stay on fan-in 4
    assert blocks.tournament_fan_ins(16, 4, 16) == [4, 4] and blocks.tournament_fan_ins(8, 4, 16) == [4, 2]
    assert blocks.tournament_fan_ins(64, 4, 16) == [4, 16]
    x = rng.normal(0, 3, (4, 49)).astype(np.float32)
    m = aby3.run(lambda x: blocks.row_max_tournament(x, fan_in=4, final=16), x)
    np.testing.assert_allclose(m.outputs[:, 0], x.max(-1), atol=2e-5)
    assert _mpc_calls(m.metrics, "msb_a2b") == 2  # one comparison op per level


def test_powers_give_every_power_up_to_the_degree():
    m = jnp.asarray([1.5, -0.5])
    for degree in range(1, 8):
        got = blocks.powers(m, degree)
        assert len(got) == degree
        np.testing.assert_allclose(np.stack(got), np.stack([np.asarray(m) ** k for k in range(1, degree + 1)]), rtol=1e-6)


def test_divide_rows_inverts_sums_between_one_and_the_row_length(aby3, rng):
    e = rng.uniform(0, 1, (6, 49)).astype(np.float32)
    e[:, 0] = 1.0  # softmax's row maximum
    got = aby3.run(lambda e: normalization.divide_rows(e, jnp.sum(e, -1, keepdims=True)), e).outputs
    np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), atol=2e-4)


def _mpc_calls(metrics, op: str) -> float:
    """Calls of one MPC kernel per rank (SPU's profile; deterministic for a program)."""
    return metrics.ops("mpc").get(op).count / len(metrics.ranks) if op in metrics.ops("mpc") else 0.0


@pytest.mark.parametrize("impl", ["groupnorm", "rsqrt", "softmax"])
def test_no_public_value_is_shared_by_a_message(aby3, rng, impl):
    """SPU shares a public value joined to secrets (and a reduce's zero init) by p2a, one message
    per rank that every party waits for; raympc's normalisation makes those sharings locally."""
    x = {"groupnorm": _group_input(rng, (2, 7, 7, 64), 2.0, 1.0), "rsqrt": np.linspace(0.1, 50, 256, dtype=np.float32),
         "softmax": rng.normal(0, 3, (4, 49)).astype(np.float32)}[impl]
    fn = acts.get(impl, "raympc").fn
    m = aby3.run((lambda v: fn(v, 8)) if impl == "groupnorm" else fn, x).metrics
    assert _mpc_calls(m, "p2a") == 0, m.ops("mpc")
    # ... and the octave comparison's bits are converted to arithmetic shares once
    assert _mpc_calls(m, "b2a") == 1


def test_pairwise_sums_and_ands_match_numpy():
    x = np.random.default_rng(0).normal(size=(2, 7, 5, 3)).astype(np.float32)
    for axis, keepdims in [((1, 3), False), (-1, True), (0, False), ((0, 1, 2, 3), False), (2, True)]:
        np.testing.assert_allclose(blocks.secret_sum(jnp.asarray(x), axis, keepdims), x.sum(axis, keepdims=keepdims),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(blocks.secret_all(jnp.asarray(x > -1), axis, keepdims),
                                      (x > -1).all(axis, keepdims=keepdims))
