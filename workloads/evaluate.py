"""Plaintext sample quality of a shipped MNIST U-Net, recorded in its weights sidecar.

The model draws `per_class` digits of every class by DDIM from seeded noise, in the clear and with
its own activations; the shipped classifier scores them (class accuracy, and the FID proxy against
the MNIST test set; both are in `quality`). `raympc train mnist` records this after training, and
`raympc evaluate NAME` re-measures any shipped model.
"""

from __future__ import annotations

import time

import numpy as np

STEPS = 20
# 1,000 digits: the accuracy's standard error is about 1 point (3 at 100 digits; over 300 digits two
# seeds of one model differed by 2.3), and a run takes about a minute on 2 cores.
PER_CLASS = 100


def sample_quality(params, cfg, schedule, steps: int = STEPS, per_class: int = PER_CLASS, seed: int = 0) -> dict:
    """Plaintext DDIM samples of a U-Net (parameters in memory), scored by the shipped classifier."""
    from raympc.activations import stock

    from . import quality, sampling

    plan = sampling.plan_for("ddim-mnist", schedule, steps)
    labels = np.tile(np.arange(cfg.classes), per_class)
    inputs = sampling.SamplingInputs.draw(labels, plan, seed)
    start = time.time()
    with stock():
        images = sampling.sample_plain(params, cfg, plan, inputs)
    accuracy = quality.accuracy(images, labels)
    return {"ddim_steps": steps, "samples": int(len(labels)), "seed": seed, "accuracy": accuracy,
            "accuracy_stderr": float(np.sqrt(accuracy * (1 - accuracy) / len(labels))),
            "fid_proxy": quality.fid_proxy(images), "sample_seconds": time.time() - start}


def summary(q: dict) -> str:
    """One line for a `sample_quality` result, as `raympc evaluate` and `raympc train mnist` print it."""
    return (f"{q['samples']} digits, {q['ddim_steps']} DDIM steps: class accuracy {q['accuracy']:.3f} "
            f"+- {q['accuracy_stderr']:.3f}, FID proxy {q['fid_proxy']:.1f}")


def plaintext_quality(name: str, **kwargs) -> dict:
    """`sample_quality` of the shipped model `name`."""
    from .run_sample import load_model

    params, cfg, schedule, _ = load_model(name)
    return sample_quality(params, cfg, schedule, **kwargs)


def record_plaintext_quality(name: str, **kwargs) -> dict:
    from . import weights

    result = plaintext_quality(name, **kwargs)
    weights.update_meta(name, plaintext_quality=result)
    return result
