"""One sweep point, run inside its own Ray task: its own session (parties, ports, shaped links)
in the placement group the sweep reserved for it, and one result row.

Shaped points also store the analytic model's prediction for the shaped run next to the
measurement, from a few unshaped steps of the same program (a second session on the same
reservation), measured once per program across the sweep (`references`).
"""

from __future__ import annotations

import os
import platform
import socket
import time
import traceback
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

import netsim
from raympc import activations as acts
from raympc.errors import PortInUseError
from raympc.runtime.compiler import ProgramCache
from raympc.runtime.config import PartySpec, SpuConfig
from raympc.runtime.placement import Placement
from raympc.runtime.session import Session
from raympc.sweeps import references
from raympc.runtime.netmodel import Calibration, RunCost, floor_correction
from raympc.sweeps.reservation import reservation
from raympc.sweeps.spec import PointParams
from workloads.registry import WorkloadOptions, run_workload

if TYPE_CHECKING:
    from raympc.runtime.placement import Placement

def party_placement(params: PointParams, group) -> "Placement":
    options = [{"num_cpus": params.party_cpus, "num_gpus": 0, "resources": {},
                "scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group=group,
                                                                        placement_group_bundle_index=index)}
               for index in reservation(params).party_bundles]
    return Placement(options=options, group=None, describe=params.placement)


def _session(params: PointParams, placement, network: str | None, trace: bool = False):
    # compiled for the point's network even when unshaped (its reference step): the same program
    return Session(spu_config=SpuConfig(protocol=params.protocol, field=params.field, exp_mode=params.exp_mode),
                   placement=placement, party_specs=PartySpec(num_cpus=params.party_cpus), network=network,
                   shaping=params.shaping, trace=trace, cache=_point_cache(), compile_for=params.profile)


# One program cache per point process: the reference session compiles nothing the first did.
_CACHE = None


def _point_cache():
    global _CACHE
    if _CACHE is None:
        _CACHE = ProgramCache()
    return _CACHE


def _in_session(params: PointParams, placement, network: str | None, work: Callable[[Any], Any],
                trace: bool = False) -> Any:
    """`work(session)` in a fresh session; once more in another if the first could not set up its
    links because another program took a chosen port first (a race no port check can close)."""

    for attempt in (1, 2):
        try:
            with acts.use(params.activations), _session(params, placement, network, trace) as session:
                return work(session)
        except PortInUseError:
            if attempt == 2:
                raise


def _quality_columns(q: dict[str, Any]) -> dict[str, Any]:
    out = {"psnr_db_min": min(q["psnr_db"]), "max_abs_error": q["max_abs_error"]}
    for k in ("accuracy_secure", "accuracy_plain", "fid_proxy_secure", "fid_proxy_plain"):
        if k in q:
            out[k] = q[k]
    return out


REFERENCE_STEPS = 3


def _measure_reference(params: PointParams, placement, opts) -> dict[str, Any]:
    """Unshaped reference steps of the point's program (a session of its own on the same
    reservation). The fastest step stands for compute: noise on a shared machine only adds time."""

    reference = replace(opts, steps=REFERENCE_STEPS, breakdown=False)
    steps = _in_session(params, placement, None, lambda session: run_workload(params.workload, session, reference)).per_step
    ref = min(steps, key=lambda s: s["time_s"])
    return {k: ref[k] for k in RunCost.FIELDS} | {"measured_by": params.point_id}


def _prediction(params: PointParams, reference: dict[str, Any]) -> dict[str, Any]:
    """The analytic model's prediction of the shaped run from its unshaped reference step."""

    cost = RunCost.from_dict(reference, network="unshaped")
    predicted = Calibration.load().predict(cost, params.profile)
    out: dict[str, Any] = {
        "reference_step": {k: reference[k] for k in RunCost.FIELDS},
        "reference_measured_by": reference["measured_by"],
        "predicted": {k: v * params.steps if k.endswith("_s") else v for k, v in predicted.items()},
    }
    out["predicted_time_s"] = out["predicted"]["time_s"]
    return out


