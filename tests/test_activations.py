"""Activation implementations: errors within their documented bounds under SPU, cost ordering on
SPU's deterministic byte counts, and proof that a swap really changes the compiled program."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import raympc.activations as acts
from raympc import Secret

EXACT = {
    "silu": lambda v: v / (1 + np.exp(-v)),
    "mish": lambda v: v * np.tanh(np.log1p(np.exp(v))),
    "gelu_tanh": lambda v: np.asarray(jax.nn.gelu(v, approximate=True), np.float64),
    "gelu_erf": lambda v: np.asarray(jax.nn.gelu(v, approximate=False), np.float64),
    "exp": np.exp,
}
BOUNDED = [i for i in acts.implementations() if i.max_abs_error is not None and i.activation in EXACT]


@pytest.mark.parametrize("impl", BOUNDED, ids=lambda i: f"{i.activation}-{i.impl}")
def test_secure_error_within_documented_bound(aby3, impl):
    lo, hi = impl.grid
    grid = np.linspace(lo, hi, 2049, dtype=np.float32)
    got = aby3.run(impl.fn, grid).outputs
    err = np.abs(got - EXACT[impl.activation](grid.astype(np.float64)))
    assert err.max() <= impl.max_abs_error, f"{impl.activation}/{impl.impl}: {err.max():.4f} at x={grid[err.argmax()]}"


def test_cipherdm_flaws_are_reproduced():
    # exp(0) comes out as 0.9515 and the series dips below zero on [-14, -4.49].
    assert float(acts.get("exp", "cipherdm").fn(jnp.float32(0.0))) == pytest.approx(0.9515, abs=1e-3)
    assert float(acts.get("exp", "cipherdm").fn(jnp.float32(-8.0))) < 0
    # Its softmax can give negative probabilities for spread-out logits.
    p = acts.get("softmax", "cipherdm").fn(jnp.array([[0.0, -6.0, -6.0, -6.0, -8.0]]))
    assert float(p.min()) < 0
    # SiLU's largest error sits at the breakpoint x = 6.
    x = jnp.float32(6.0)
    assert abs(float(acts.get("silu", "cipherdm").fn(x)) - 6 / (1 + np.exp(-6))) > 0.07


@pytest.mark.parametrize("activation", ["silu", "mish"])
def test_cipherdm_costs_no_more_than_spu_direct(aby3, activation):
    x = np.linspace(-8, 8, 4096, dtype=np.float32)
    cost = {impl: aby3.run(acts.get(activation, impl).fn, x).metrics.send_bytes for impl in ("spu-direct", "cipherdm")}
    assert cost["cipherdm"] <= cost["spu-direct"], cost


class TinyBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.silu(nn.Dense(8)(x))
        return jax.nn.softmax(nn.Dense(8)(h), axis=-1)


def test_swap_changes_the_compiled_program_for_flax_and_jax_nn(aby3):
    x = np.linspace(-2, 2, 32, dtype=np.float32).reshape(4, 8)
    model = TinyBlock()
    params = model.init(jax.random.PRNGKey(0), x)
    stock = aby3.run(model.apply, Secret(params, "model"), x)
    with acts.use("cipherdm") as mapping:
        assert mapping["silu"] == "cipherdm" and mapping["softmax"] == "cipherdm"
        assert nn.silu is acts.get("silu", "cipherdm").fn and jax.nn.softmax is acts.get("softmax", "cipherdm").fn
        swapped = aby3.run(model.apply, Secret(params, "model"), x)
    assert nn.silu is not acts.get("silu", "cipherdm").fn  # restored on exit
    assert swapped.program.key != stock.program.key and swapped.program.code != stock.program.code
    np.testing.assert_allclose(stock.outputs, model.apply(params, x), atol=1e-2)
    assert not np.allclose(swapped.outputs, stock.outputs, atol=1e-6)


def test_swap_reaches_diffusers_flax_blocks(aby3):
    from diffusers.models.resnet_flax import FlaxResnetBlock2D

    block = FlaxResnetBlock2D(in_channels=32, out_channels=32)
    x = np.zeros((1, 4, 4, 32), np.float32)
    temb = np.zeros((1, 16), np.float32)
    params = block.init(jax.random.PRNGKey(0), x, temb)

    def step(p, h, t):
        return block.apply(p, h, t)

    stock = aby3.compile(step, Secret(params, "model"), x, temb).program
    with acts.use({"silu": "cipherdm"}):
        swapped = aby3.compile(step, Secret(params, "model"), x, temb).program
    assert swapped.key != stock.key and swapped.code != stock.code


def test_unknown_policy_names_what_exists():
    with pytest.raises(KeyError, match="implementations"):
        with acts.use("magic"):
            pass
    with pytest.raises(KeyError, match="registered"):
        acts.resolve({"silu": "magic"})
