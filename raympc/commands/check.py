"""`raympc check WORKLOAD`: what a workload will do under MPC, before a sweep spends hours on it.

A plaintext dry run of one step prints every nonlinearity call site and what runs there under the
policy (swapped, missed, stock), and every value SPU's fixed point cannot hold (an attention mask
of -1e9, finfo.min, inf) with its operation and source location. Then, unless `--no-cost`, two
unshaped secure steps measure what one step costs, and the analytic network model prices it on
a few network presets.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.table import Table

import raympc.activations as acts
from raympc.activations.coverage import Coverage
from raympc.activations.ranges import SAFE_LIMIT, Finding, as_dicts, out_of_range
from raympc.commands.common import Subparsers, make_console, names, policy, workload
from raympc.runtime.session import Session
from raympc.runtime.support import Unsupported, unsupported_ops
from raympc.runtime.support import as_dicts as unsupported_dicts
from raympc.runtime.netmodel import Calibration, RunCost
from workloads.protocol import WorkloadOptions
from workloads.registry import build, run_workload


def register(sub: Subparsers) -> None:
    p = sub.add_parser("check", help="preflight a workload: activation coverage, fixed-point range, cost per network")
    p.add_argument("workload", type=workload, help="a shipped workload's name, or package.module:factory")
    p.add_argument("--activations", type=policy, default="raympc", help="the policy to check (default raympc)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--scale", default="tiny", help="sd-unet only")
    p.add_argument("--networks", type=names, default=("lan", "wan", "wan-slow"),
                   help="presets or RATE,DELAY profiles to price one step on")
    p.add_argument("--no-cost", action="store_true", help="plaintext checks only: no secure steps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    check(args.workload, args.activations, batch=args.batch, scale=args.scale, networks=args.networks,
          cost=not args.no_cost, console=make_console())


def check(workload: str, activations: str = "raympc", batch: int = 1, scale: str = "tiny",
          networks: tuple[str, ...] = ("lan", "wan", "wan-slow"), cost: bool = True,
          console: Console | None = None) -> dict[str, Any]:
    """Preflight `workload` under the policy `activations`.

    Returns:
        `coverage` (every nonlinearity call site), `fixed_point` (values out of range), and with
        `cost` the measured unshaped step and its predicted time per network.

    Raises:
        WorkloadError: the workload cannot be built.
    """
    console = console or Console()
    w = build(workload, WorkloadOptions(steps=1, batch=batch, scale=scale, breakdown=False))
    with acts.use(activations):
        sites = acts.coverage(w.step, *w.step_arguments(0))
    console.print(_coverage_table(sites, workload, activations))
    findings = out_of_range(w.step, *w.step_arguments(0))
    console.print(_range_table(findings))
    with console.status("compiling with SPU"), acts.use(activations):
        rejected = unsupported_ops(w.step, *w.step_arguments(0))
    console.print(_unsupported_table(rejected))
    report: dict[str, Any] = {"workload": workload, "activations": activations, "coverage": sites.to_dict(),
                              "fixed_point": as_dicts(findings), "unsupported": unsupported_dicts(rejected)}
    if cost and rejected:
        console.print("[bold red]no secure steps: SPU cannot compile this program[/]")
    elif cost:
        report["cost"] = _cost(workload, activations, batch, scale, networks, console)
    return report


def _coverage_table(sites: Coverage, workload: str, activations: str) -> Table:
    table = Table(title=f"{workload} under {activations!r}: {sites.summary()}")
    for col in ("kind", "shape", "where", "runs"):
        table.add_column(col)
    style = {"missed": "bold red", "stock": "yellow", "swapped": "green"}
    for s in sites.sites:
        table.add_row(s.kind, str(list(s.shape)), s.where, f"[{style[s.status]}]{s.status}: {s.runs}[/]")
    return table


def _range_table(findings: list[Finding]) -> Table:
    title = f"fixed point (FM64, 18 fraction bits): {len(findings)} operations make values of {SAFE_LIMIT:.3g} or more"
    table = Table(title=title, caption=None if not findings else
                  "SPU's stock exp wraps on such values (a masked softmax row comes out as zeros); raympc's exp "
                  "clamps its input at -16 and keeps them")
    for col in ("made by", "where", "largest |value|", "shape"):
        table.add_column(col)
    for f in findings:
        table.add_row(f.what, f.where, f"{f.largest:.3g}", str(list(f.shape)))
    if not findings:
        table.add_row("nothing", "", "", "")
    return table


def _unsupported_table(rejected: list[Unsupported]) -> Table:
    table = Table(title=f"operations SPU cannot compile: {len(rejected)}")
    for col in ("operation", "where", "shape", "SPU says"):
        table.add_column(col)
    for u in rejected:
        table.add_row(u.primitive, u.where, str(list(u.shape)), u.reason)
    if not rejected:
        table.add_row("none: the whole step compiles", "", "", "")
    return table


def _cost(workload: str, activations: str, batch: int, scale: str, networks: tuple[str, ...],
          console: Console) -> dict[str, Any]:
    """One unshaped step per distinct program measured, priced on each network. A policy whose
    forms depend on the network (raympc's softmax) compiles another program for some networks:
    those are measured as compiled for them (unshaped), not priced from another program."""
    opts = WorkloadOptions(steps=2, batch=batch, scale=scale, breakdown=False)
    w = build(workload, replace(opts, steps=1))
    programs: dict[tuple[str, ...], list[str]] = {}
    with acts.use(activations):
        for network in networks:
            programs.setdefault(acts.coverage(w.step, *w.step_arguments(0), network=network).forms, []).append(network)
    calibration = Calibration.load()
    table = Table(title=f"one step, predicted per network ({calibration.note or 'calibration'})")
    for col in ("network", "MB / step", "send actions", "unshaped s", "predicted s / step", "compute", "latency",
                "bandwidth", "overhead"):
        table.add_column(col, justify="left" if col == "network" else "right")
    predicted, steps = {}, {}
    for group in programs.values():
        with console.status(f"two unshaped secure steps, compiled for {', '.join(group)}"), \
                Session(compile_for=group[0]) as session, acts.use(activations):
            done = run_workload(workload, session, opts)
        step = min(done.per_step, key=lambda s: s["time_s"])  # noise on a shared machine only adds time
        unshaped = RunCost.from_dict(step, network="unshaped")
        for network in group:
            p = predicted[network] = calibration.predict(unshaped, network)
            steps[network] = {k: step[k] for k in ("time_s", "send_bytes", "send_actions", *RunCost.FIELDS)}
            table.add_row(network, f"{step['send_bytes'] / 1e6:,.2f}", f"{step['send_actions']:,}",
                          f"{step['time_s']:.2f}", f"{p['time_s']:.2f}", f"{p['compute_s']:.2f}",
                          f"{p['latency_s']:.2f}", f"{p['bandwidth_s']:.2f}", f"{p['overhead_s']:.2f}")
    console.print(table)
    return {"step": steps, "predicted": predicted}