def execute(params_dict: dict[str, Any], group, reporter=None, board=None, trace: bool = False) -> dict[str, Any]:
    """Run one point; never raises: failures come back as a row with status 'error'.

    With `trace`, the row also carries `trace_events`: the measured run's message timeline as Trace
    Event JSON (`netsim.chrome_trace`), which the runner writes to a file of its own.

    A shaped point gets its reference steps from `board` (a `references.ReferenceBoard` actor):
    the first point of a program measures them before its shaped run, the others reuse them.
    Without a board the point measures its own."""

    params = PointParams(**params_dict)
    started = time.time()
    row: dict[str, Any] = {"point_id": params.point_id, **params.model_dump(), "profile": params.profile,
                           "status": "error", "error": None, "started_at": started}
    host = {"hostname": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "ray_node": ray.get_runtime_context().get_node_id()[:12]}

    def on_step(i: int, stats: dict) -> None:
        if reporter is not None:
            reporter.report.remote(params.point_id, i + 1, params.steps)

    try:
        opts = WorkloadOptions(steps=params.steps, batch=params.batch, seed=params.seed, eta=params.eta,
                               scale=params.scale, breakdown=params.breakdown)
        placement = party_placement(params, group)
        shaped = netsim.resolve(params.profile).shaped
        reference = None
        if shaped:
            key = row["reference_key"] = references.reference_key(params, references.program_forms(params, opts))
            measure_reference = partial(_measure_reference, params, placement, opts)
            if board is None:
                reference = measure_reference()
            else:
                reference = references.obtain(board, key, measure_reference, block=False)

        def measure(session):
            done = run_workload(params.workload, session, opts, on_step)
            return done, session.describe(), session.wire_report(), session.trace_events() if trace else None

        result, described, wire, events = _in_session(params, placement, params.profile, measure, trace)
        if events is not None:
            row["trace_events"] = events
        total = result.total
        row.update(
            status="ok", time_s=total["time_s"], send_bytes=total["send_bytes"], send_actions=total["send_actions"],
            max_rank_send_bytes=sum(s["max_rank_send_bytes"] for s in result.per_step),
            max_rank_send_actions=sum(s["max_rank_send_actions"] for s in result.per_step),
            step_time_s=total["time_s"] / len(result.per_step), compile_s=result.compile_s,
            per_step=[{k: s[k] for k in ("time_s", "send_bytes", "send_actions")} for s in result.per_step],
            breakdown={k: {m: v[m] for m in ("send_bytes", "send_actions", "time_s")}
                       for k, v in (result.breakdown or {}).items()} or None,
            quality=_quality_columns(result.quality), model=result.info,
            coverage={"swapped": len(result.coverage.swapped), "missed": len(result.coverage.missed),
                      "total": len(result.coverage.sites),
                      "missed_sites": [f"{x.kind} at {x.where}" for x in result.coverage.missed]},
            shaping={"backend": described["network"].get("backend"), "applied": described["network"],
                     "wire": wire},
            host={**host, "party_hosts": described["hosts"], "party_nodes": described["nodes"]},
        )
        if shaped:
            if reference is None:
                reference = references.obtain(board, key, measure_reference)
            row.update(_prediction(params, reference))
        corrected = floor_correction(result.per_step, params.profile, row["shaping"]["backend"])
        if corrected is not None:
            row["floor_corrected"] = corrected
        if "predicted_time_s" in row:
            row["prediction_error"] = (row["predicted_time_s"] - row["time_s"]) / row["time_s"]
    except Exception as exc:  # noqa: BLE001 - a failed point is a row, and the sweep goes on
        row.update(status="error", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=8), host=host)
    row["finished_at"] = time.time()
    row["duration_s"] = row["finished_at"] - started
    return row
