"""The console script: `raympc info` and `raympc demo` run end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _raympc(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raympc.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_info_lists_versions_and_nodes():
    proc = _raympc("info", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    assert info["versions"]["spu"] == "0.9.5"
    assert len(info["nodes"]) == 1 and info["nodes"][0]["resources"]["CPU"] >= 3


def test_kernel_demo_reports_errors_and_metrics(tmp_path):
    proc = _raympc("demo", "--kernels", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "secure vs plaintext" in proc.stdout
    summary = json.loads((tmp_path / "kernels.json").read_text())
    assert summary["provenance"]["command"].startswith("raympc demo --kernels")
    for kernel in summary["kernels"].values():
        assert max(kernel["max_abs_error"]) < 1e-2
        assert kernel["metrics"]["send_bytes"] > 0
        assert len(kernel["metrics"]["ranks"]) == 3


@pytest.mark.parametrize("mode", [["--kernels"], ["--steps", "1"]])
def test_bad_protocol_is_a_clean_error_in_either_demo(mode):
    proc = _raympc("demo", *mode, "--protocol", "nope")
    assert proc.returncode == 1
    assert "unknown protocol 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_weights_are_a_clean_error():
    proc = _raympc("evaluate", "no-such-model", "--no-record")
    assert proc.returncode == 1
    assert "no weights" in proc.stderr and "raympc train" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_activation_policy_is_a_usage_error():
    proc = _raympc("evaluate", "ddpm-mnist", "--activations", "mish=nope")
    assert proc.returncode == 2
    assert "no implementation 'nope' of 'mish'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sampling_demo_one_step(tmp_path):
    """The main job, shortened to one DDIM step: both implementations, table, grid, report."""
    proc = _raympc("demo", "--steps", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert set(summary["rows"]) == {"spu-direct", "raympc"}
    assert summary["ratios"]["bytes"] > 1.5  # raympc activations move fewer bytes on the same model
    for r in summary["rows"].values():
        assert r["send_bytes"] > 0 and r["psnr_db_min"] > 20
    assert (tmp_path / "samples.png").stat().st_size > 0 and "| raympc |" in (tmp_path / "report.md").read_text()
