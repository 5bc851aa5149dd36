"""What a secure run takes and gives: owned inputs, public inputs and secret handles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from raympc.errors import InputError
from raympc.runtime.compiler import ArgSpec

# SPU's IO encodes these; complex, object and string arrays have no fixed-point form.
_SUPPORTED_KINDS = {"b", "i", "u", "f"}


@dataclass(frozen=True)
class Secret:
    """A plaintext input that its `owner` secret-shares; each party receives only its own share.

    Args:
        value: an array or a pytree of arrays (a whole parameter tree is one `Secret`).
        owner: a data owner of the session ("user" or "model" by default).
    """

    value: Any
    owner: str = "user"


@dataclass(frozen=True)
class Public:
    """A value every party may see (a timestep, a schedule constant).

    Args:
        value: an array or a pytree of arrays; it is compiled into the program as public.
    """

    value: Any


@dataclass(eq=False)
class SecretValue:
    """A value that lives secret-shared on the parties. Reveal it with `Session.reveal`."""

    name: str
    spec: ArgSpec
    session_id: str
    visibility: int
    _finalizer: Any = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.spec.shape

    @property
    def dtype(self) -> np.dtype:
        return self.spec.dtype


def canonical_array(value: Any, what: str) -> np.ndarray:
    """Turn an input into the numpy array SPU will encode, refusing what fixed point cannot hold."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - report whatever numpy could not convert
        raise InputError(f"{what}: cannot convert {type(value).__name__} to an array ({exc})") from exc
    if arr.dtype.kind not in _SUPPORTED_KINDS:
        raise InputError(f"{what}: dtype {arr.dtype} is not supported (use bool, int, uint or float)")
    # JAX runs with x64 off: the program is traced in 32 bits, so encode the input the same way.
    arr = np.asarray(arr, dtype=jax.dtypes.canonicalize_dtype(arr.dtype))
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise InputError(f"{what}: contains {bad}; fixed-point encoding cannot represent it")
    return arr


def spec_of(arr: np.ndarray) -> ArgSpec:
    return ArgSpec(tuple(arr.shape), np.dtype(arr.dtype))
