"""The preflight's compile check (`runtime.support`): SPU's real compiler, in a child process,
names every operation it has no secure form for, with its source location; a program it compiles
costs one compile. And the two examples that bring other people's models: CipherDM's tiny U-Net
(written from its description) and transformers' GPT-2, as import-path workloads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import raympc.activations as acts
from raympc.activations.ranges import out_of_range
from raympc.runtime.support import unsupported_ops
from workloads.protocol import WorkloadOptions
from workloads.registry import build

ROOT = Path(__file__).resolve().parents[1]


class CubeRootHead(nn.Module):
    """A plain Flax module with one op SPU cannot compile (cbrt) and one that aborts its compiler (fft)."""

    @nn.compact
    def __call__(self, x):
        h = nn.silu(nn.Dense(8)(x))
        return jnp.cbrt(h) + jnp.fft.fft(h).real


def test_ops_spu_cannot_compile_are_named_where_the_model_calls_them():
    model = CubeRootHead()
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    params = model.init(jax.random.PRNGKey(0), x)
    found = unsupported_ops(model.apply, params, x)
    assert sorted(u.primitive for u in found) == ["cbrt", "fft"], [u.describe() for u in found]
    assert all("test_preflight.py" in u.where and "CubeRootHead" in u.where for u in found)
    assert "stablehlo.cbrt" in next(u.reason for u in found if u.primitive == "cbrt")
    assert next(u for u in found if u.primitive == "fft").shape == (2, 8)


def test_a_model_spu_compiles_has_nothing_flagged():
    w = build("tiny-mnist", WorkloadOptions(steps=1, batch=1))
    with acts.use("raympc"):
        assert unsupported_ops(w.step, *w.step_arguments(0)) == []


def test_cipherdm_unet_is_the_papers_model_and_fully_swapped():
    w = build("examples.cipherdm_unet:make", WorkloadOptions(steps=2, batch=1))
    assert w.info["parameters"] == 15_881
    with acts.use("raympc"):
        report = acts.coverage(w.step, *w.step_arguments(0))
    kinds = [s.kind for s in report.sites]
    assert kinds.count("softmax") == 6 and all(s.shape == (1, 196, 196) for s in report.sites if s.kind == "softmax")
    # two SiLUs per residual block (12) and one in each block's time path, the time MLP's and the output's
    assert kinds.count("silu") == 12 * 3 + 2
    assert not report.missed and len(report.swapped) == len(report.sites)  # the field-bound nn.silu too
    assert out_of_range(w.step, *w.step_arguments(0)) == []


def test_gpt2_workload_is_flagged_by_the_preflight_and_the_mnist_unet_is_not():
    out = {}
    for name in ("examples.gpt2_tiny:make", "ddim-mnist"):
        # examples.gpt2_tiny imports from the working directory, as with `python -m`
        proc = subprocess.run([sys.executable, "-m", "raympc.cli", "check", name, "--no-cost"], capture_output=True,
                              text=True, timeout=600, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = " ".join(proc.stdout.split())
    gpt2, mnist = out["examples.gpt2_tiny:make"], out["ddim-mnist"]
    assert "9 of 9 nonlinearity call sites swapped" in gpt2 and "modeling_flax_gpt2.py" in gpt2
    assert "0 operations make values" not in gpt2 and "FlaxGPT2Attention" in gpt2  # the causal mask
    assert "0 operations make values" in mnist
    assert "none: the whole step compiles" in gpt2 and "none: the whole step compiles" in mnist


def test_bench_models_measures_a_workload_per_policy(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "raympc.cli", "bench", "models", "--workload",
                           "examples.flax_denoiser:make", "--policy", "spu-direct", "--policy", "raympc",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["policy"]: r for r in json.loads((tmp_path / "bench-models.json").read_text())["rows"]}
    assert set(rows) == {"spu-direct", "raympc"}
    assert rows["raympc"]["send_bytes"] < rows["spu-direct"]["send_bytes"]  # the field-bound SiLU was reached
    assert (rows["raympc"]["swapped"], rows["spu-direct"]["swapped"]) == (rows["raympc"]["sites"], 0)
    assert rows["raympc"]["max_abs_error"] < 5e-3 and (tmp_path / "bench-models.png").stat().st_size > 0
