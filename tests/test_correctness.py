"""Secure results agree with numpy within fixed-point tolerance, under ABY3 and SEMI2K."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from raympc import LinkConfig, Secret, Session
from workloads.kernels import conv_silu

# FM64 with 18 fraction bits: a LSB is 3.8e-6; SPU's exp (Taylor, 8 iterations) and Goldschmidt
# reciprocal dominate the error. Softmax over logits of std 3 reaches x - max < -10, where the
# Taylor exp is loosest (6.5e-3 seen), hence its wider bound.
TOL = {"matmul": 1e-3, "conv": 2e-3, "softmax": 1e-2, "silu": 5e-3}


def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_silu(x):
    return x / (1 + np.exp(-x))


def _np_conv(x, k):
    n, c, h, w = x.shape
    o = k.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, o, h, w), np.float64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + w], k[:, :, i, j])
    return out


@pytest.fixture(scope="module", params=["aby3", "semi2k"])
def session(request, ray_ready):
    with Session(protocol=request.param, link=LinkConfig(recv_timeout_s=60)) as s:
        yield s


def test_matmul(session, rng):
    x = rng.standard_normal((8, 16)).astype(np.float32)
    w = rng.standard_normal((16, 4)).astype(np.float32)
    got = session.run(lambda a, b: a @ b, x, Secret(w, owner="model")).outputs
    np.testing.assert_allclose(got, x.astype(np.float64) @ w, atol=TOL["matmul"])


def test_conv_silu(session, rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    k = (rng.standard_normal((4, 3, 3, 3)) / 5).astype(np.float32)
    got = session.run(conv_silu, x, Secret(k, owner="model")).outputs
    np.testing.assert_allclose(got, _np_silu(_np_conv(x, k)), atol=TOL["conv"] + TOL["silu"])


def test_softmax(session, rng):
    x = (3 * rng.standard_normal((6, 128))).astype(np.float32)
    got = session.run(lambda a: jax.nn.softmax(a, axis=-1), x).outputs
    np.testing.assert_allclose(got, _np_softmax(x.astype(np.float64)), atol=TOL["softmax"])
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=TOL["softmax"])


def test_silu(session):
    x = np.linspace(-16, 16, 1025, dtype=np.float32)
    got = session.run(jax.nn.silu, x).outputs
    np.testing.assert_allclose(got, _np_silu(x.astype(np.float64)), atol=TOL["silu"])


def test_fm128_ring(ray_ready, rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    with Session(field="fm128") as s:
        got = s.run(lambda a: jax.nn.silu(a @ a.T), x).outputs
    np.testing.assert_allclose(got, _np_silu(x.astype(np.float64) @ x.T), atol=TOL["silu"])
