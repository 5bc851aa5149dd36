"""Result files: a benchmark's or run's figures as JSON, stamped with how and where they were made.

Every result file carries `provenance` (the command line, the date, the machine and the package
versions), so a figure quoted in the docs can be traced to the command that regenerates it
(`raympc results` renders the committed ones into docs/results.md).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from raympc.util.files import write_json_atomically

PACKAGES = ("raympc", "spu", "jax", "jaxlib", "flax", "ray", "pyroute2", "numpy")


def versions() -> dict[str, str]:
    """Python's and the main packages' versions ("not installed" for a missing one)."""
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def command_line() -> str:
    """How this process was started, as a user would type it (`raympc bench netsim --out ...`)."""
    entry = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if entry in ("raympc", "cli.py", "__main__.py"):
        return shlex.join(["raympc", *sys.argv[1:]])
    return shlex.join(["python", *sys.argv]) if sys.argv else "python"


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance() -> dict[str, Any]:
    """Command line, UTC date, machine (CPUs, memory, kernel) and versions of this process."""
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        memory_gib = None
    return {
        "command": command_line(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": os.cpu_count(), "memory_gib": memory_gib, "arch": platform.machine(),
                    "kernel": platform.release()},
        "versions": versions(),
        "commit": _commit(),
    }


def write_results(out: Path | None, name: str, result: dict, console: Console,
                  plot: Callable[[Path], None] | None = None, kind: str | None = None) -> Path | None:
    """Write `result` as `out/NAME.json` with its kind and provenance, and `out/NAME.png` if `plot`.

    Args:
        out: the directory (created if missing); None writes nothing.
        name: the file stem.
        result: JSON-serialisable figures.
        console: where to say what was written.
        plot: draws the figure into the path it is given.
        kind: what the result is, for the results page (default: `name`).

    Returns:
        The JSON file's path, or None when `out` is None.
    """
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    stamped = {"kind": kind or name, "provenance": provenance(), **result}
    written = [write_json_atomically(out / f"{name}.json", stamped, indent=2, default=str)]
    if plot is not None:
        written.append(out / f"{name}.png")
        plot(written[1])
    console.print("written " + " and ".join(str(p) for p in written))
    return written[0]
