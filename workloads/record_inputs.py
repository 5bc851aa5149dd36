"""Record what the activations of a shipped U-Net actually see during plaintext sampling.

The recordings (.npy per activation: silu or mish, and softmax rows) feed
`raympc bench activations --inputs silu=FILE`, `raympc fit --inputs FILE` and `raympc bench
sd-scale`'s softmax check, so costs and errors are also reported on real input distributions.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import flax.linen as nn
import jax
import numpy as np

import raympc.activations as acts
from raympc.activations import active
from workloads import sampling, sd_unet
from workloads.weights import load_model

MODELS = ("ddpm-mnist", "ddpm-mnist-mish", "sd-unet")


@contextlib.contextmanager
def recording(seen: dict[str, list[np.ndarray]]) -> Iterator[None]:
    """Inside, every SiLU, Mish and softmax a model looks up at call time (`jax.nn`, `flax.linen`,
    `active.current`) records its input into `seen` (softmax: one row per entry of its axis) and
    computes the stock form. Run the model eagerly (`jax.disable_jit`) so the values are concrete."""
    silu, softmax = acts.get("silu", "spu-direct").fn, acts.get("softmax", "spu-direct").fn
    current = active.current

    def recording_silu(x):
        seen.setdefault("silu", []).append(np.asarray(x).ravel())
        return silu(x)

    def recording_current(activation: str):
        fn = current(activation)
        if activation != "mish":
            return fn

        def recording_mish(x):
            seen.setdefault("mish", []).append(np.asarray(x).ravel())
            return fn(x)

        return recording_mish

    def recording_softmax(x, axis=-1, where=None, initial=None):
        seen.setdefault("softmax", []).append(np.moveaxis(np.asarray(x), axis, -1).reshape(-1, x.shape[axis]))
        return softmax(x, axis=axis)

    targets = [(jax.nn, "silu", recording_silu), (jax.nn, "softmax", recording_softmax),
               (nn, "silu", recording_silu), (nn, "softmax", recording_softmax), (active, "current", recording_current)]
    saved = [(m, a, getattr(m, a)) for m, a, _ in targets]
    try:
        for m, a, f in targets:
            setattr(m, a, f)
        with jax.disable_jit():
            yield
    finally:
        for m, a, f in saved:
            setattr(m, a, f)


def sd_softmax_rows(scale: str = "medium", seed: int = 0, max_rows: int = 4096) -> dict[int, np.ndarray]:
    """The SD U-Net's attention logits at `scale` (random weights, one plaintext step), by row
    length (latent self-attention and text cross-attention), at most `max_rows` rows each."""
    seen: dict[str, list[np.ndarray]] = {}
    _run_sd(scale, seed, seen)
    return _by_length(seen.get("softmax", []), max_rows, seed)


def _by_length(chunks: list[np.ndarray], max_rows: int, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows: dict[int, list[np.ndarray]] = {}
    for c in chunks:
        rows.setdefault(c.shape[-1], []).append(c)
    out = {}
    for length, parts in sorted(rows.items()):
        r = np.concatenate(parts).astype(np.float32)
        out[length] = r[rng.choice(len(r), max_rows, replace=False)] if len(r) > max_rows else r
    return out


def _run_sd(scale: str, seed: int, seen: dict[str, list[np.ndarray]]) -> None:
    s = sd_unet.scale(scale)
    args = sd_unet.step_arguments(s, sd_unet.init_params(s, seed), seed=seed)
    with recording(seen):
        sd_unet.step_function(s)(*args)


def _run_mnist(model: str, steps: int, batch: int, seed: int, seen: dict[str, list[np.ndarray]]) -> None:
    params, cfg, schedule, _ = load_model(model)
    plan = sampling.plan_for("ddim-mnist", schedule, steps)
    inputs = sampling.SamplingInputs.draw(np.arange(batch) % cfg.classes, plan, seed)
    step = sampling.step_function(cfg)
    x, y = inputs.initial, inputs.onehot(cfg.classes)
    with recording(seen):
        for coeff, noise in zip(plan, inputs.per_step):
            tf, abc = sampling.public_step_inputs(cfg, coeff, batch)
            x = np.asarray(step(params, x, y, noise, tf, abc))


def record_inputs(out: Path, steps: int = 10, batch: int = 10, seed: int = 0, max_per_activation: int = 200_000,
                  model: str = "ddpm-mnist", scale: str = "medium") -> dict:
    """Run `model` in the clear and save its activations' inputs (SiLU or Mish values, and the
    attention logits as rows: `softmax.npy` for one row length, `softmax-N.npy` per length N
    where there are several, as in the SD U-Net).

    Args:
        model: a shipped MNIST U-Net (DDIM sampling, `steps` steps of `batch` images) or
            "sd-unet" (one step at `scale`, random weights).
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
    seen: dict[str, list[np.ndarray]] = {}
    if model == "sd-unet":
        _run_sd(scale, seed, seen)
    else:
        _run_mnist(model, steps, batch, seed, seen)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files: dict[str, np.ndarray] = {}
    for name, chunks in seen.items():
        if name == "softmax":
            by_length = _by_length(chunks, max_per_activation, seed)
            files.update({"softmax" if len(by_length) == 1 else f"softmax-{n}": r for n, r in by_length.items()})
            continue
        values = np.concatenate([c.reshape(-1) for c in chunks])
        if values.size > max_per_activation:
            values = rng.choice(values, max_per_activation, replace=False)
        files[name] = values
    summary = {}
    for name, values in files.items():
        np.save(out / f"{name}.npy", values.astype(np.float32))
        summary[name] = {"count": int(values.size), "min": float(values.min()), "max": float(values.max()),
                         "p01": float(np.percentile(values, 1)), "p99": float(np.percentile(values, 99))}
    return summary
