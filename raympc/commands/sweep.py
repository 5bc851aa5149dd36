"""`raympc sweep SPEC --out DIR`: a grid of experiments from a YAML spec, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from raympc.commands.common import Subparsers, assignments, make_console
from raympc.sweeps.runner import run_sweep


def register(sub: Subparsers) -> None:
    p = sub.add_parser("sweep", help="run a grid of experiments from a YAML spec (resumable)")
    p.add_argument("spec", type=Path, help="sweep spec (see workloads/specs/)")
    p.add_argument("--out", type=Path, required=True, help="results directory (rerun to resume)")
    p.add_argument("--address", default=None, help="Ray cluster: 'auto', HOST:PORT or 'emulated' (default: embedded)")
    p.add_argument("--parallel", type=int, default=None,
                   help="points at once (embedded Ray: sizes it for that many; cluster: a cap)")
    p.add_argument("--retry-failed", action="store_true", help="run failed points again")
    p.add_argument("--only", action="append", metavar="FIELD=VALUE",
                   help="run only the spec's points with this field value (repeatable: all must match)")
    p.add_argument("--own-references", action="store_true",
                   help="every shaped point measures its own unshaped reference steps (by default points "
                        "running the same program share one measurement)")
    p.add_argument("--trace", action="store_true",
                   help="keep each point's message timeline per party link (OUT/traces/POINT.trace.json, for "
                        "ui.perfetto.dev); the report links them")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    console = make_console()
    s = run_sweep(args.spec, args.out, address=args.address, parallel=args.parallel,
                  retry_failed=args.retry_failed, share_references=not args.own_references, console=console,
                  only=assignments(args.only, "--only", "FIELD=VALUE (e.g. activations=raympc)"), trace=args.trace)
    line = f"{s.points} points: {s.skipped} already done, {s.ran} ran, {s.failed} failed"
    if s.ran:
        line += f"; wall {s.wall_s:.1f} s for {s.busy_s:.1f} s of point time"
    console.print(line)
    for path in s.tables:
        console.print(f"wrote {path}")
