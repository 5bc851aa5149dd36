"""Sweeps: bad specs fail before anything runs, naming the field and its allowed values; a tiny
spec runs end to end (rows, tables, report, prediction); a killed sweep resumes without losing or
duplicating rows. Sweeps run as `raympc sweep` subprocesses, each with its own embedded Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from raympc.sweeps import ResultStore, SpecError, expand, load_spec, select
from raympc.runtime.netmodel import Calibration, RunCost

TINY_BASE = {"workload": "tiny-mnist", "steps": 1, "batch": 1}


def _spec(tmp_path: Path, body: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"name": "t", **body}))
    return path


def _sweep(spec: Path, out: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raympc.cli", "sweep", str(spec), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("body, must_say", [
    ({"base": {"activation": "raympc"}}, ["unknown field 'activation'", "'activations'", "'workload'"]),
    ({"grid": {"activations": ["raympc", "nope"]}}, ["registered under 'nope'", "'cipherdm'", "'spu-direct'"]),
    ({"base": {"activations": "raympc,softmax=nope"}}, ["softmax", "'nope'"]),
    ({"grid": {"workload": ["sd-unet"]}, "base": {"scale": "huge"}}, ["scale", "'huge'", "'tiny'", "'medium'"]),
    ({"base": {"network": "fast"}}, ["network", "'fast'", "wan"]),
    ({"base": {"network": "wan", "rate": "100mbit"}}, ["either network", "rate/rtt"]),
    ({"base": {"batch": 0}}, ["batch", "greater than or equal to 1"]),
    ({"base": {"rate": "100 parsecs"}}, ["rate", "parsecs"]),
    ({"base": {"protocol": "cheetah"}}, ["protocol", "'aby3'", "'semi2k'"]),
    ({"base": {"placement": "explicit"}}, ["placement", "'pack'", "'spread'"]),
    ({"grid": {"steps": []}}, ["grid.steps: empty list"]),
    ({"variants": [{"activation": "x"}]}, ["variants[0]: unknown field 'activation'"]),
    ({"gird": {"steps": [1]}}, ["unknown field 'gird'", "'grid'"]),
    ({"base": {"workload": "ddpm-mnist-mish", "eta": 0.5}}, ["eta applies to DDIM", "ddpm-mnist-mish"]),
    ({"base": {"workload": "mnist-gelu"}}, ["workload", "'ddim-mnist-mish'", "'tiny-mnist'"]),
])
def test_bad_spec_fields_are_named_with_their_allowed_values(tmp_path, body, must_say):
    with pytest.raises(SpecError) as err:
        expand(load_spec(_spec(tmp_path, body)))
    for text in must_say:
        assert text in str(err.value), (text, str(err.value))


def test_spec_activations_take_a_policy_with_overrides(tmp_path):
    points = expand(load_spec(_spec(tmp_path, {"grid": {"activations": ["raympc", "raympc,softmax=raympc-lean"]}})))
    assert [p.activations for p in points] == ["raympc", "raympc,softmax=raympc-lean"]
    assert len({p.point_id for p in points}) == 2


def test_bad_spec_stops_the_cli_before_anything_runs(tmp_path):
    spec = _spec(tmp_path, {"base": {"activations": "nope", "batch": -1}})
    out = tmp_path / "out"
    done = _sweep(spec, out, timeout=120)
    assert done.returncode != 0
    assert "activations" in done.stderr + done.stdout and "batch" in done.stderr + done.stdout
    assert not out.exists()  # nothing ran, nothing was written


def test_every_shipped_spec_is_valid():
    specs = sorted((Path(__file__).parents[1] / "workloads" / "specs").glob("*.yaml"))
    assert {p.stem for p in specs} >= {"cipherdm-repro", "network-grid", "tiny"}
    for p in specs:
        points = expand(load_spec(p))
        assert len({x.point_id for x in points}) == len(points)


def test_only_picks_points_by_field_and_says_what_exists(tmp_path):
    spec = Path(__file__).parents[1] / "workloads" / "specs" / "wan-step.yaml"
    points = expand(load_spec(spec))
    chosen = select(points, {"activations": "raympc"})
    assert len(chosen) == 2 and {p.workload for p in chosen} == {"ddim-mnist", "ddim-mnist-mish"}
    assert [p.exp_mode for p in select(points, {"activations": "spu-direct", "workload": "ddim-mnist"})] == \
        ["taylor", "pade"]
    with pytest.raises(SpecError, match="matches none.*'cipherdm'"):
        select(points, {"activations": "puma"})
    with pytest.raises(SpecError, match="unknown field"):
        select(points, {"activation": "raympc"})
    out = tmp_path / "out"
    done = _sweep(spec, out, "--only", "activations", timeout=120)
    assert done.returncode != 0 and "FIELD=VALUE" in done.stderr + done.stdout
    done = _sweep(spec, out, "--only", "activations=puma", timeout=120)
    assert done.returncode != 0 and "matches none" in done.stderr + done.stdout


def test_tiny_sweep_end_to_end_then_rerun_skips_everything(tmp_path):
    """Three points (unshaped and two shaped) run, land as rows with every parameter, cost, layer-kind
    breakdown, quality, backend, host and (shaped) a prediction from one shared set of reference
    steps; a rerun runs nothing."""
    spec = _spec(tmp_path, {"base": TINY_BASE, "points": [{"network": "unshaped"}, {"network": "1gbit,1ms"},
                                                          {"network": "100mbit,1ms", "breakdown": False}]})
    out = tmp_path / "out"
    done = _sweep(spec, out, "--parallel", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = ResultStore(out).rows()
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
    # both shaped points run one program: the first measured its reference steps, the second reused them
    first, second = (r for r in rows if r["profile"] != "unshaped")
    assert first["reference_key"] == second["reference_key"]
    assert first["reference_measured_by"] == second["reference_measured_by"] == first["point_id"]
    assert first["reference_step"] == second["reference_step"]
    for r in rows:
        assert r["send_bytes"] > 0 and r["send_actions"] > 0 and r["time_s"] > 0
        assert r["quality"]["max_abs_error"] < 0.05
        assert r["host"]["hostname"] and len(r["host"]["party_nodes"]) == 3
    for r in rows[:2]:  # the third point skips the breakdown
        assert set(r["breakdown"]) == {"conv/matmul", "groupnorm", "activation", "attention", "other"}
        assert abs(r["breakdown"]["other"]["send_bytes"]) < 0.02 * r["send_bytes"]
    # SPU's byte count does not depend on the network
    assert rows[0]["send_bytes"] == rows[1]["send_bytes"] == rows[2]["send_bytes"]
    shaped = next(r for r in rows if r["profile"] != "unshaped")
    assert shaped["shaping"]["backend"] in ("relay", "tc", "tc+relay")
    assert abs(shaped["shaping"]["wire"]["wire_vs_spu"]) < 0.05  # wire counters agree with SPU's
    # the analytic model (shipped calibration) predicts the shaped run from the recorded unshaped
    # reference step, and the row's figures are exactly that prediction. How close it comes to the
    # measured time is `raympc bench netmodel`'s job: on a 2-core CI machine a reference step's time
    # swings by a third, so here only a gross error (a unit slip, a lost term) fails.
    model = Calibration.load().predict(RunCost.from_dict(shaped["reference_step"]), shaped["profile"])
    for part in ("time_s", "compute_s", "latency_s", "bandwidth_s", "overhead_s"):
        assert shaped["predicted"][part] == pytest.approx(model[part] * shaped["steps"], rel=1e-9), part
    assert shaped["predicted"]["latency_s"] > 0 and shaped["predicted"]["bandwidth_s"] > 0
    assert 1 / 3 < shaped["predicted_time_s"] / shaped["time_s"] < 3, shaped["predicted"]
    import pandas as pd

    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 3 and {"workload", "activations", "profile", "breakdown.activation.send_bytes",
                                "quality.max_abs_error", "shaping.backend", "host.hostname"} <= set(table.columns)
    assert len(pd.read_csv(out / "results.csv")) == 3

    again = _sweep(spec, out, timeout=120)
    assert again.returncode == 0 and "3 already done, 0 ran" in again.stdout
    assert len((out / "results.jsonl").read_text().splitlines()) == 3

    report = subprocess.run([sys.executable, "-m", "raympc.cli", "report", str(out)], capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    text = (out / "report.md").read_text()
    for section in ("## Points", "## Cost by layer kind", "## Measured against predicted", "## Cost against quality"):
        assert section in text
    for fig in (out / "figures").glob("*.png"):
        assert fig.stat().st_size > 5000


def _children(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_killed_sweep_resumes_without_lost_or_duplicate_rows(tmp_path):
    spec = _spec(tmp_path, {"base": {**TINY_BASE, "breakdown": False},
                            "grid": {"seed": [0, 1, 2]}})
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "raympc.cli", "sweep", str(spec), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = out / "results.jsonl"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if results.exists() and results.read_text().count("\n") >= 1:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the sweep ended before it could be killed"
        # a kill in the middle of writing a row leaves a torn last line
        with results.open("a") as f:
            f.write('{"point_id": "torn')
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = results.read_text().splitlines()[0]
    reset = subprocess.run([sys.executable, "-m", "raympc.cli", "netsim", "reset"], capture_output=True, text=True,
                           timeout=120)
    assert reset.returncode == 0, reset.stderr

    done = _sweep(spec, out)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = results.read_text().splitlines()
    ids = [json.loads(line)["point_id"] for line in lines]
    assert len(ids) == 3 and len(set(ids)) == 3  # nothing lost, nothing duplicated, no torn line
    assert lines[0] == first  # the row finished before the kill is kept as it was
    assert {p.point_id for p in expand(load_spec(spec))} == set(ids)
    assert all(json.loads(line)["status"] == "ok" for line in lines)
    # the three seeds are repeats of one configuration: the report says so, with one byte count
    report = subprocess.run([sys.executable, "-m", "raympc.cli", "report", str(out)], capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    repeats = (out / "report.md").read_text().split("## Repeats")[1].split("\n## ")[0]
    row = next(line for line in repeats.splitlines() if line.startswith("| tiny-mnist"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "3" and ";" not in cells[7], row  # runs, and the same MB/step in all three
    assert (out / "figures" / "repeats.png").stat().st_size > 5000


def test_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path):
    """A point the workload refuses (more DDIM steps than the tiny model's 100-step schedule) becomes
    an error row; the other point still runs; --retry-failed runs only the failed one again."""
    spec = _spec(tmp_path, {"base": {**TINY_BASE, "breakdown": False}, "points": [{}, {"steps": 200}]})
    out = tmp_path / "out"
    done = _sweep(spec, out)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["status"]: r for r in ResultStore(out).rows()}
    assert set(rows) == {"ok", "error"}, rows
    assert "steps must be in [1, 100]" in rows["error"]["error"] and "1 failed" in done.stdout
    again = _sweep(spec, out, "--retry-failed")
    assert "1 already done, 1 ran, 1 failed" in again.stdout
    assert len(ResultStore(out).rows()) == 2 and len((out / "results.jsonl").read_text().splitlines()) == 2


def test_store_drops_a_torn_last_line_and_keeps_one_row_per_point(tmp_path):
    store = ResultStore(tmp_path).open()
    store.append({"point_id": "a", "status": "ok", "x": 1})
    store.append({"point_id": "b", "status": "error", "x": 2})
    with store.path.open("a") as f:
        f.write('{"point_id": "c", "sta')
    store = ResultStore(tmp_path).open()
    assert [r["point_id"] for r in store.rows()] == ["a", "b"]
    store.drop({"b"})
    assert store.statuses() == {"a": "ok"}
