"""What a driver killed with SIGKILL leaves behind, and how `raympc netsim reset` removes it.

An embedded Ray is shut down by its driver; a driver that dies without running its clean-up
leaves some of Ray's processes running (its dashboard and runtime-env agents outlive the raylet)
and its temp dirs on disk. Each driver that owns an embedded Ray keeps a record of exactly what it
started (process ids with their start times, so a reused pid is never touched, and its dirs);
`reap()` undoes the records whose driver is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import psutil

from raympc.util.files import write_json_atomically

RECORD_DIR = Path(os.environ.get("RAYMPC_STATE_DIR", "/tmp/raympc-state"))


def _record_path(pid: int) -> Path:
    return RECORD_DIR / f"driver-{pid}.json"


def _identity(pid: int) -> dict | None:
    try:
        return {"pid": pid, "created": psutil.Process(pid).create_time()}
    except psutil.NoSuchProcess:
        return None


def record(dirs: list[str] | None = None) -> None:
    """Note this driver's child processes (now) and `dirs` (added to those already noted)."""
    me = os.getpid()
    path = _record_path(me)
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {"driver": _identity(me), "processes": [], "dirs": []}
    known = {p["pid"] for p in current["processes"]}
    for child in psutil.Process(me).children(recursive=True):
        ident = _identity(child.pid)
        if ident and child.pid not in known:
            current["processes"].append(ident)
    current["dirs"] = sorted(set(current["dirs"]) | set(dirs or []))
    write_json_atomically(path, current, indent=None)


def forget() -> None:
    """The driver cleaned up after itself."""
    _record_path(os.getpid()).unlink(missing_ok=True)


def same_process(ident: dict) -> psutil.Process | None:
    """The process noted as {"pid", "created"}, if it still runs (a reused pid does not match)."""
    try:
        p = psutil.Process(ident["pid"])
        return p if abs(p.create_time() - ident["created"]) < 0.01 else None
    except psutil.NoSuchProcess:
        return None


def stop(procs: list[psutil.Process], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is still running after `grace_s`."""
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


def remove_dir_when_released(path: str, timeout: float = 10.0) -> None:
    """Remove a Ray temp dir once no process names it any more. For a moment after Ray's processes
    are told to stop, exiting workers and the log monitor still write into it (dead workers' logs
    move to logs/old), which re-created stray dirs after a plain rmtree in some test runs."""
    deadline = time.monotonic() + timeout
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if not _naming(path) and not os.path.exists(path) or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _naming(path: str) -> list[psutil.Process]:
    """Processes with an argument that is `path` or lies under it (Ray's name their session dir);
    a bare substring match would also take /tmp/raympc-x1 for /tmp/raympc-x."""
    inside = path.rstrip("/") + "/"
    return [p for p in psutil.process_iter(["cmdline"])
            if any(a.endswith(path) or inside in a for a in p.info["cmdline"] or ())]


def reap(include_live: bool = False) -> list[str]:
    """Stop the processes and remove the dirs of drivers that are gone. Returns what was undone."""
    undone: list[str] = []
    if not RECORD_DIR.exists():
        return undone
    for path in sorted(RECORD_DIR.glob("driver-*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        driver = rec.get("driver")
        if driver and same_process(driver) is not None and not include_live:
            continue
        procs = [p for p in (same_process(i) for i in rec.get("processes", [])) if p is not None]
        stop(procs)
        for d in rec.get("dirs", []):
            # Workers the raylet started after the record was written are not in it; their command
            # lines name the driver's private temp dir, so they are found (and only they) by it.
            stop(_naming(d))
            if os.path.isdir(d):
                remove_dir_when_released(d)
        pid = driver["pid"] if driver else "?"
        undone.append(f"driver {pid}: stopped {len(procs)} leftover process(es), removed {len(rec.get('dirs', []))} dir(s)")
        path.unlink(missing_ok=True)
    return undone

