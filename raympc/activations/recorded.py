"""Recorded activation inputs (`raympc record-inputs`), read back for fits and benches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raympc.errors import ConfigError


def load_inputs(path: Path) -> np.ndarray:
    """Recorded activation inputs: a .npy array or the first array of a .npz."""
    if not path.exists():
        raise ConfigError(f"inputs file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            if not data.files:
                raise ConfigError(f"{path} holds no arrays")
            data = data[data.files[0]]
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path} is not a .npy/.npz array file ({e})") from e
    values = np.asarray(data, np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ConfigError(f"{path} holds no finite values")
    return values
