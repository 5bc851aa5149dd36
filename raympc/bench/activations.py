"""`raympc bench activations`: cost and accuracy of every registered implementation under SPU.

Per implementation: rank-0 and all-rank bytes per element, send actions, time on the Ray parties,
max and mean abs error on a uniform grid, and the byte ratio against spu-direct under SPU's
Taylor exp and under its Pade exp (CipherDM's baseline). Table, JSON and a cost/error plot.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from .. import activations as acts
from ..config import SpuConfig
from ..session import Session
from .output import pyplot, write_results

ELEMENTS = 65536
SOFTMAX_ROW = 128


def _exact(activation: str, x: np.ndarray) -> np.ndarray:
    v = x.astype(np.float64)
    if activation == "softmax":
        e = np.exp(v - v.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return {
        "silu": lambda: v / (1 + np.exp(-v)),
        "mish": lambda: v * np.tanh(np.log1p(np.exp(v))),
        "gelu_tanh": lambda: np.asarray(jax.nn.gelu(v, approximate=True), np.float64),
        "gelu_erf": lambda: np.asarray(jax.nn.gelu(v, approximate=False), np.float64),
        "exp": lambda: np.exp(v),
    }[activation]()


def _inputs(impl: acts.Implementation, n: int) -> np.ndarray:
    lo, hi = impl.grid
    if impl.activation == "softmax":
        rng = np.random.default_rng(0)
        return rng.uniform(lo, hi, (n // SOFTMAX_ROW, SOFTMAX_ROW)).astype(np.float32)
    return np.linspace(lo, hi, n, dtype=np.float32)


def _measure(session: Session, impl: acts.Implementation, n: int) -> dict:
    x = _inputs(impl, n)
    result = session.run(impl.fn, x)
    m = result.metrics
    err = np.abs(np.asarray(result.outputs, np.float64) - _exact(impl.activation, x))
    return {"activation": impl.activation, "impl": impl.impl, "elements": int(x.size),
            "rank0_bytes_per_elem": m.ranks[0].send_bytes / x.size, "bytes_per_elem": m.send_bytes / x.size,
            "send_actions": m.send_actions, "time_s": m.wall_time_s,
            "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean())}


def bench_activations(elements: int = ELEMENTS, out: Path | None = None, console: Console | None = None) -> dict:
    console = console or Console()
    rows: list[dict] = []
    for exp_mode in ("taylor", "pade"):
        with Session(spu_config=SpuConfig(exp_mode=exp_mode)) as session:
            impls = acts.implementations() if exp_mode == "taylor" else \
                [i for i in acts.implementations() if i.impl == "spu-direct"]
            for impl in track(impls, description=f"activations, exp {exp_mode}", console=console):
                rows.append({**_measure(session, impl, elements), "exp_mode": exp_mode})
    base = {(r["activation"], r["exp_mode"]): r["bytes_per_elem"] for r in rows if r["impl"] == "spu-direct"}
    for r in rows:
        r["bytes_vs_direct_taylor"] = r["bytes_per_elem"] / base[(r["activation"], "taylor")]
        r["bytes_vs_direct_pade"] = r["bytes_per_elem"] / base[(r["activation"], "pade")]

    table = Table(title=f"secure activations, ABY3 FM64, {elements:,} elements (softmax: rows of {SOFTMAX_ROW})")
    for col in ("activation", "impl", "exp", "rank-0 B/elem", "all B/elem", "actions", "time s",
                "max err", "mean err", "vs direct (taylor)", "vs direct (pade)"):
        table.add_column(col, justify="left" if col in ("activation", "impl", "exp") else "right")
    for r in sorted(rows, key=lambda r: (r["activation"], r["exp_mode"], r["impl"])):
        table.add_row(r["activation"], r["impl"], r["exp_mode"], f"{r['rank0_bytes_per_elem']:.0f}",
                      f"{r['bytes_per_elem']:.0f}", f"{r['send_actions']:,}", f"{r['time_s']:.2f}",
                      f"{r['max_abs_error']:.2e}", f"{r['mean_abs_error']:.2e}",
                      f"{r['bytes_vs_direct_taylor']:.2f}x", f"{r['bytes_vs_direct_pade']:.2f}x")
    console.print(table)
    result = {"benchmark": "activations", "rows": rows}
    write_results(out, "bench-activations", result, console, plot=lambda path: _plot(rows, path))
    return result


def _plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    activations = sorted({r["activation"] for r in rows})
    cols = 3
    nrows = -(-len(activations) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(activations):]:
        ax.set_visible(False)
    colors: dict[str, str] = {}
    for ax, activation in zip(axes.flat, activations):
        for r in (r for r in rows if r["activation"] == activation):
            label = r["impl"] + (" (pade)" if r["exp_mode"] == "pade" else "")
            color = colors.setdefault(label, f"C{len(colors)}")  # one colour per implementation
            ax.scatter(r["rank0_bytes_per_elem"], max(r["max_abs_error"], 1e-7), label=label, color=color)
        ax.set_xlim(left=0)
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(f"{activation}: cost vs error")
        ax.set_xlabel("rank-0 bytes / element")
        ax.set_ylabel("max abs error")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
