"""The program cache is keyed by the traced program: swapping an activation can never hit a stale entry."""

from __future__ import annotations

import jax
import numpy as np

ACTIVATION = {"fn": jax.nn.silu}


def model(x):
    return ACTIVATION["fn"](x) * 2.0


def test_same_program_hits_cache(aby3):
    x = np.linspace(-2, 2, 16, dtype=np.float32)
    hits = aby3.cache.hits
    a = aby3.run(model, x)
    b = aby3.run(model, x)
    assert a.program.key == b.program.key
    assert aby3.cache.hits == hits + 1


def test_swapped_activation_compiles_a_new_program(aby3):
    x = np.linspace(-2, 2, 16, dtype=np.float32)
    before = aby3.run(model, x)
    ACTIVATION["fn"] = jax.nn.relu
    try:
        after = aby3.run(model, x)
    finally:
        ACTIVATION["fn"] = jax.nn.silu
    assert after.program.key != before.program.key
    assert after.program.code != before.program.code
    np.testing.assert_allclose(after.outputs, 2 * np.maximum(x, 0), atol=1e-3)
    np.testing.assert_allclose(before.outputs, 2 * x / (1 + np.exp(-x)), atol=5e-3)
    # Relu is one comparison; SiLU needs exp and a reciprocal.
    assert after.metrics.send_bytes < before.metrics.send_bytes


def double(x):
    return x * 2


def test_shapes_and_dtypes_are_part_of_the_key(aby3):
    k1 = aby3.run(double, np.zeros(8, np.float32)).program.key
    k2 = aby3.run(double, np.zeros(9, np.float32)).program.key
    k3 = aby3.run(double, np.zeros(8, np.int32)).program.key
    assert len({k1, k2, k3}) == 3
