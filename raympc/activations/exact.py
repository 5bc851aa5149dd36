"""Exact activations in float64 NumPy: the ground truth every error figure is measured against."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import erf as _erf
from scipy.special import expit as _sigmoid


def _gelu_erf(v: np.ndarray) -> np.ndarray:
    return 0.5 * v * (1.0 + _erf(v / np.sqrt(2.0)))


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _group_norm(v: np.ndarray, num_groups: int = 32, epsilon: float = 1e-6) -> np.ndarray:
    g = v.reshape(v.shape[0], -1, num_groups, v.shape[-1] // num_groups)
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = g.var(axis=(1, 3), keepdims=True)
    return ((g - mean) / np.sqrt(var + epsilon)).reshape(v.shape)


EXACT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "silu": lambda v: v * _sigmoid(v),
    "mish": lambda v: v * np.tanh(np.logaddexp(0.0, v)),
    "gelu_tanh": lambda v: 0.5 * v * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (v + 0.044715 * v ** 3))),
    "gelu_erf": _gelu_erf,
    "exp": np.exp,
    "softmax": _softmax,
    "rsqrt": lambda v: 1.0 / np.sqrt(v),
    "groupnorm": _group_norm,  # 32 groups, no scale or bias: what the registered functions default to
}


def exact(activation: str, x: np.ndarray) -> np.ndarray:
    """The exact `activation` of `x`, computed in float64."""
    return EXACT[activation](np.asarray(x, np.float64))
