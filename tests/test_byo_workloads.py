"""Your own model as a workload: by import path in `raympc sample` and sweep specs, and the errors
a malformed factory gets. The model is `examples/flax_denoiser.py`, a plain Flax module."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from workloads.protocol import Workload, WorkloadError, WorkloadOptions
from workloads.registry import build, factory

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

import flax_denoiser  # noqa: E402 - from examples/, put on the path above


def _env() -> dict[str, str]:
    # Ray's workers inherit the driver's environment: the example must import there too
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")])}


def _raympc(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raympc.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def test_an_import_path_names_a_factory_and_its_workload_is_checked():
    w = build("flax_denoiser:make", WorkloadOptions(steps=3, batch=2))
    assert w.steps == 3 and w.public_positions == (4,) and w.state.shape == (2, 16)
    with pytest.raises(WorkloadError, match="cannot import 'no_such_module'"):
        factory("no_such_module:make")
    with pytest.raises(WorkloadError, match="has no callable 'nope'"):
        factory("flax_denoiser:nope")
    with pytest.raises(WorkloadError, match="unknown workload 'mnist-gelu'.*package.module:factory"):
        factory("mnist-gelu")


@pytest.mark.parametrize("change, says", [
    (lambda w: {"not": "a workload"}, "returned dict, not a workloads.protocol.Workload"),
    (lambda w: dataclasses.replace(w, step="relu"), "step is str, not a function"),
    (lambda w: dataclasses.replace(w, step_publics=w.step_publics[:1]), "3 step_secrets but 1 step_publics"),
    (lambda w: dataclasses.replace(w, step_publics=[c[0] for c in w.step_publics]), "must be a tuple"),
    (lambda w: dataclasses.replace(w, state="noise"), "state must be a numeric array"),
    (lambda w: dataclasses.replace(w, step_secrets=[], step_publics=[]), "step_secrets is empty"),
    (lambda w: dataclasses.replace(w, quality=3), "quality must be callable"),
])
def test_a_malformed_workload_is_refused_with_what_is_wrong(monkeypatch, change, says):
    good = flax_denoiser.make(WorkloadOptions(steps=3))
    monkeypatch.setattr(flax_denoiser, "broken", lambda opts: change(good), raising=False)
    with pytest.raises(WorkloadError, match="flax_denoiser:broken returned") as err:
        build("flax_denoiser:broken", WorkloadOptions(steps=3))
    assert says in str(err.value)


def test_sample_runs_an_import_path_workload_end_to_end(tmp_path):
    proc = _raympc("sample", "--workload", "flax_denoiser:make", "--steps", "2", "--batch", "2",
                   "--activations", "raympc", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((tmp_path / "flax_denoiser-make-raympc.json").read_text())
    assert run["workload"] == "flax_denoiser:make" and len(run["per_step"]) == 2
    assert run["total"]["send_bytes"] > 0 and run["total"]["send_actions"] > 0
    assert run["quality"]["max_abs_error"] < 0.05 and run["quality"]["mean_abs_error"] < 0.01
    kinds = run["breakdown_step0"]
    assert kinds["conv/matmul"]["calls"] == 2 and kinds["activation"]["calls"] == 1  # two Dense, one SiLU
    assert kinds["groupnorm"]["calls"] == 1  # the LayerNorm
    assert (tmp_path / "flax_denoiser-make-raympc.png").stat().st_size > 0


def test_sample_refuses_an_unknown_workload_before_starting_anything():
    proc = _raympc("sample", "--workload", "no_such_module:make", timeout=120)
    assert proc.returncode == 2 and "cannot import 'no_such_module'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_sweep_runs_an_import_path_workload_and_resumes(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "byo", "base": {"workload": "flax_denoiser:make", "steps": 1,
                                                            "batch": 2, "breakdown": False},
                                    "grid": {"activations": ["raympc", "spu-direct"]}}))
    out = tmp_path / "out"
    first = _raympc("sweep", str(spec), "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"], [r.get("error") for r in rows]
    by_impl = {r["activations"]: r for r in rows}
    assert by_impl["raympc"]["send_bytes"] != by_impl["spu-direct"]["send_bytes"]  # the swap reached the model
    assert by_impl["raympc"]["coverage"] == {"swapped": 2, "missed": 0, "total": 2, "missed_sites": []}
    again = _raympc("sweep", str(spec), "--out", str(out))
    assert again.returncode == 0 and "2 already done, 0 ran" in again.stdout


def test_the_example_workload_matches_plaintext_outside_mpc():
    w = flax_denoiser.make(WorkloadOptions(steps=2, batch=1))
    x = w.state
    for noise, public in zip(w.step_secrets, w.step_publics):
        x = np.asarray(w.step(w.params, x, w.condition, noise, *public))
    assert x.shape == w.state.shape and np.isfinite(x).all()
    assert isinstance(w, Workload)
