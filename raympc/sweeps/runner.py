"""`raympc sweep SPEC --out DIR`: run every point of a spec on Ray, in parallel where the cluster
has room, appending each finished point's row to the results before the next one is taken.

Each point reserves its resources in a placement group of its own (packed: the point's task and
its three parties on one node, so its relays and parties share a host; spread: one party per
node), runs in a fresh worker process (activation swaps patch module globals, so points never
share one), and gets its own session, ports and shaped links. Shaped points that run the same
program share one set of unshaped reference steps (`references`) unless told otherwise. Finished
points are skipped on a rerun; failed points keep their error row unless `--retry-failed`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from raympc.cluster.ray_instance import start_or_join
from raympc.errors import PlacementError
from raympc.sweeps.point import execute
from raympc.sweeps.references import start_board
from raympc.sweeps.reservation import reservation
from raympc.sweeps.spec import PointParams, expand, load_spec, select
from raympc.sweeps.store import ResultStore
from raympc.util.files import write_json_atomically


@dataclass
class SweepSummary:
    out: Path
    points: int
    skipped: int
    ran: int = 0
    failed: int = 0
    wall_s: float = 0.0
    busy_s: float = 0.0  # sum of the points' own durations
    tables: list[Path] = field(default_factory=list)


def _progress_actor():
    @ray.remote(num_cpus=0)
    class StepReporter:
        """Points report their steps here; the driver polls it for the per-point bars."""

        def __init__(self) -> None:
            self.steps: dict[str, tuple[int, int]] = {}

        def report(self, point_id: str, done: int, total: int) -> None:
            self.steps[point_id] = (done, total)

        def snapshot(self) -> dict[str, tuple[int, int]]:
            return dict(self.steps)

    return StepReporter.remote()


def _label(p: PointParams) -> str:
    parts = [p.workload + (f"/{p.scale}" if p.workload == "sd-unet" else ""), p.activations, p.profile]
    if p.protocol != "aby3" or p.field != "fm64":
        parts.append(f"{p.protocol}/{p.field}")
    return " ".join(parts)


def check_room(points: list[PointParams]) -> None:
    """Fail before anything runs if some point's reservation can never fit this cluster."""

    cpus = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]]
    for p in {(p.placement, p.party_cpus): p for p in points}.values():
        r = reservation(p)
        if r.strategy == "STRICT_PACK" and max(cpus, default=0) < r.cpus:
            raise PlacementError(
                f"placement 'pack' needs one node with {r.cpus:g} CPUs (the point's "
                f"task and three parties with party_cpus {p.party_cpus:g}); the nodes have {cpus}. Lower "
                "party_cpus, use placement 'spread', or add bigger nodes")
        if r.strategy == "STRICT_SPREAD" and sum(c >= p.party_cpus for c in cpus) < 3:
            raise PlacementError(f"placement 'spread' needs three nodes with {p.party_cpus:g} CPUs each; "
                                 f"the nodes have {cpus}")


def embedded_cpus(points: list[PointParams], parallel: int) -> int:
    """Logical CPUs an embedded Ray needs to hold `parallel` of the largest points at once."""
    need = max(reservation(p).cpus for p in points)
    return max(int(need * parallel + 0.999), 1)


