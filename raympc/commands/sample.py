"""`raympc sample`: secure sampling next to plaintext sampling from the same noise, with metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import raympc.activations as acts
from raympc.activations.policy import file_stem
from raympc.commands.common import Subparsers, exp_mode, make_console, out_dir, policy, workload
from raympc.runtime.config import SpuConfig
from raympc.runtime.session import Session
from raympc.runtime.netmodel import floor_correction
from raympc.util.figures import save_agreement, save_grid, save_timeline
from raympc.util.results import write_results
from workloads.protocol import file_stem as workload_stem
from workloads.registry import WORKLOADS, WorkloadOptions, run_workload


def register(sub: Subparsers) -> None:
    p = sub.add_parser("sample", help="secure diffusion sampling next to plaintext from the same noise")
    p.add_argument("--workload", type=workload, default="ddim-mnist",
                   help=f"one of {', '.join(sorted(WORKLOADS))}, or your own as package.module:factory "
                        "(docs/workloads.md)")
    p.add_argument("--scale", default="tiny", help="sd-unet only: tiny, small, medium, wide")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--activations", type=policy, default="raympc",
                   help="implementation (raympc, spu-direct, cipherdm, puma, ...), per activation "
                        "(mish=raympc,softmax=spu-direct), or both (raympc,softmax=raympc-lean)")
    exp_mode(p)
    p.add_argument("--network", default=None, help="network profile (preset or RATE,DELAY)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    p.add_argument("--seed", type=int, default=0)
    out_dir(p, "runs/sample", "sample grid and the run's JSON")
    p.add_argument("--trace", action="store_true",
                   help="keep every party link's message timeline: STEM.trace.json (ui.perfetto.dev) and a figure "
                        "of the first step, STEM.timeline.png")
    p.add_argument("--no-breakdown", action="store_true",
                   help="skip the cost-by-layer-kind replay (it costs about one more step)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    run_sample(args.workload, args.steps, args.activations, args.network, args.batch, args.out, args.seed, args.eta,
               breakdown=not args.no_breakdown, scale=args.scale, exp_mode=args.exp_mode, trace=args.trace,
               console=make_console())


def kinds_table(kinds: dict[str, dict], title: str) -> Table:
    table = Table(title=title)
    for c in ("kind", "calls", "MB sent", "share", "send actions", "time s"):
        table.add_column(c, justify="right" if c != "kind" else "left")
    for kind, v in kinds.items():
        table.add_row(kind, str(v.get("calls", "")), f"{v['send_bytes'] / 1e6:.1f}", f"{v['bytes_share']:.0%}",
                      f"{v['send_actions']:,}", f"{v['time_s']:.2f}")
    return table


def run_sample(workload: str = "ddim-mnist", steps: int = 10, activations: str = "raympc", network: str | None = None,
               batch: int = 4, out: Path = Path("runs/sample"), seed: int = 0, eta: float = 0.0,
               breakdown: bool = True, scale: str = "tiny", exp_mode: str = "taylor", trace: bool = False,
               console: Console | None = None) -> dict:
    """Sample `workload` securely and in plaintext; write its grid (or agreement plot) and JSON to `out`.

    Returns:
        The run's record as written to JSON: per-step and total cost, cost by layer kind,
        quality against plaintext, and the coverage report.

    Raises:
        WorkloadError: the workload cannot be built.
    """
    console = console or Console()
    opts = WorkloadOptions(steps=steps, batch=batch, seed=seed, eta=eta, scale=scale, breakdown=breakdown)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{workload_stem(workload)}-{file_stem(activations)}" + ("" if exp_mode == "taylor" else f"-{exp_mode}")
    traced = {}
    with (Session(network=network, spu_config=SpuConfig(exp_mode=exp_mode), trace=trace) as session,
          acts.use(activations) as mapping, Progress(console=console) as bar):
        task = bar.add_task(f"secure {workload}, {activations} activations, {steps} steps", total=steps)
        done = run_workload(workload, session, opts, on_step=lambda i, s: bar.update(task, advance=1))
        described = session.describe()
        if trace:  # the first secure run is the first step (compiling runs nothing)
            traced = {"trace": Path(session.write_trace(out / f"{stem}.trace.json")).name,
                      "timeline": f"{stem}.timeline.png"}
            save_timeline(session.messages(0), out / traced["timeline"],
                          f"{workload}, {activations}, {described['network'].get('profile')}: step 1",
                          start=session.runs[0][1])
    result = {
        "workload": workload, "steps": steps, "batch": batch, "activations": activations, "exp_mode": exp_mode,
        "mapping": mapping,
        "network": described["network"], "seed": seed, "model": done.info,
        "compile_s": done.compile_s, "per_step": done.per_step, "total": done.total,
        "breakdown_step0": done.breakdown, "quality": done.quality, "coverage": done.coverage.to_dict(), **traced,
    }
    corrected = floor_correction(done.per_step, network, described["network"].get("backend"))
    if corrected is not None:
        result["floor_corrected"] = corrected
    if done.images:
        save_grid({"plaintext": done.plain, f"secure ({activations})": done.secure}, out / f"{stem}.png")
    elif done.plain.ndim == 4:  # latents (batch, channels, h, w): channel 0 of each, scaled to their range
        peak = float(np.abs(done.plain).max()) or 1.0
        first = lambda v: np.moveaxis(v, 1, -1)[..., :1] / peak  # noqa: E731
        save_grid({"plaintext latent": first(done.plain), f"secure ({activations})": first(done.secure)},
                  out / f"{stem}.png")
    else:
        save_agreement(done.plain, done.secure, f"{workload}, {activations}", out / f"{stem}.png")
    write_results(out, stem, result, console)
    table = Table(title=f"{workload}: {steps} steps, batch {batch}, {activations}, network {described['network'].get('profile')}")
    q, t = result["quality"], result["total"]
    cols = {"time s": f"{t['time_s']:.1f}", "MB sent (3 ranks)": f"{t['send_bytes'] / 1e6:.1f}",
            "send actions": f"{t['send_actions']:,}", "PSNR dB (min)": f"{min(q['psnr_db']):.1f}",
            "max err": f"{q['max_abs_error']:.3f}"}
    if "accuracy_secure" in q:
        cols.update({"acc secure": f"{q['accuracy_secure']:.2f}", "acc plain": f"{q['accuracy_plain']:.2f}"})
    for c in cols:
        table.add_column(c, justify="right")
    table.add_row(*cols.values())
    console.print(table)
    if "floor_corrected" in result:
        c = result["floor_corrected"]
        console.print(f"[yellow]{network} is beyond what the relay can give ({c['why']}): {c['measured_s']:.2f} s measured "
                      f"on what it gave; the analytic model puts the profile as set at {c['time_s']:.2f} s "
                      f"({c['change']:+.1%}).[/]")
    if done.breakdown:
        console.print(kinds_table(done.breakdown, "cost of step 1 by layer kind"))
    console.print(("[bold red]" if done.coverage.missed else "") + "activations: " + done.coverage.summary()
                  + ("[/] (the model binds these where `use` cannot reach; `raympc check` lists every site)"
                     if done.coverage.missed else ""))
    console.print(f"wrote {out / stem}.png" + (f", {out / traced['trace']} (open it in ui.perfetto.dev) and "
                                                f"{out / traced['timeline']}" if traced else ""))
    return result
