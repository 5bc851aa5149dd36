"""CipherDM's tiny MNIST U-Net, written here from its description, as a raympc workload.

    PYTHONPATH=examples raympc check cipherdm_unet:make --no-cost
    PYTHONPATH=examples raympc sample --workload cipherdm_unet:make --steps 2 --activations cipherdm --exp-mode pade
    PYTHONPATH=examples raympc bench models --workload cipherdm_unet:make

CipherDM (arXiv 2409.05414) measured its secure MNIST sampling on a class-conditional U-Net of
15,881 parameters: base width 4, levels 28 -> 14 (multipliers 1, 2), two residual blocks per level
going down and three coming up, self-attention over the 14x14 = 196 positions in every block at
that level and in the middle (six 196x196 softmaxes), GroupNorm with 2 groups, a time embedding of
width 8, two classes (digits 0 and 1), DDIM with 50 steps. This module writes that architecture
with flax.linen as such research code does; the parameter count matches.

It is deliberately written the way raympc's activation swaps used to miss: the activation is a
dataclass field whose default, `nn.silu`, is bound when the class is defined, and the attention
calls `nn.softmax` directly. `raympc.activations.use(...)` still reaches both, because it rewrites
the traced program (`raympc check` lists every call site).

As in CipherDM's secure run the timestep is public, so its sinusoidal features are computed in the
clear and only the time MLP runs under MPC; the label is the user's secret (a one-hot vector
times a class table, which is what an embedding lookup is); and the noise is a secret input of
the user's, never `jax.random` inside the program. Weights are random (`opts.seed`): bytes per
step do not depend on them.
"""

from __future__ import annotations

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from workloads.diffusion import Schedule, plan
from workloads.protocol import Workload, WorkloadOptions

BASE, MULTIPLIERS, BLOCKS, ATTENTION_LEVELS = 4, (1, 2), 2, (1,)
GROUPS, TIME_FEATURES, TIME_WIDTH, CLASSES = 2, 4, 8, 2


class Attention(nn.Module):
    """Single-head self-attention over all positions, residual."""

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        q, k, v = jnp.split(nn.Conv(3 * c, (1, 1))(nn.GroupNorm(GROUPS)(x)), 3, axis=-1)
        q, k, v = (t.reshape(b, h * w, c) for t in (q, k, v))
        weights = nn.softmax(q @ k.transpose(0, 2, 1) * c ** -0.5, axis=-1)
        return nn.Conv(c, (1, 1))((weights @ v).reshape(b, h, w, c)) + x


class Residual(nn.Module):
    """GroupNorm, activation, conv; plus time and class biases; again; skip; optional attention."""

    out: int
    attention: bool = False
    activation: Callable = nn.silu  # bound at class definition: a rebound jax.nn.silu never reaches it

    @nn.compact
    def __call__(self, x, time, label):
        h = nn.Conv(self.out, (3, 3))(self.activation(nn.GroupNorm(GROUPS)(x)))
        h = h + nn.Dense(self.out)(self.activation(time))[:, None, None, :]
        h = h + nn.Dense(self.out, use_bias=False)(label)[:, None, None, :]
        h = nn.Conv(self.out, (3, 3))(self.activation(nn.GroupNorm(GROUPS)(h)))
        skip = x if x.shape[-1] == self.out else nn.Conv(self.out, (1, 1))(x)
        h = h + skip
        return Attention()(h) if self.attention else h


class UNet(nn.Module):
    """Predicts the noise in a 28x28x1 image from its public time features and secret label."""

    activation: Callable = nn.silu

    @nn.compact
    def __call__(self, x, time_features, label):
        time = nn.Dense(TIME_WIDTH)(self.activation(nn.Dense(TIME_WIDTH)(time_features)))

        def block(out: int, level: int) -> Residual:
            return Residual(out, level in ATTENTION_LEVELS, self.activation)

        h = nn.Conv(BASE, (3, 3))(x)
        skips, width = [h], BASE
        for level, mult in enumerate(MULTIPLIERS):
            for _ in range(BLOCKS):
                width = BASE * mult
                h = block(width, level)(h, time, label)
                skips.append(h)
            if level < len(MULTIPLIERS) - 1:
                h = nn.Conv(width, (3, 3), strides=(2, 2))(h)
                skips.append(h)
        h = Residual(width, True, self.activation)(h, time, label)
        h = Residual(width, False, self.activation)(h, time, label)
        for level, mult in reversed(list(enumerate(MULTIPLIERS))):
            for _ in range(BLOCKS + 1):
                width = BASE * mult
                h = block(width, level)(jnp.concatenate([h, skips.pop()], axis=-1), time, label)
            if level > 0:
                h = nn.ConvTranspose(width, (3, 3), strides=(2, 2))(h)
        return nn.Conv(1, (3, 3))(self.activation(nn.GroupNorm(GROUPS)(h)))


def time_features(t: int, batch: int) -> np.ndarray:
    """Sinusoidal features of a public timestep, in the clear: (batch, TIME_FEATURES)."""
    half = TIME_FEATURES // 2
    angles = t * np.exp(-math.log(10000.0) * np.arange(half) / half)
    return np.repeat(np.concatenate([np.sin(angles), np.cos(angles)])[None], batch, axis=0).astype(np.float32)


def count_params(params) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))


def make(opts: WorkloadOptions) -> Workload:
    """`opts.steps` DDIM steps (of a 50-step plan when `opts.steps` <= 50, CipherDM's sampler) on
    `opts.batch` images, labels alternating 0 and 1, random weights."""
    model = UNet()
    rng = np.random.default_rng(opts.seed)
    state = rng.standard_normal((opts.batch, 28, 28, 1)).astype(np.float32)
    label = np.eye(CLASSES, dtype=np.float32)[np.arange(opts.batch) % CLASSES]
    params = model.init(jax.random.PRNGKey(opts.seed), state, time_features(0, opts.batch), label)
    steps = plan("ddim", Schedule(), max(opts.steps, 50), opts.eta)[:opts.steps]

    def step(params, x, label, noise, features, abc):
        return abc[0] * x + abc[1] * model.apply(params, x, features, label) + abc[2] * noise

    noises = [rng.standard_normal(state.shape).astype(np.float32) if c.c else np.zeros_like(state) for c in steps]
    publics = [(time_features(c.t, opts.batch), np.asarray([c.a, c.b, c.c], np.float32)) for c in steps]
    return Workload(step=step, params=params, state=state, condition=label, step_secrets=noises, step_publics=publics,
                    timesteps=[c.t for c in steps], images=True,
                    info={"model": "CipherDM's tiny MNIST U-Net (random weights)", "parameters": count_params(params)})
