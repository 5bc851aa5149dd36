"""CPU quotas for emulated nodes: each node's processes get a fixed share of the host's cores.

Separate machines do not lend each other CPU. Three Ray nodes emulated on one host do, unless
told otherwise: a point running alone could use every core, and the same point next to two others
a third of them, so a parallel sweep would measure the host's core count rather than the sweep.
A node started in a cgroup with a CFS quota (`cores` x the period) behaves like a machine with
that many cores, whether or not its neighbours are busy.

Groups are named `raympc-node<i>` under the cpu controller (cgroup v2 `cpu.max`, or v1
`cpu.cfs_quota_us`), created and removed only by the emulated cluster; processes join in the
child between fork and exec, and everything they start inherits the group.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PREFIX = "raympc-node"
PERIOD_US = 100_000
_V2 = Path("/sys/fs/cgroup")
_V1 = Path("/sys/fs/cgroup/cpu")


def _root() -> tuple[Path, int] | None:
    """The cpu controller's hierarchy and its cgroup version, if this host has one we may use."""
    try:
        if "cpu" in (_V2 / "cgroup.subtree_control").read_text().split():
            return _V2, 2
    except OSError:
        pass
    if (_V1 / "cpu.cfs_quota_us").exists():
        return _V1, 1
    return None


def available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "not root"
    if _root() is None:
        return False, "no cgroup cpu controller with CFS quotas is mounted"
    return True, ""


def create(name: str, cores: float) -> Path:
    """A cgroup limited to `cores` CPUs on average (a quota per 100 ms period)."""
    found = _root()
    if found is None:
        raise OSError("no cgroup cpu controller with CFS quotas is mounted")
    if not name.startswith(PREFIX) or cores <= 0:
        raise ValueError(f"cgroup name must start with {PREFIX!r} and cores be positive (got {name!r}, {cores})")
    root, version = found
    path = root / name
    path.mkdir(exist_ok=False)
    quota = max(int(cores * PERIOD_US), 1000)
    if version == 2:
        (path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
    else:
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(quota))
    return path


def join(path: Path | str) -> None:
    """Move the calling process into the group (call it in a single-threaded child before exec)."""
    with open(Path(path) / "cgroup.procs", "w") as f:
        f.write(str(os.getpid()))


def existing() -> list[Path]:
    found = _root()
    if found is None:
        return []
    return sorted(p for p in found[0].glob(f"{PREFIX}*") if p.is_dir())


def remove(path: Path | str, wait_s: float = 10.0) -> bool:
    """Delete an (emptied) group; processes still exiting get `wait_s` to leave it."""
    path = Path(path)
    if not path.name.startswith(PREFIX):
        raise ValueError(f"refusing to remove {path}: not a raympc group")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return False
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

