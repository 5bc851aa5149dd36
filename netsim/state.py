"""On-disk record of every active shaping, so a killed run can be undone by `raympc netsim reset`."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_DIR = Path(os.environ.get("RAYMPC_NETSIM_STATE", "/tmp/raympc-netsim"))


@dataclass
class ShapingRecord:
    id: str
    pid: int
    backend: str
    interface: str | None = None  # set when the kernel was changed
    netns: str | None = None  # the namespace of `interface`, if not the host's
    ports: list[int] = field(default_factory=list)
    nft_table: str | None = None  # the nftables table of its loss rules (netsim.loss), if any
    created: float = field(default_factory=time.time)
    # The network namespace the creator ran in (inode of /proc/self/ns/net). Nodes emulated in
    # namespaces share /tmp: each may only undo records made from its own namespace.
    net_inode: int = field(default_factory=lambda: current_net_inode())

    @property
    def path(self) -> Path:
        return STATE_DIR / f"{self.id}.json"

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        # atomic: a reader never sees half a record (netsim keeps its own copy of raympc.util.files'
        # helper because it must import without raympc, Ray or SPU)
        tmp.replace(self.path)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)

    @property
    def owner_alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def current_net_inode() -> int:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


def records() -> list[ShapingRecord]:
    if not STATE_DIR.exists():
        return []
    out = []
    for p in sorted(STATE_DIR.glob("*.json")):
        try:
            out.append(ShapingRecord(**json.loads(p.read_text())))
        except (ValueError, TypeError):
            p.unlink(missing_ok=True)  # a torn or foreign file: nothing we could undo from it
    return out
