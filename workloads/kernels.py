"""Small secure kernels: the building blocks of a diffusion U-Net, used by the demo and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def attention_mlp_block(x: jnp.ndarray, w: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """A secret matmul, a row softmax (attention-like) and a SiLU (the U-Net's activation)."""
    h = x @ w
    return jax.nn.softmax(h, axis=-1), jax.nn.silu(h)


def conv_silu(x: jnp.ndarray, k: jnp.ndarray) -> jnp.ndarray:
    """NCHW 3x3 convolution then SiLU, as in a U-Net residual block."""
    y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return jax.nn.silu(y)


@dataclass(frozen=True)
class Kernel:
    name: str
    fn: Callable
    make_inputs: Callable[[np.random.Generator, int], tuple[np.ndarray, ...]]
    owners: tuple[str, ...]


def _block_inputs(rng: np.random.Generator, scale: int) -> tuple[np.ndarray, np.ndarray]:
    rows, dim = 16 * scale, 64
    return (rng.standard_normal((rows, dim)).astype(np.float32),
            (rng.standard_normal((dim, 128)) / np.sqrt(dim)).astype(np.float32))


def _conv_inputs(rng: np.random.Generator, scale: int) -> tuple[np.ndarray, np.ndarray]:
    return (rng.standard_normal((scale, 8, 14, 14)).astype(np.float32),
            (rng.standard_normal((8, 8, 3, 3)) / 8.5).astype(np.float32))


KERNELS: dict[str, Kernel] = {
    k.name: k for k in (
        Kernel("attention-mlp", attention_mlp_block, _block_inputs, ("user", "model")),
        Kernel("conv-silu", conv_silu, _conv_inputs, ("user", "model")),
    )
}
