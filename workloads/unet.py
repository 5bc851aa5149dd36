"""A class-conditional U-Net for 28x28 MNIST, written for secure sampling.

- The timestep is public: its sinusoidal embedding is computed in the clear (`time_features`)
  and passed in; only the time MLP (secret weights) runs under MPC, as in CipherDM.
- The label arrives as a secret one-hot vector (the user's), embedded by a matmul.
- Activations are looked up when the model runs (`nn.silu`, `activations.current("mish")`), so
  `raympc.activations.use(...)` swaps them without touching this file.
- Levels 28 -> 14 -> 7 with GroupNorm + activation residual blocks; self-attention at 7x7 (a 49x49
  softmax) and, optionally, at 14x14 (CipherDM's 196x196).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import raympc.activations as acts
from raympc.activations import blocks


@dataclass(frozen=True)
class UNetConfig:
    channels: int = 32
    multipliers: tuple[int, ...] = (1, 2, 2)  # 28, 14, 7
    attention_at: tuple[int, ...] = (7,)  # spatial sizes with self-attention
    time_features: int = 32
    embedding: int = 64
    groups: int = 8
    activation: str = "silu"  # or "mish"
    classes: int = 10
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def time_features(t: np.ndarray | int, dim: int) -> np.ndarray:
    """Sinusoidal embedding of public timesteps, in the clear (float32, shape (B, dim))."""
    t = np.atleast_1d(np.asarray(t, np.float64))
    half = dim // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / half)
    args = t[:, None] * freqs[None]
    return np.concatenate([np.sin(args), np.cos(args)], axis=1).astype(np.float32)


def _act(kind: str, x):
    return nn.silu(x) if kind == "silu" else acts.current("mish")(x)


class ResBlock(nn.Module):
    out: int
    cfg: UNetConfig

    @nn.compact
    def __call__(self, x, emb):
        h = _act(self.cfg.activation, nn.GroupNorm(self.cfg.groups)(x))
        h = nn.Conv(self.out, (3, 3))(h)
        h = h + nn.Dense(self.out)(_act(self.cfg.activation, emb))[:, None, None, :]
        h = _act(self.cfg.activation, nn.GroupNorm(self.cfg.groups)(h))
        h = nn.Conv(self.out, (3, 3))(h)
        skip = x if x.shape[-1] == self.out else nn.Conv(self.out, (1, 1))(x)
        return skip + h


def batched_matmul(a, b, group: int = 4):
    """a @ b for (B, n, d) and (B, d, m): one 2-D matmul per `group` batch elements.

    SPU runs a batched matmul as one matmul per batch element, each with its own multiply and
    truncation messages. Batch elements side by side in a block-diagonal left operand (its zero
    blocks made locally, `blocks.secret_constant`) give the same products, with the same bytes,
    in one matmul; the local work grows with the group, so groups stay small.
    """
    outs = []
    for start in range(0, a.shape[0], group):
        a_g, b_g = a[start: start + group], b[start: start + group]
        zero = blocks.secret_constant(a_g[0], 0.0)
        rows = [jnp.concatenate([a_g[i] if j == i else zero for j in range(a_g.shape[0])], axis=-1)
                for i in range(a_g.shape[0])]
        out = jnp.concatenate(rows, axis=0) @ jnp.concatenate(list(b_g), axis=0)
        outs.append(out.reshape(a_g.shape[0], a.shape[1], b.shape[2]))
    return jnp.concatenate(outs, axis=0)


class Attention(nn.Module):
    cfg: UNetConfig

    @nn.compact
    def __call__(self, x):
        b, hgt, wid, c = x.shape
        h = nn.GroupNorm(self.cfg.groups)(x).reshape(b, hgt * wid, c)
        q, k, v = jnp.split(nn.Dense(3 * c)(h), 3, axis=-1)
        weights = jax.nn.softmax(batched_matmul(q, k.transpose(0, 2, 1)) / math.sqrt(c), axis=-1)
        return x + nn.Dense(c)(batched_matmul(weights, v)).reshape(b, hgt, wid, c)


class UNet(nn.Module):
    cfg: UNetConfig = UNetConfig()

    @nn.compact
    def __call__(self, x, t_features, label_onehot):
        cfg = self.cfg
        emb = nn.Dense(cfg.embedding)(t_features)
        emb = nn.Dense(cfg.embedding)(_act(cfg.activation, emb)) + nn.Dense(cfg.embedding, use_bias=False)(label_onehot)
        h = nn.Conv(cfg.channels, (3, 3))(x)
        skips = []
        size = x.shape[1]
        for level, mult in enumerate(cfg.multipliers):
            h = ResBlock(cfg.channels * mult, cfg)(h, emb)
            if size in cfg.attention_at:
                h = Attention(cfg)(h)
            skips.append(h)
            if level < len(cfg.multipliers) - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2))(h)
                size = h.shape[1]
        h = ResBlock(h.shape[-1], cfg)(h, emb)
        if size in cfg.attention_at:
            h = Attention(cfg)(h)
        for level, mult in reversed(list(enumerate(cfg.multipliers))):
            h = ResBlock(cfg.channels * mult, cfg)(jnp.concatenate([h, skips[level]], axis=-1), emb)
            if h.shape[1] in cfg.attention_at:
                h = Attention(cfg)(h)
            if level > 0:
                target = skips[level - 1].shape[1]
                h = jax.image.resize(h, (h.shape[0], target, target, h.shape[-1]), "nearest")
                h = nn.Conv(h.shape[-1], (3, 3))(h)
        h = _act(cfg.activation, nn.GroupNorm(cfg.groups)(h))
        return nn.Conv(x.shape[-1], (3, 3))(h)


def init_params(cfg: UNetConfig, seed: int = 0):
    model = UNet(cfg)
    x = jnp.zeros((1, 28, 28, 1), jnp.float32)
    return model, model.init(jax.random.PRNGKey(seed), x, jnp.zeros((1, cfg.time_features)), jnp.zeros((1, cfg.classes)))


def count_params(params) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
