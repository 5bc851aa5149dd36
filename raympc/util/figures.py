"""Figures: matplotlib on its file-only backend, and the sample grids that runs write."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # runs and benchmarks are headless; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    return plt


def save_grid(rows: dict[str, np.ndarray], path: Path) -> None:
    """A PNG with one row per entry of `rows`, titled by its key: channel 0 of each image, in [-1, 1]."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 1.2, 1.2 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(imgs):
                ax.imshow(np.clip(imgs[c, :, :, 0], -1, 1), cmap="gray", vmin=-1, vmax=1)
        axes[r][0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
