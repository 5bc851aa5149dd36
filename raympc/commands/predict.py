"""`raympc predict RUN --network PROFILE`: a measured run's time under other network profiles.

RUN is a `raympc sample` JSON (per-step figures) or a sweep results directory (with `--point`, or
every ok point). The prediction starts from the run's own profile: its compute time is the
measured time minus the model's network time for the profile it ran under. It prices the run's
own program: where the policy would compile another one for the target network (raympc's softmax
picks its row max per network), that one is at most as slow by the same model, so the figure is
an upper bound (`raympc check --networks` measures each program).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import netsim
from raympc.commands.common import Subparsers, make_console
from raympc.errors import ConfigError
from raympc.runtime.netmodel import Calibration, RunCost
from raympc.sweeps.store import ResultStore


def register(sub: Subparsers) -> None:
    p = sub.add_parser("predict", help="predict a measured run's time under another network profile")
    p.add_argument("run", type=Path, help="a `raympc sample` JSON, or a sweep results directory")
    p.add_argument("--network", required=True, action="append", help="profile(s) to predict for (repeatable)")
    p.add_argument("--point", default=None, help="sweep point id (when RUN is a sweep directory)")
    p.add_argument("--calibration", type=Path, default=None, help="calibration JSON (default: the shipped one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    run_predict(args.run, args.network, point=args.point, calibration=args.calibration, console=make_console())


def _runs(path: Path, point: str | None) -> list[tuple[str, RunCost, int]]:
    """(label, cost of one step, steps) for each run found at `path`."""
    if path.is_dir():
        rows = [r for r in ResultStore(path).rows() if r.get("status") == "ok"]
        if point is not None:
            rows = [r for r in rows if r["point_id"].startswith(point)]
        if not rows:
            raise ConfigError(f"no finished sweep point{' ' + point if point else ''} in {path}")
        return [(f"{r['point_id']} {r['workload']} {r['activations']}",
                 RunCost(r["time_s"] / r["steps"], r["max_rank_send_bytes"] / r["steps"],
                         r["max_rank_send_actions"] / r["steps"], r["profile"]), r["steps"]) for r in rows]
    if not path.exists():
        raise ConfigError(f"no run at {path}: give a `raympc sample` JSON or a sweep results directory")
    d: dict[str, Any] = json.loads(path.read_text())
    steps = d.get("per_step") or []
    if not steps:
        raise ConfigError(f"{path} has no per-step figures")
    network = d.get("network", {}).get("profile") or "unshaped"
    keys = RunCost.FIELDS
    try:
        mean = {k: sum(s[k] for s in steps) / len(steps) for k in keys}
        cost = RunCost.from_dict(mean, network=network)
    except KeyError:
        raise ConfigError(f"{path}: per-step figures lack {list(keys)}; rerun `raympc sample` with this version") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return [(f"{d.get('workload')} {d.get('activations')}", cost, len(steps))]


def run_predict(run: Path, networks: list[str], point: str | None = None, calibration: Path | None = None,
                console: Console | None = None) -> list[dict[str, Any]]:
    console = console or Console()
    calib = Calibration.load(calibration)
    for n in networks:
        try:
            netsim.resolve(n)
        except netsim.ProfileError as exc:
            raise ConfigError(str(exc)) from None
    table = Table(title=f"predicted time ({calib.note or 'calibration ' + str(calibration)})")
    for c in ("run", "measured under", "steps", "measured s", "network", "predicted s", "compute", "latency",
              "bandwidth", "overhead"):
        table.add_column(c, justify="right")
    out = []
    for label, cost, steps in _runs(run, point):
        for n in networks:
            p = calib.predict(cost, n)
            out.append({"run": label, "measured_under": cost.network, "steps": steps,
                        "measured_s": cost.time_s * steps, **{k: v * steps if k.endswith("_s") else v
                                                             for k, v in p.items()}})
            table.add_row(label, cost.network, str(steps), f"{cost.time_s * steps:.2f}", p["network"],
                          f"{p['time_s'] * steps:.2f}", f"{p['compute_s'] * steps:.2f}",
                          f"{p['latency_s'] * steps:.2f}", f"{p['bandwidth_s'] * steps:.2f}",
                          f"{p['overhead_s'] * steps:.2f}")
    console.print(table)
    return out
