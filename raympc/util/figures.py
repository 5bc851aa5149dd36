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


def save_agreement(plain: np.ndarray, secure: np.ndarray, title: str, path: Path) -> None:
    """A PNG of every secure output value against its plaintext twin, on the identity line: how far
    MPC moved a result of any shape."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    x, y = np.ravel(plain), np.ravel(secure)
    ax.scatter(x, y, s=6, alpha=0.6)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("plaintext")
    ax.set_ylabel("secure")
    ax.set_title(f"{title}: max |error| {float(np.abs(y - x).max()):.2e}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_timeline(messages: list, path: Path, title: str, start: float | None = None) -> None:
    """`timeline_figure` saved to `path`."""
    fig = timeline_figure(messages, title, start)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def timeline_figure(messages: list, title: str, start: float | None = None):
    """One lane per directed link, one bar per message from send to delivery (`netsim.Message`s),
    shaded by size: sequential thin bars are a latency-bound step, long bars back to back a
    bandwidth-bound one, and gaps on every lane compute. Times in ms from `start` (default: the
    first send)."""
    links = sorted({m.link for m in messages}, key=lambda k: tuple(int(p) for p in k.split("->")))
    if start is None:
        start = min((m.sent for m in messages), default=0.0)
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(links) + 1.6))
    sizes = np.array([m.nbytes for m in messages], dtype=float)
    shade = plt.cm.viridis(np.log10(np.maximum(sizes, 1)) / max(np.log10(max(sizes.max(initial=1), 10)), 1))
    for i, link in enumerate(links):
        mine = [(j, m) for j, m in enumerate(messages) if m.link == link]
        ax.broken_barh([((m.sent - start) * 1e3, max((m.delivered - m.sent) * 1e3, 0.005)) for _, m in mine],
                       (i - 0.4, 0.8), facecolors=[shade[j] for j, _ in mine], linewidth=0)
        total = sum(m.nbytes for _, m in mine)
        ax.text(1.005, i, f"{len(mine):,} msgs, {total / 1e6:,.2f} MB", transform=ax.get_yaxis_transform(),
                va="center", fontsize=8)
    ax.set_yticks(range(len(links)), [f"link {k}" for k in links])
    ax.set_xlabel("ms (bar: from send to delivery; colour: log size, light = large)")
    ax.set_title(title)
    fig.tight_layout()
    return fig
