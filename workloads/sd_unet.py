"""Stable Diffusion's U-Net (diffusers' FlaxUNet2DConditionModel) at a configurable scale.

The SD v1 architecture (cross-attention down/up blocks, a cross-attention mid block, GroupNorm +
SiLU ResNet blocks, GeGLU feed-forwards) with widths, depth, latent size and text length as
config: `SCALES` holds a tiny scale for tests, larger ones for benchmarks and `sd-v1` (the real
size, 860M parameters), which only `extrapolate` handles. Weights are random unless a local
diffusers checkpoint directory is given (`load_params`).

One secure DDIM step: the latent, the text embedding and the step noise are the user's secrets,
the weights the model provider's; the timestep and the step's coefficients are public.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from workloads.diffusion import Schedule, ddim_coefficients


@dataclass(frozen=True)
class SDScale:
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    attention_head_dim: int = 8  # diffusers' name; SD v1 uses it as the number of heads
    cross_attention_dim: int = 32
    sample_size: int = 8  # latent height and width
    text_tokens: int = 8
    latent_channels: int = 4

    @property
    def down_block_types(self) -> tuple[str, ...]:
        return ("CrossAttnDownBlock2D",) * (len(self.block_out_channels) - 1) + ("DownBlock2D",)

    @property
    def up_block_types(self) -> tuple[str, ...]:
        return ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(self.block_out_channels) - 1)

    def model(self):
        # deferred: diffusers takes over a second to import and prints a deprecation notice; only the SD
        # workload needs it
        from diffusers import FlaxUNet2DConditionModel
        from diffusers.utils import logging as diffusers_logging

        # 0.39 warns that its Flax classes are deprecated once per module set up (hundreds of
        # lines per trace); we pin 0.39 on purpose, the last release that has them.
        diffusers_logging.set_verbosity_error()

        return FlaxUNet2DConditionModel(
            sample_size=self.sample_size, in_channels=self.latent_channels, out_channels=self.latent_channels,
            down_block_types=self.down_block_types, up_block_types=self.up_block_types,
            block_out_channels=self.block_out_channels, layers_per_block=self.layers_per_block,
            attention_head_dim=self.attention_head_dim, cross_attention_dim=self.cross_attention_dim)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


SCALES: dict[str, SDScale] = {
    "tiny": SDScale(),
    "small": SDScale(block_out_channels=(32, 64, 64), cross_attention_dim=64, text_tokens=16),
    # a 16x16 latent: with every fitted scale at 8x8, attention's rows and scores grew together and
    # the fit could not tell their costs apart (the 12x12 held-out scale came out 12% low)
    "medium": SDScale(block_out_channels=(64, 128, 128), cross_attention_dim=64, sample_size=16, text_tokens=16),
    # held out by `raympc bench sd-scale`: deeper (two layers per block) and a larger latent
    "wide": SDScale(block_out_channels=(64, 128, 128), layers_per_block=2, cross_attention_dim=64, sample_size=12,
                    text_tokens=16),
    # The real SD v1 U-Net: 64x64 latents (512x512 images), CLIP ViT-L text (77 tokens, 768 dims).
    "sd-v1": SDScale(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=8,
                     cross_attention_dim=768, sample_size=64, text_tokens=77),
}


def scale(name_or_scale: str | SDScale) -> SDScale:
    if isinstance(name_or_scale, SDScale):
        return name_or_scale
    if name_or_scale not in SCALES:
        raise ValueError(f"unknown SD U-Net scale {name_or_scale!r}; choose one of {sorted(SCALES)}")
    return SCALES[name_or_scale]


def abstract_params(s: SDScale) -> Any:
    """Parameter shapes without allocating them (the full model has 860M parameters)."""

    return jax.eval_shape(lambda: s.model().init_weights(jax.random.PRNGKey(0)))


def init_params(s: SDScale, seed: int = 0) -> Any:
    return s.model().init_weights(jax.random.PRNGKey(seed))


def load_params(directory: Path, s: SDScale) -> Any:
    """Real weights from a local diffusers checkpoint (`unet/` subfolder or the folder itself)."""
    from diffusers import FlaxUNet2DConditionModel  # deferred: see SDScale.model

    directory = Path(directory)
    sub = "unet" if (directory / "unet").is_dir() else None
    if not directory.is_dir():
        raise FileNotFoundError(f"no diffusers checkpoint directory at {directory}")
    model, params = FlaxUNet2DConditionModel.from_pretrained(directory, subfolder=sub)
    mine = s.model()
    if model.block_out_channels != mine.block_out_channels or model.cross_attention_dim != mine.cross_attention_dim:
        raise ValueError(f"checkpoint at {directory} has block_out_channels {model.block_out_channels} and "
                         f"cross_attention_dim {model.cross_attention_dim}; scale asks for "
                         f"{mine.block_out_channels} and {mine.cross_attention_dim}")
    return params


def count_params(params: Any) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def step_function(s: SDScale) -> Callable:
    """One DDIM step: eps = U-Net(latent, t, text); latent' = a * latent + b * eps + c * noise."""

    model = s.model()

    def step(params, latent, text, noise, t, abc):
        # diffusers wraps anything that is not a jax array in another dimension
        eps = model.apply({"params": params}, latent, jnp.asarray(t), text).sample
        return abc[0] * latent + abc[1] * eps + abc[2] * noise

    return step


PUBLIC_STEP_ARGS = (4, 5)  # t, abc


def step_arguments(s: SDScale, params: Any, batch: int = 1, seed: int = 0, t: int = 500) -> tuple:
    """Example inputs of one step (latent NCHW, text embedding, noise, public t and coefficients)."""

    rng = np.random.default_rng(seed)
    shape = (batch, s.latent_channels, s.sample_size, s.sample_size)
    latent = rng.standard_normal(shape).astype(np.float32)
    text = rng.standard_normal((batch, s.text_tokens, s.cross_attention_dim)).astype(np.float32)
    noise = np.zeros(shape, np.float32)
    c = ddim_coefficients(Schedule(), t, max(t - 20, -1), eta=0.0)
    return params, latent, text, noise, np.full((batch,), t, np.int32), np.asarray([c.a, c.b, c.c], np.float32)
