"""`raympc bench activations`: cost and accuracy of every registered implementation under SPU.

Per implementation: bytes per element (rank 0, and per rank averaged over all three: how bytes
split between ranks varies run to run, their total does not), send actions, time on the Ray
parties under each network profile, max and mean abs error on a uniform grid (and on recorded
inputs, if given), and the byte ratio against spu-direct under SPU's Taylor exp and under its
Pade exp (CipherDM's baseline). Table, JSON and a cost/error plot. Each row also carries its
cost by SPU MPC kernel (`msb_a2b` for comparisons, `mul_aa`, `trunc_a`, `b2a`, ...), which `--ops`
prints: where an implementation's bytes and messages go.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from raympc import activations as acts
from raympc.activations.exact import exact
from raympc.activations.recorded import load_inputs
from raympc.errors import ConfigError
from raympc.runtime.config import SpuConfig
from raympc.runtime.metrics import RunMetrics
from raympc.runtime.session import Session
from raympc.util.figures import pyplot
from raympc.util.results import write_results

ELEMENTS = 65536
SOFTMAX_ROW = 128
GROUPNORM_SHAPE = (256, 64)  # (positions, channels) per sample: 32 groups of 512 values, as in U-Nets
NETWORKS = ("unshaped", "wan")


def _inputs(impl: acts.Implementation, n: int) -> np.ndarray:
    lo, hi = impl.grid
    if impl.activation == "softmax":
        rng = np.random.default_rng(0)
        return rng.uniform(lo, hi, (n // SOFTMAX_ROW, SOFTMAX_ROW)).astype(np.float32)
    if impl.activation == "groupnorm":
        rng = np.random.default_rng(0)
        shape = (n // int(np.prod(GROUPNORM_SHAPE)), *GROUPNORM_SHAPE)
        return (rng.normal(0, 2, shape) + rng.normal(0, 1, shape[-1])).astype(np.float32)
    return np.linspace(lo, hi, n, dtype=np.float32)


def measure_implementation(session: Session, impl: acts.Implementation, n: int,
                           recorded: dict[str, np.ndarray]) -> dict:
    """One implementation's bytes, actions, time and errors on its grid (and on recorded inputs)."""
    x = _inputs(impl, n)
    result = session.run(impl.fn, x)
    m = result.metrics
    err = np.abs(np.asarray(result.outputs, np.float64) - exact(impl.activation, x))
    row = {"activation": impl.activation, "impl": impl.impl, "elements": int(x.size),
           "rank0_bytes_per_elem": m.ranks[0].send_bytes / x.size,
           "bytes_per_elem_per_rank": m.send_bytes / x.size / len(m.ranks),
           "bytes_per_elem": m.send_bytes / x.size, "send_actions": m.send_actions,
           "time_s": m.wall_time_s, "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
           "mpc_ops": kernel_costs(m, x.size)}
    if impl.activation in recorded:
        real = recorded[impl.activation]
        real_err = np.abs(np.asarray(session.run(impl.fn, real).outputs, np.float64) - exact(impl.activation, real))
        row.update(inputs_max_abs_error=float(real_err.max()), inputs_mean_abs_error=float(real_err.mean()))
    return row


def kernel_costs(metrics: RunMetrics, elements: int) -> dict[str, dict[str, float]]:
    """Per MPC kernel with traffic, or with at least 5% of the compute: calls, bytes per element,
    send actions and time, each per rank (averaged over the ranks; SPU's profile: the counts are
    deterministic for a program, the times are not)."""
    kernels = metrics.op_costs("mpc")
    compute = sum(c["time_s"] for c in kernels.values())
    return {op: {"calls_per_rank": c["calls"], "bytes_per_elem_per_rank": c["send_bytes"] / elements,
                 "send_actions_per_rank": c["send_actions"], "time_s_per_rank": c["time_s"]}
            for op, c in sorted(kernels.items(), key=lambda kv: (-kv[1]["send_bytes"], -kv[1]["time_s"]))
            if c["send_bytes"] or c["send_actions"] or c["time_s"] >= 0.05 * compute}


def _time_only(session: Session, impl: acts.Implementation, n: int) -> float:
    return session.run(impl.fn, _inputs(impl, n)).metrics.wall_time_s


