"""Plaintext sample quality of a shipped MNIST U-Net, recorded in its weights sidecar.

The model draws `per_class` digits of every class by DDIM from seeded noise, in the clear and with
its own activations; the shipped classifier scores them (class accuracy, and the FID proxy against
the MNIST test set; both are in `quality`). `raympc train mnist` records this after training, and
`raympc evaluate NAME` re-measures any shipped model.

`raympc evaluate NAME --activations IMPL` draws the same digits twice in the clear, with the model's
own activations and with IMPL's forms swapped in (float32, no MPC), and compares them: how much of
a secure run's quality loss the approximations alone explain, in a minute instead of an hour of
secure sampling. Such runs are never recorded.
"""

from __future__ import annotations

import time

import numpy as np

from raympc.activations import stock, use
from workloads import quality, sampling, weights
from workloads.weights import load_model

STEPS = 20
# 1,000 digits: the accuracy's standard error is about 1 point (3 at 100 digits; over 300 digits two
# seeds of one model differed by 2.3), and a run takes about a minute on 2 cores.
PER_CLASS = 100


def sample_quality(params, cfg, schedule, steps: int = STEPS, per_class: int = PER_CLASS, seed: int = 0,
                   activations: str | dict[str, str] | None = None) -> dict:
    """Plaintext DDIM samples of a U-Net (parameters in memory), scored by the shipped classifier.

    With `activations`, the samples are drawn with that implementation's forms instead, and
    `vs_own` compares them with the model's own samples from the same noise."""

    plan = sampling.plan_for("ddim-mnist", schedule, steps)
    labels = np.tile(np.arange(cfg.classes), per_class)
    inputs = sampling.SamplingInputs.draw(labels, plan, seed)

    def scored(images, seconds: float) -> dict:
        accuracy = quality.accuracy(images, labels)
        return {"ddim_steps": steps, "samples": int(len(labels)), "seed": seed, "accuracy": accuracy,
                "accuracy_stderr": float(np.sqrt(accuracy * (1 - accuracy) / len(labels))),
                "fid_proxy": quality.fid_proxy(images), "sample_seconds": seconds}

    start = time.time()
    with stock():
        own = np.asarray(sampling.sample_plain(params, cfg, plan, inputs))
    result = scored(own, time.time() - start)
    if activations is None:
        return result
    start = time.time()
    with use(activations):
        swapped = np.asarray(sampling.sample_plain(params, cfg, plan, inputs))
    label = activations if isinstance(activations, str) else ",".join(f"{a}={i}" for a, i in activations.items())
    close = quality.closeness(swapped, own)
    return {**scored(swapped, time.time() - start), "activations": label,
            "vs_own": {"accuracy": result["accuracy"], "fid_proxy": result["fid_proxy"],
                       "psnr_db_min": min(close["psnr_db"]), "max_abs_error": close["max_abs_error"]}}


def summary(q: dict) -> str:
    """One line for a `sample_quality` result, as `raympc evaluate` and `raympc train mnist` print it."""
    line = (f"{q['samples']} digits, {q['ddim_steps']} DDIM steps: class accuracy {q['accuracy']:.3f} "
            f"+- {q['accuracy_stderr']:.3f}, FID proxy {q['fid_proxy']:.1f}")
    if "vs_own" not in q:
        return line
    own = q["vs_own"]
    return (f"{line} with {q['activations']} activations in the clear; with its own: accuracy "
            f"{own['accuracy']:.3f}, FID proxy {own['fid_proxy']:.1f} ({q['fid_proxy'] / own['fid_proxy'] - 1:+.1%}); "
            f"against its own samples: PSNR min {own['psnr_db_min']:.1f} dB, max abs error {own['max_abs_error']:.3f}")


def plaintext_quality(name: str, **kwargs) -> dict:
    """`sample_quality` of the shipped model `name`."""

    params, cfg, schedule, _ = load_model(name)
    return sample_quality(params, cfg, schedule, **kwargs)


def record_plaintext_quality(name: str, **kwargs) -> dict:
    result = plaintext_quality(name, **kwargs)
    weights.update_meta(name, plaintext_quality=result)
    return result