def run_sweep(spec_path: Path, out: Path, address: str | None = None, parallel: int | None = None,
              retry_failed: bool = False, share_references: bool = True,
              console: Console | None = None, only: dict[str, str] | None = None,
              trace: bool = False) -> SweepSummary:
    """Run every point of the spec at `spec_path` not yet in `out`, `parallel` at a time.

    Args:
        spec_path: a sweep spec (YAML; `raympc.sweeps.spec`).
        out: the results directory; points already recorded there are skipped (resume).
        address: a Ray cluster ('auto', HOST:PORT, 'emulated'); None starts a private embedded Ray.
        parallel: points at once (default: all that fit).
        retry_failed: run points recorded as failed again.
        share_references: shaped points running the same program share one unshaped reference.
        console: progress and messages.
        only: run only points whose fields have these values.
        trace: keep each point's message timeline per party link in `out/traces/POINT.trace.json`
            (Perfetto / chrome://tracing; the row's `trace` names it). Unshaped points then pass
            through the relay too.

    Returns:
        Counts, times and the tables written (results.csv, results.parquet).

    Raises:
        ConfigError: the spec is invalid, or a point can never fit the cluster.
    """
    console = console or Console()
    spec = load_spec(spec_path)
    points = expand(spec)  # every problem in the spec is reported here, before anything runs
    if only:
        points = select(points, only)
    store = ResultStore(out).open()
    kept = Path(out) / "spec.yaml"  # the spec beside its results, for the report and for readers
    if Path(spec_path).resolve() != kept.resolve():
        shutil.copyfile(spec_path, kept)
    todo = _not_yet_run(points, store, retry_failed)
    summary = SweepSummary(Path(out), len(points), len(points) - len(todo))
    if summary.skipped:
        console.print(f"{summary.skipped} of {len(points)} points already in {store.path}; skipping them")
    if todo:
        handle = start_or_join(address, num_cpus=embedded_cpus(todo, parallel or 1) if address is None else None)
        start = time.perf_counter()
        try:
            check_room(todo)
            _schedule(todo, spec.name, store, summary, parallel or len(todo), share_references, console, trace)
        finally:
            handle.shutdown()
        summary.wall_s = time.perf_counter() - start
    summary.tables = store.write_tables()
    return summary


def _not_yet_run(points: list[PointParams], store: ResultStore, retry_failed: bool) -> list[PointParams]:
    statuses = store.statuses()
    if retry_failed:
        failed = {i for i, s in statuses.items() if s != "ok"}
        store.drop(failed)
        statuses = {i: s for i, s in statuses.items() if i not in failed}
    return [p for p in points if p.point_id not in statuses]


def _schedule(todo: list[PointParams], sweep: str, store: ResultStore, summary: SweepSummary, limit: int,
              share_references: bool, console: Console, trace: bool = False) -> None:
    """Run `todo` as Ray tasks, at most `limit` at once, each in its own placement group; record
    each row as it finishes, with a progress bar per running point."""
    remote_execute = ray.remote(max_calls=1, max_retries=0)(execute)
    pending: dict[Any, tuple[PointParams, Any, float]] = {}
    queue = list(todo)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        reporter = _progress_actor()
        board = start_board() if share_references else None
        with Progress(*columns, console=console) as bar:
            overall = bar.add_task(f"sweep {sweep}", total=len(todo))
            bars: dict[str, Any] = {}
            while queue or pending:
                while queue and len(pending) < limit:
                    p = queue.pop(0)
                    r = reservation(p)
                    group = placement_group(r.bundles, strategy=r.strategy)
                    ref = remote_execute.options(**r.task_options(group)).remote(p.model_dump(), group, reporter, board,
                                                                                 trace)
                    pending[ref] = (p, group, time.perf_counter())
                    bars[p.point_id] = bar.add_task(f"  {_label(p)}", total=p.steps)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for point_id, (done, total) in ray.get(reporter.snapshot.remote()).items():
                    if point_id in bars:
                        bar.update(bars[point_id], completed=done, total=total)
                for ref in ready:
                    p, group, began = pending.pop(ref)
                    row = _finished_row(ref, p, began)
                    row["sweep"] = sweep
                    events = row.pop("trace_events", None)
                    if events is not None:  # the timeline goes to a file of its own, the row names it
                        row["trace"] = str(write_json_atomically(store.out / "traces" / f"{p.point_id}.trace.json", events,
                                                                 indent=None).relative_to(store.out))
                    store.append(row)
                    remove_placement_group(group)
                    summary.ran += 1
                    summary.failed += row["status"] != "ok"
                    summary.busy_s += row.get("duration_s", 0.0)
                    bar.remove_task(bars.pop(p.point_id))
                    bar.advance(overall)
                    if row["status"] != "ok":
                        console.print(f"[red]point {p.point_id} ({_label(p)}) failed:[/] {row['error']}")
    finally:
        for ref, (_, group, _) in pending.items():
            ray.cancel(ref, force=True)
            remove_placement_group(group)


def _finished_row(ref: Any, p: PointParams, began: float) -> dict[str, Any]:
    try:
        return ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - the task itself died (OOM, node lost)
        return {"point_id": p.point_id, **p.model_dump(), "profile": p.profile, "status": "error",
                "error": f"{type(exc).__name__}: {exc}", "duration_s": time.perf_counter() - began}
