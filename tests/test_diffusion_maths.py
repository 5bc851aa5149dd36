"""The samplers' maths against diffusers' Flax schedulers, and the MNIST data checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workloads import diffusion
from workloads.diffusion import Schedule


def _reference_ddim_step(sched: Schedule, steps: int, x, eps, index: int):
    from diffusers import FlaxDDIMScheduler

    ref = FlaxDDIMScheduler(num_train_timesteps=sched.steps, beta_start=sched.beta_start, beta_end=sched.beta_end,
                            beta_schedule="linear", clip_sample=False, set_alpha_to_one=True)
    state = ref.set_timesteps(ref.create_state(), steps, x.shape)
    t = int(state.timesteps[index])
    return t, np.asarray(ref.step(state, jnp.asarray(eps), t, jnp.asarray(x), eta=0.0).prev_sample)


@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_matches_diffusers(steps):
    sched = Schedule()
    rng = np.random.default_rng(0)
    x, eps = rng.standard_normal((2, 28, 28, 1)).astype(np.float32), rng.standard_normal((2, 28, 28, 1)).astype(np.float32)
    plan = diffusion.plan("ddim", sched, steps)
    for index in (0, steps // 2, steps - 1):
        t, want = _reference_ddim_step(sched, steps, x, eps, index)
        assert plan[index].t == t
        got = diffusion.update(x, eps, 0.0, plan[index])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_ddpm_matches_diffusers_mean_and_variance():
    from diffusers import FlaxDDPMScheduler

    sched = Schedule()
    ref = FlaxDDPMScheduler(num_train_timesteps=sched.steps, beta_start=sched.beta_start, beta_end=sched.beta_end,
                            beta_schedule="linear", clip_sample=False, variance_type="fixed_small")
    state = ref.create_state()
    rng = np.random.default_rng(1)
    x, eps = rng.standard_normal((1, 8, 8, 1)).astype(np.float32), rng.standard_normal((1, 8, 8, 1)).astype(np.float32)
    plan = diffusion.plan("ddpm", sched, sched.steps)
    for t in (999, 500, 1, 0):
        coeff = plan[sched.steps - 1 - t]
        assert coeff.t == t
        outs = np.stack([np.asarray(ref.step(state, jnp.asarray(eps), t, jnp.asarray(x), key=jax.random.PRNGKey(k)).prev_sample)
                         for k in range(2)])
        mean = diffusion.update(x, eps, 0.0, coeff)
        if t == 0:
            np.testing.assert_allclose(outs[0], mean, rtol=1e-3, atol=1e-3)  # diffusers goes through x0 in float32
        else:  # diffusers adds its own noise: its mean is ours and its spread is coeff.c
            np.testing.assert_allclose(np.asarray(ref._get_variance(state, t)) ** 0.5, coeff.c, rtol=1e-4)


def test_mnist_loads_with_checksum_and_shapes():
    from workloads import mnist_data

    test = mnist_data.load("test")
    assert test.images.shape == (10000, 28, 28, 1) and test.labels.shape == (10000,)
    assert -1.0 <= test.images.min() and test.images.max() <= 1.0
    assert set(np.unique(test.labels)) == set(range(10))
    with pytest.raises(ValueError, match="unknown split"):
        mnist_data.load("holdout")


def test_a_tampered_mnist_file_is_refused(tmp_path, monkeypatch):
    from workloads import mnist_data

    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"\\x1f\\x8b not mnist")
    monkeypatch.setattr(mnist_data, "data_path", lambda: bad)
    mnist_data._load_all.cache_clear()
    with pytest.raises(mnist_data.MnistDataError, match="SHA-256"):
        mnist_data.load("train")
    mnist_data._load_all.cache_clear()
