"""`raympc bench runtime`: the Ray-hosted parties against SPU's in-process simulation.

Same compiled program, same inputs, same SPU config and yacl thread count per party. Reports the
median wall time of each path over `repeats` runs, their ratio (target <= 1.15) and the three-rank
byte totals (target: equal within 1%).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from raympc.bench.link_latency import link_round_trips
from raympc.runtime.session import Session
from raympc.runtime.simulation import simulate_brpc_processes, simulate_in_ray
from raympc.runtime.values import Secret
from raympc.util.results import write_results
from workloads.kernels import KERNELS


def bench_runtime(scale: int = 8, repeats: int = 5, out: Path | None = None,
                  console: Console | None = None) -> dict:
    console = console or Console()
    rng = np.random.default_rng(0)
    rows = []
    with Session() as session:
        for kernel in KERNELS.values():
            inputs = kernel.make_inputs(rng, scale)
            tagged = [Secret(a, owner=o) for a, o in zip(inputs, kernel.owners)]
            fn = session.compile(kernel.fn, *tagged)
            fn(*tagged)  # warm-up: program shipped to the parties, brpc connections warm
            ray_runs = [fn(*tagged).metrics for _ in track(range(repeats), description=f"{kernel.name} on Ray")]
            simulate_in_ray(fn.program, inputs, session.spu_config)  # warm-up
            ref_runs = [simulate_in_ray(fn.program, inputs, session.spu_config)
                        for _ in track(range(repeats), description=f"{kernel.name} in-process")]
            with console.status(f"{kernel.name} in plain processes over brpc..."):
                brpc_t = statistics.median(simulate_brpc_processes(fn.program, inputs, session.spu_config, repeats))
            ray_t = statistics.median(m.wall_time_s for m in ray_runs)
            ref_t = statistics.median(r.wall_time_s for r in ref_runs)
            ray_b, ref_b = ray_runs[0].send_bytes, ref_runs[0].send_bytes
            rows.append({
                "kernel": kernel.name, "scale": scale, "repeats": repeats,
                "ray_wall_s": ray_t, "inprocess_wall_s": ref_t, "time_ratio": ray_t / ref_t,
                "brpc_processes_wall_s": brpc_t, "ray_vs_brpc_processes": ray_t / brpc_t,
                "ray_send_bytes": ray_b, "inprocess_send_bytes": ref_b,
                "bytes_rel_diff": abs(ray_b - ref_b) / max(ref_b, 1),
                "ray_send_actions": ray_runs[0].send_actions, "inprocess_send_actions": ref_runs[0].send_actions,
            })
    table = Table(title=f"Ray-hosted vs in-process SPU (median of {repeats}; targets: time <= 1.15x, bytes within 1%)")
    for col in ("kernel", "Ray s", "in-process s", "ratio", "brpc processes s", "Ray/processes",
                "Ray bytes", "in-process bytes", "bytes diff"):
        table.add_column(col, justify="right" if col != "kernel" else "left")
    for r in rows:
        table.add_row(r["kernel"], f"{r['ray_wall_s']:.3f}", f"{r['inprocess_wall_s']:.3f}", f"{r['time_ratio']:.3f}x",
                      f"{r['brpc_processes_wall_s']:.3f}", f"{r['ray_vs_brpc_processes']:.3f}x",
                      f"{r['ray_send_bytes']:,}", f"{r['inprocess_send_bytes']:,}", f"{100 * r['bytes_rel_diff']:.3f}%")
    console.print(table)
    console.print("in-process: SPU's memory links, three runtimes on threads of one process; brpc processes: "
                  "the same parties and links as a session, without Ray. Ray/processes is what Ray's hosting costs.")
    with console.status("round trips of one 64-byte message..."):
        rtts = link_round_trips()
    console.print(f"one 64-byte round trip: SPU brpc link {rtts['brpc_s'] * 1e3:.3f} ms, SPU memory link "
                  f"{rtts['mem_s'] * 1e3:.3f} ms, plain TCP socket {rtts['tcp_s'] * 1e3:.3f} ms")
    result = {"benchmark": "runtime", "rows": rows, "round_trip": rtts}
    write_results(out, "bench-runtime", result, console)
    return result
