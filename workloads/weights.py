"""Model weights in safetensors (no pickle), with a JSON sidecar for the recipe and results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from raympc.errors import RaympcError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class WeightsError(RaympcError, RuntimeError):
    pass


def save(params, name: str, meta: dict, directory: Path = WEIGHTS_DIR) -> Path:
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    flat = {"/".join(k): np.asarray(v, np.float32) for k, v in flatten_dict(params).items()}
    path = directory / f"{name}.safetensors"
    tmp = path.with_name(path.name + ".tmp")
    save_file(flat, str(tmp))
    os.chmod(tmp, 0o644)
    tmp.replace(path)  # never half-written
    _write_meta(directory / f"{name}.json", meta)
    return path


def _write_meta(side: Path, meta: dict) -> None:
    side_tmp = side.with_name(side.name + ".tmp")
    side_tmp.write_text(json.dumps(meta, indent=1))
    side_tmp.replace(side)


def update_meta(name: str, directory: Path = WEIGHTS_DIR, **fields) -> dict:
    """Add results to a saved model's sidecar (the weights themselves are not touched)."""
    if not (directory / f"{name}.safetensors").exists():
        raise WeightsError(f"no weights {directory / name}.safetensors")
    side = directory / f"{name}.json"
    meta = json.loads(side.read_text()) if side.exists() else {}
    meta.update(fields)
    _write_meta(side, meta)
    return meta


def load(name: str, directory: Path = WEIGHTS_DIR) -> tuple[dict, dict]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = directory / f"{name}.safetensors"
    if not path.exists():
        raise WeightsError(f"no weights {path}; train them with `raympc train` or check the checkout")
    try:
        flat = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a valid safetensors file ({e})") from e
    meta_path = directory / f"{name}.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()}), meta