def bench_activations(elements: int = ELEMENTS, out: Path | None = None, console: Console | None = None,
                      networks: tuple[str, ...] = NETWORKS, inputs: dict[str, Path] | None = None,
                      only: tuple[str, ...] | None = None, ops: bool = False) -> dict:
    """`inputs` maps an activation to a .npy/.npz of recorded inputs (errors are also reported there);
    `only` limits the bench to some activations (every implementation of each, so the ratios keep
    their baselines); `ops` prints each implementation's cost by MPC kernel."""

    console = console or Console()
    known = sorted({i.activation for i in acts.implementations()})
    if only and (unknown := sorted(set(only) - set(known))):
        raise ConfigError(f"--only: no activation {', '.join(unknown)}; known: {', '.join(known)}")
    wanted = [i for i in acts.implementations() if not only or i.activation in only]
    if inputs and "softmax" in inputs:
        raise ConfigError("--inputs covers elementwise activations; softmax rows have their own length")
    rng = np.random.default_rng(0)
    recorded = {a: rng.choice(v := load_inputs(p), size=min(elements, v.size), replace=False).astype(np.float32)
                for a, p in (inputs or {}).items()}
    rows: list[dict] = []
    for exp_mode in ("taylor", "pade"):
        with Session(spu_config=SpuConfig(exp_mode=exp_mode)) as session:
            impls = wanted if exp_mode == "taylor" else [i for i in wanted if i.impl == "spu-direct"]
            for impl in track(impls, description=f"activations, exp {exp_mode}", console=console):
                rows.append({**measure_implementation(session, impl, elements, recorded), "exp_mode": exp_mode})
        for network in networks:
            if network == "unshaped":
                for r in rows:
                    if r["exp_mode"] == exp_mode:
                        r["time_unshaped_s"] = r["time_s"]
                continue
            with Session(spu_config=SpuConfig(exp_mode=exp_mode), network=network) as session:
                for impl in track(impls, description=f"  timing under {network}", console=console):
                    t = _time_only(session, impl, elements)
                    next(r for r in rows if (r["activation"], r["impl"], r["exp_mode"]) ==
                         (impl.activation, impl.impl, exp_mode))[f"time_{network}_s"] = t
    base = {(r["activation"], r["exp_mode"]): r["bytes_per_elem"] for r in rows if r["impl"] == "spu-direct"}
    for r in rows:
        r["bytes_vs_direct_taylor"] = r["bytes_per_elem"] / base[(r["activation"], "taylor")]
        r["bytes_vs_direct_pade"] = r["bytes_per_elem"] / base[(r["activation"], "pade")]

    table = Table(title=f"secure activations, ABY3 FM64, {elements:,} elements (softmax: rows of {SOFTMAX_ROW}; "
                        f"groupnorm: samples of {GROUPNORM_SHAPE[0]} positions x {GROUPNORM_SHAPE[1]} channels)")
    time_cols = [f"s {n}" for n in networks]
    cols = ["activation", "impl", "exp", "rank-0 B/elem", "B/elem/rank", "actions", *time_cols,
            "max err", "mean err"] + (["inputs max err"] if recorded else []) + ["vs direct taylor", "vs direct pade"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("activation", "impl", "exp") else "right")
    for r in sorted(rows, key=lambda r: (r["activation"], r["exp_mode"], r["bytes_per_elem"])):
        cells = [r["activation"], r["impl"], r["exp_mode"], f"{r['rank0_bytes_per_elem']:.0f}",
                 f"{r['bytes_per_elem_per_rank']:.0f}", f"{r['send_actions']:,}",
                 *(f"{r.get(f'time_{n}_s', float('nan')):.2f}" for n in networks),
                 f"{r['max_abs_error']:.2e}", f"{r['mean_abs_error']:.2e}"]
        if recorded:
            cells.append(f"{r['inputs_max_abs_error']:.2e}" if "inputs_max_abs_error" in r else "")
        cells += [f"{r['bytes_vs_direct_taylor']:.2f}x", f"{r['bytes_vs_direct_pade']:.2f}x"]
        table.add_row(*cells)
    console.print(table)
    if ops:
        _print_kernel_costs(rows, console)
    result = {"benchmark": "activations", "networks": list(networks), "rows": rows}
    write_results(out, "bench-activations", result, console, plot=lambda path: _plot(rows, path))
    return result


def _print_kernel_costs(rows: list[dict], console: Console) -> None:
    for activation in sorted({r["activation"] for r in rows}):
        table = Table(title=f"{activation}: cost by SPU MPC kernel, per rank (averaged over the three)")
        for col in ("impl", "exp", "kernel", "calls", "B/elem", "send actions", "time s (unshaped)"):
            table.add_column(col, justify="left" if col in ("impl", "exp", "kernel") else "right")
        for r in sorted((r for r in rows if r["activation"] == activation), key=lambda r: r["bytes_per_elem"]):
            for i, (op, c) in enumerate(r["mpc_ops"].items()):
                table.add_row(r["impl"] if i == 0 else "", r["exp_mode"] if i == 0 else "", op,
                              f"{c['calls_per_rank']:.1f}", f"{c['bytes_per_elem_per_rank']:.1f}",
                              f"{c['send_actions_per_rank']:.1f}", f"{c['time_s_per_rank']:.3f}",
                              end_section=i == len(r["mpc_ops"]) - 1)
        console.print(table)


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
            ax.scatter(r["bytes_per_elem_per_rank"], max(r["max_abs_error"], 1e-7), label=label, color=color)
        ax.set_xlim(left=0)
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(f"{activation}: cost vs error")
        ax.set_xlabel("bytes / element / rank")
        ax.set_ylabel("max abs error")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
