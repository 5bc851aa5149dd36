"""`raympc bench tls`: what TLS on the party links costs, per kernel and network profile.

Each (network, TLS on/off) pair gets its own session; runs alternate between the two sessions of a
network so machine noise hits both alike. SPU's byte counts are payload and must not change; the
time ratio (median, TLS on / off) is the cost. Link set-up time is reported too (TLS handshakes).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from raympc.cluster.ray_instance import start_or_join
from raympc.runtime.session import Session
from raympc.runtime.values import Secret
from raympc.util.results import write_results
from workloads.kernels import KERNELS


def bench_tls(scale: int = 8, repeats: int = 5, networks: tuple[str, ...] = ("unshaped", "wan"),
              out: Path | None = None, console: Console | None = None) -> dict:
    console = console or Console()
    rng = np.random.default_rng(0)
    inputs = {k.name: [Secret(a, owner=o) for a, o in zip(k.make_inputs(rng, scale), k.owners)] for k in KERNELS.values()}
    rows = []
    ray_handle = start_or_join(num_cpus=6)  # two sessions of three 1-CPU parties side by side
    with ray_handle, Progress(console=console) as progress:
        for network in networks:
            sessions = {tls: Session(network=network, tls=tls) for tls in (False, True)}
            try:
                for s in sessions.values():
                    s.open()
                task = progress.add_task(f"TLS off/on under {network}", total=len(KERNELS) * repeats)
                for kernel in KERNELS.values():
                    fns = {tls: s.compile(kernel.fn, *inputs[kernel.name]) for tls, s in sessions.items()}
                    for fn in fns.values():
                        fn(*inputs[kernel.name])  # warm-up
                    times: dict[bool, list[float]] = {False: [], True: []}
                    nbytes = {}
                    for _ in range(repeats):
                        for tls, fn in fns.items():
                            m = fn(*inputs[kernel.name]).metrics
                            times[tls].append(m.wall_time_s)
                            nbytes[tls] = m.send_bytes
                        progress.advance(task)
                    off, on = statistics.median(times[False]), statistics.median(times[True])
                    rows.append({"network": network, "kernel": kernel.name, "scale": scale, "repeats": repeats,
                                 "plain_s": off, "tls_s": on, "tls_over_plain": on / off,
                                 "plain_bytes": nbytes[False], "tls_bytes": nbytes[True]})
            finally:
                for s in sessions.values():
                    s.close()
    table = Table(title=f"TLS on the party links (median of {repeats} alternating runs)")
    for col in ("network", "kernel", "plain s", "TLS s", "TLS / plain", "SPU bytes (plain = TLS)"):
        table.add_column(col, justify="left" if col in ("network", "kernel") else "right")
    for r in rows:
        same = "=" if r["plain_bytes"] == r["tls_bytes"] else "differ!"
        table.add_row(r["network"], r["kernel"], f"{r['plain_s']:.3f}", f"{r['tls_s']:.3f}",
                      f"{r['tls_over_plain']:.2f}x", f"{r['plain_bytes']:,} {same}")
    console.print(table)
    result = {"benchmark": "tls", "rows": rows}
    write_results(out, "bench-tls", result, console)
    return result
