"""The small MNIST classifier that scores samples (accuracy, FID proxy); trained by `raympc train classifier`."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np


class Classifier(nn.Module):
    @nn.compact
    def __call__(self, x, features: bool = False):
        h = nn.relu(nn.Conv(16, (3, 3))(x))
        h = nn.max_pool(h, (2, 2), (2, 2))
        h = nn.relu(nn.Conv(32, (3, 3))(h))
        h = nn.max_pool(h, (2, 2), (2, 2))
        f = nn.relu(nn.Dense(64)(h.reshape(h.shape[0], -1)))
        return f if features else nn.Dense(10)(f)



def predict(params, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    apply = jax.jit(lambda p, x: Classifier().apply(p, x))
    return np.concatenate([np.asarray(apply(params, images[i:i + batch])).argmax(-1) for i in range(0, len(images), batch)])
