"""Where benchmark results go: a JSON file and, where a picture helps, a PNG beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from rich.console import Console


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_results(out: Path | None, name: str, result: dict, console: Console,
                  plot: Callable[[Path], None] | None = None) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{name}.json"]
    written[0].write_text(json.dumps(result, indent=2))
    if plot is not None:
        written.append(out / f"{name}.png")
        plot(written[1])
    console.print("written " + " and ".join(str(p) for p in written))
