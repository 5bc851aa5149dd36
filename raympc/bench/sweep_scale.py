"""`raympc bench sweep-scale`: parallel efficiency of a sweep on a 3-node cluster emulated on this
machine (`raympc cluster emulate`): the same points once one at a time, once three at a time.

    efficiency = serial wall time / (3 x parallel wall time)

Each emulated node gets room for one packed point (its task and three parties), so three points
run at once, one per node, each with its own relay-shaped links. The points are shaped (WAN by
default).

By default each node's processes are held to cores/3 cores (a cgroup quota, `raympc.cpu_share`),
in the serial run as in the parallel one: three machines do not lend each other CPU, so a point
gets the same CPU whether its neighbours are busy or idle, and the figure measures the sweep
(scheduling, reservations, shared head, host kernel and links), not the host's core count.
`--shared-cores` lets the nodes share every core instead: a point running alone then has the
whole host, three at once a third of it each, and on a 2-core host that bounds the figure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from raympc.cluster import emulated as emulate
from raympc.sweeps.reservation import TASK_CPUS
from raympc.sweeps.runner import run_sweep
from raympc.sweeps.store import ResultStore
from raympc.util.results import write_results

PARALLEL = 3


def bench_sweep_scale(points: int = 6, steps: int = 4, network: str = "wan", out: Path = Path("runs/bench/sweep-scale"),
                      shared_cores: bool = False, console: Console | None = None) -> dict:
    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "spec.in.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "sweep-scale", "description": f"{points} shaped tiny points for the parallel-efficiency bench",
        "base": {"workload": "tiny-mnist", "steps": steps, "network": network, "breakdown": False,
                 "placement": "pack", "party_cpus": 1.0},
        "grid": {"seed": list(range(points))}}))
    cores = os.cpu_count() or 1
    share = None if shared_cores else round(cores / PARALLEL, 3)
    running = emulate.load()
    if running is not None and running.cpu_share != share:
        raise RuntimeError(f"an emulated cluster with cpu share {running.cpu_share} is up; this bench wants {share}: "
                           "run `raympc cluster emulate down` first")
    owned = running is None
    if owned:
        with console.status("starting a 3-node emulated cluster"):
            emulate.up(nodes=3, cpus_per_node=int(TASK_CPUS + 3), cpu_share_cores=share)
    walls: dict[str, float] = {}
    nodes: dict[str, list[str]] = {}
    try:
        for name, parallel in (("serial", 1), ("parallel", PARALLEL)):
            target = out / name
            if target.exists():
                for f in target.glob("*"):
                    if f.is_file():
                        f.unlink()
            start = time.perf_counter()
            summary = run_sweep(spec, target, address="emulated", parallel=parallel, console=console)
            walls[name] = time.perf_counter() - start
            rows = ResultStore(target).rows()
            bad = [r.get("error") for r in rows if r["status"] != "ok"]
            if bad or summary.ran != points:
                raise RuntimeError(f"{name} sweep did not finish cleanly: {bad}")
            nodes[name] = [r["host"]["ray_node"] for r in rows]
            walls[f"{name}_busy"] = summary.busy_s
    finally:
        if owned:
            emulate.down()
    efficiency = walls["serial"] / (PARALLEL * walls["parallel"])
    result = {"points": points, "steps": steps, "network": network, "parallel": PARALLEL, "cores": cores,
              "cores_per_node": share,
              "wall_s": walls, "efficiency": efficiency, "nodes": nodes,
              "distinct_nodes_parallel": len(set(nodes["parallel"]))}
    per_node = "sharing all cores" if share is None else f"{share:g} cores each"
    table = Table(title=f"sweep of {points} points ({steps} tiny U-Net steps under {network}) on 3 emulated nodes "
                        f"({per_node}), {cores} cores")
    for c in ("run", "points at once", "wall s", "sum of point times s", "nodes used"):
        table.add_column(c, justify="right")
    for name, par in (("serial", 1), ("parallel", PARALLEL)):
        table.add_row(name, str(par), f"{walls[name]:.1f}", f"{walls[name + '_busy']:.1f}", str(len(set(nodes[name]))))
    console.print(table)
    console.print(f"parallel efficiency = {walls['serial']:.1f} / ({PARALLEL} x {walls['parallel']:.1f}) = {efficiency:.0%}")
    write_results(out, "sweep-scale", result, console)
    return result
