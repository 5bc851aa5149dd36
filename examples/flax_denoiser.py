"""Bring your own model: a small Flax denoiser as a raympc workload.

    PYTHONPATH=examples raympc sample --workload flax_denoiser:make --steps 4 --batch 2 --network wan

`make(opts)` returns a `Workload`: the step function, the model's parameters (secret to the model
provider), the user's secret inputs (initial state, condition, per-step noise) and the public
per-step inputs. raympc runs it securely next to the same loop in plaintext and reports bytes,
send actions, time, the cost by layer kind and the error against plaintext.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from workloads.protocol import Workload, WorkloadOptions


class Denoiser(nn.Module):
    """Predicts the noise in `x` given a condition: Dense, LayerNorm, SiLU, Dense.

    The activation is a dataclass field, the way Flax code usually stores one: its default is bound
    when the class is defined, so rebinding `jax.nn.silu` would not reach it; raympc's swaps work on
    the traced program and do (`raympc check flax_denoiser:make` lists the site).
    """

    width: int = 32
    activation: Callable = nn.silu

    @nn.compact
    def __call__(self, x, condition):
        h = nn.Dense(self.width)(jnp.concatenate([x, condition], axis=-1))
        h = self.activation(nn.LayerNorm()(h))
        return nn.Dense(x.shape[-1])(h)


def make(opts: WorkloadOptions) -> Workload:
    """`opts.steps` denoising steps of `opts.batch` 16-dimensional states, random weights."""
    model = Denoiser()
    rng = np.random.default_rng(opts.seed)
    state = rng.standard_normal((opts.batch, 16)).astype(np.float32)
    condition = rng.standard_normal((opts.batch, 4)).astype(np.float32)
    params = model.init(jax.random.PRNGKey(opts.seed), state, condition)

    def step(params, x, condition, noise, coefficients):
        # x_{t-1} = a x_t + b eps(x_t) + c noise, the shape of a DDIM/DDPM update
        return coefficients[0] * x + coefficients[1] * model.apply(params, x, condition) + coefficients[2] * noise

    noises = [rng.standard_normal(state.shape).astype(np.float32) for _ in range(opts.steps)]
    coefficients = [(np.asarray([0.95, -0.2, 0.05 if i < opts.steps - 1 else 0.0], np.float32),)
                    for i in range(opts.steps)]
    return Workload(step=step, params=params, state=state, condition=condition, step_secrets=noises,
                    step_publics=coefficients, info={"model": "Flax denoiser (Dense, LayerNorm, SiLU)"},
                    quality=lambda secure, plain: {"mean_abs_error": float(np.abs(secure - plain).mean())})
