"""Sample quality: secure vs plaintext (PSNR, max error), class accuracy and an FID proxy.

The FID proxy is the Frechet distance between Gaussians fitted to the shipped classifier's
64-dimensional penultimate features of generated digits and of the MNIST test set. With small
sample counts it is biased upwards; compare values computed from the same number of samples.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jax
import numpy as np
from scipy import linalg

from workloads import mnist_data, weights
from workloads.classifier import Classifier


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 2.0, clip: tuple[float, float] | None = (-1.0, 1.0)) -> float:
    """PSNR in dB of `a` against `b`.

    Args:
        a, b: arrays of one shape.
        peak: the signal's peak-to-peak range (2 for images in [-1, 1]).
        clip: clip both to this range first (images); None for values with no fixed range (latents).

    Returns:
        10 log10(peak^2 / MSE), or inf where the two are equal.
    """
    if clip is not None:
        a, b = np.clip(a, *clip), np.clip(b, *clip)
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def closeness(images: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Per-sample PSNR (dB) of `images` against `reference` drawn from the same noise, and the max
    abs error over all of them."""
    return {"psnr_db": [psnr(a, b) for a, b in zip(images, reference)],
            "max_abs_error": float(np.abs(np.asarray(images) - np.asarray(reference)).max())}


@lru_cache(maxsize=1)
def classifier():
    params, meta = weights.load("mnist-classifier")
    return params, meta


def _features(images: np.ndarray, logits: bool) -> np.ndarray:
    params, _ = classifier()
    fn = jax.jit(lambda p, x: Classifier().apply(p, x, features=not logits))
    return np.concatenate([np.asarray(fn(params, np.clip(images[i:i + 500], -1, 1))) for i in range(0, len(images), 500)])


def accuracy(images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(_features(images, logits=True).argmax(-1) == labels))


@lru_cache(maxsize=1)
def _reference_stats() -> tuple[np.ndarray, np.ndarray]:
    f = _features(mnist_data.load("test").images, logits=False).astype(np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def fid_proxy(images: np.ndarray) -> float:
    f = _features(images, logits=False).astype(np.float64)
    mu, cov = f.mean(0), np.cov(f, rowvar=False) + 1e-6 * np.eye(f.shape[1])
    mu_r, cov_r = _reference_stats()
    covmean = linalg.sqrtm(cov @ cov_r)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(np.sum((mu - mu_r) ** 2) + np.trace(cov + cov_r - 2 * covmean))
