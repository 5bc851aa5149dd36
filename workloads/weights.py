"""Model weights in safetensors (no pickle), with a JSON sidecar for the recipe and results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from raympc.errors import RaympcError
from raympc.util.files import replace_atomically, write_json_atomically
from workloads.diffusion import Schedule
from workloads.unet import UNetConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class WeightsError(RaympcError, RuntimeError):
    pass


def save(params, name: str, meta: dict, directory: Path = WEIGHTS_DIR) -> Path:
    flat = {"/".join(k): np.asarray(v, np.float32) for k, v in flatten_dict(params).items()}
    path = replace_atomically(directory / f"{name}.safetensors", lambda tmp: save_file(flat, str(tmp)), mode=0o644)
    write_json_atomically(directory / f"{name}.json", meta)
    return path


def update_meta(name: str, directory: Path = WEIGHTS_DIR, **fields) -> dict:
    """Add results to a saved model's sidecar (the weights themselves are not touched)."""
    if not (directory / f"{name}.safetensors").exists():
        raise WeightsError(f"no weights {directory / name}.safetensors")
    side = directory / f"{name}.json"
    meta = json.loads(side.read_text()) if side.exists() else {}
    meta.update(fields)
    write_json_atomically(side, meta)
    return meta


def load(name: str, directory: Path = WEIGHTS_DIR) -> tuple[dict, dict]:
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


def load_model(name: str = "ddpm-mnist") -> tuple[dict, UNetConfig, Schedule, dict]:
    """A shipped MNIST U-Net: its parameters, model config, noise schedule and sidecar metadata.

    Raises:
        WeightsError: no such weights, or their file is damaged.
    """
    params, meta = load(name)
    recipe = meta.get("recipe", {})
    m = recipe.get("model", {})
    cfg = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items() if k != "extra"})
    s = recipe.get("schedule", {})
    return params, cfg, Schedule(**s), meta
