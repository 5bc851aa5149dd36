"""Data owners: who makes the shares of an input and who may see an output.

In the simulator every owner lives in the driver process: it encodes its plaintext, splits it into
one share per party, and hands each share only to its party (a separate Ray object per share).
"""

from __future__ import annotations

import numpy as np
import spu
import spu.libspu as libspu

from raympc.errors import ConfigError

DEFAULT_OWNERS = ("user", "model")


class Owner:
    def __init__(self, name: str, parties: int, runtime_config: libspu.RuntimeConfig) -> None:
        self.name = name
        self._io = spu.Io(parties, runtime_config)

    def make_shares(self, arr: np.ndarray, visibility: libspu.Visibility) -> list[libspu.Share]:
        return self._io.make_shares(arr, visibility)

    def reconstruct(self, shares: list[libspu.Share]) -> np.ndarray:
        return self._io.reconstruct(shares)


class Owners:
    def __init__(self, names: tuple[str, ...], parties: int, runtime_config: libspu.RuntimeConfig) -> None:
        if not names:
            raise ConfigError("a session needs at least one data owner")
        self._owners = {n: Owner(n, parties, runtime_config) for n in names}

    def __getitem__(self, name: str) -> Owner:
        owner = self._owners.get(name)
        if owner is None:
            raise ConfigError(f"unknown owner {name!r}; this session's owners are {sorted(self._owners)}")
        return owner

    def __iter__(self):
        return iter(self._owners)
