"""Record what the activations of a shipped U-Net actually see during plaintext DDIM sampling.

The recordings (.npy per activation: silu or mish, and softmax) feed
`raympc bench activations --inputs silu=FILE` and
`raympc fit --inputs FILE`, so costs and errors are also reported on real input distributions.
"""

from __future__ import annotations

from pathlib import Path

import flax.linen as nn
import jax
import numpy as np

import raympc.activations as acts
from raympc.activations import active
from workloads import sampling
from workloads.weights import load_model


def record_inputs(out: Path, steps: int = 10, batch: int = 10, seed: int = 0, max_per_activation: int = 200_000,
                  model: str = "ddpm-mnist") -> dict:
    """Run `model` (a shipped MNIST U-Net) in the clear and save its activation's (SiLU or Mish) inputs
    and its attention logits."""
    params, cfg, schedule, _ = load_model(model)
    plan = sampling.plan_for("ddim-mnist", schedule, steps)
    inputs = sampling.SamplingInputs.draw(np.arange(batch) % cfg.classes, plan, seed)
    seen: dict[str, list[np.ndarray]] = {cfg.activation: [], "softmax": []}
    silu, softmax = acts.get("silu", "spu-direct").fn, acts.get("softmax", "spu-direct").fn
    current = active.current

    def recording_silu(x):
        seen["silu"].append(np.asarray(x).ravel())
        return silu(x)

    def recording_current(activation: str):
        fn = current(activation)
        if activation != "mish":
            return fn

        def recording_mish(x):
            seen["mish"].append(np.asarray(x).ravel())
            return fn(x)

        return recording_mish

    def recording_softmax(x, axis=-1, where=None, initial=None):
        seen["softmax"].append(np.asarray(x).reshape(-1, x.shape[axis]))
        return softmax(x, axis=axis)

    step = sampling.step_function(cfg)

    # The U-Net looks SiLU and softmax up on jax.nn / flax.linen and Mish through active.current at
    # call time, so rebinding those names reaches every layer.
    targets = [(jax.nn, "silu", recording_silu), (jax.nn, "softmax", recording_softmax),
               (nn, "silu", recording_silu), (nn, "softmax", recording_softmax), (active, "current", recording_current)]
    saved = [(m, a, getattr(m, a)) for m, a, _ in targets]
    try:
        for m, a, f in targets:
            setattr(m, a, f)
        x = inputs.initial
        y = inputs.onehot(cfg.classes)
        with jax.disable_jit():
            for coeff, noise in zip(plan, inputs.per_step):
                tf, abc = sampling.public_step_inputs(cfg, coeff, batch)
                x = np.asarray(step(params, x, y, noise, tf, abc))
    finally:
        for m, a, f in saved:
            setattr(m, a, f)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    summary = {}
    for name, chunks in seen.items():
        values = np.concatenate([c.reshape(-1) for c in chunks]) if chunks else np.empty(0, np.float32)
        if name != "softmax" and values.size > max_per_activation:
            values = rng.choice(values, max_per_activation, replace=False)
        np.save(out / f"{name}.npy", values.astype(np.float32))
        if values.size:
            summary[name] = {"count": int(values.size), "min": float(values.min()), "max": float(values.max()),
                             "p01": float(np.percentile(values, 1)), "p99": float(np.percentile(values, 99))}
    return summary
