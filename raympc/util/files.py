"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def replace_atomically(path: Path, write: Callable[[Path], None], mode: int | None = None) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`.

    The rename is atomic on one file system, so a concurrent reader (a resumed sweep, `raympc
    netsim reset` after a crash, another process loading weights) sees the old file or the new one.

    Args:
        path: the file to create or replace; its directory is created if missing.
        write: writes the whole content to the path it is given.
        mode: permission bits for the new file (default: the process umask's).

    Returns:
        `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    """`path.write_text(text)`, atomically (see `replace_atomically`)."""
    return replace_atomically(path, lambda tmp: tmp.write_text(text))


def write_json_atomically(path: Path, data: Any, indent: int | None = 1, default: Callable | None = None) -> Path:
    """`data` as JSON at `path`, atomically (see `replace_atomically`)."""
    return write_text_atomically(path, json.dumps(data, indent=indent, default=default))
