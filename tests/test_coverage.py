"""The coverage report and the preflight: every nonlinearity call site and what runs there, on our
own model, a plain Flax module, diffusers' Flax ResNet block and a masked attention; values the
fixed point cannot hold; `raympc check` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import raympc.activations as acts
from raympc.activations.ranges import out_of_range
from workloads.protocol import WorkloadOptions
from workloads.registry import build

ROOT = Path(__file__).resolve().parents[1]


class FieldMLP(nn.Module):
    """The most common way Flax code stores an activation: a dataclass field with a default."""

    act: Callable = nn.silu

    @nn.compact
    def __call__(self, x):
        return self.act(nn.Dense(8)(x))


class LookupMLP(nn.Module):
    """The same model looking its activation up when it runs."""

    @nn.compact
    def __call__(self, x):
        return nn.silu(nn.Dense(8)(x))


def _apply(module):
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    params = module.init(jax.random.PRNGKey(0), x)
    return (lambda p, x: module.apply(p, x)), (params, x)


def test_a_dataclass_field_activation_is_reported_missed_not_silently_kept():
    fn, args = _apply(FieldMLP())
    with acts.use("silu=raympc"):
        report = acts.coverage(fn, *args)
    assert [(s.kind, s.status) for s in report.sites] == [("silu", "missed")]
    assert "MISSED: silu at" in report.summary() and "test_coverage.py" in report.missed[0].where
    fn, args = _apply(LookupMLP())
    with acts.use("silu=raympc"):
        assert [(s.kind, s.status, s.runs) for s in acts.coverage(fn, *args).sites] == [("silu", "swapped", "raympc")]


def test_outside_a_policy_every_site_is_stock_and_kinds_come_from_jaxs_own_forms():
    def f(x):
        return jax.nn.softmax(jax.nn.gelu(x) + jax.nn.gelu(x, approximate=False) + jnp.tanh(x) + jax.lax.rsqrt(x * x + 1))
    report = acts.coverage(f, np.ones((2, 8), np.float32))
    assert [s.kind for s in report.sites] == ["gelu_tanh", "gelu_erf", "tanh", "rsqrt", "softmax"]
    assert {s.status for s in report.sites} == {"stock"}
    with acts.use("raympc"):
        swapped = acts.coverage(f, np.ones((2, 8), np.float32))
    assert {s.kind: s.status for s in swapped.sites} == {"gelu_tanh": "swapped", "gelu_erf": "swapped",
                                                         "tanh": "stock", "rsqrt": "swapped", "softmax": "swapped"}
    assert [s.runs for s in swapped.sites if s.kind == "tanh"] == ["SPU stock (no raympc form)"]


def test_diffusers_resnet_block_is_fully_swapped():
    from diffusers.models.resnet_flax import FlaxResnetBlock2D

    block = FlaxResnetBlock2D(in_channels=32, out_channels=32)
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 32)).astype(np.float32)
    temb = np.zeros((1, 64), np.float32)
    params = block.init(jax.random.PRNGKey(0), x, temb)
    with acts.use("raympc"):
        report = acts.coverage(lambda p, x, t: block.apply(p, x, t), params, x, temb)
    assert report.sites and not report.missed and {s.kind for s in report.sites} >= {"silu", "rsqrt"}
    assert all(s.status == "swapped" for s in report.sites), report.sites


def test_the_mnist_unet_step_is_fully_swapped_and_fits_the_fixed_point():
    w = build("ddim-mnist", WorkloadOptions(steps=1, batch=2))
    with acts.use("raympc"):
        report = acts.coverage(w.step, *w.step_arguments(0))
    assert {s.kind for s in report.sites} == {"silu", "softmax", "rsqrt"}
    assert len(report.swapped) == len(report.sites) and report.sites
    assert out_of_range(w.step, *w.step_arguments(0)) == []


@pytest.mark.parametrize("fill", [-1e9, float(np.finfo(np.float32).min)])
def test_a_causal_mask_beyond_the_fixed_point_is_found_where_it_is_made(fill):
    def attention(q, k):
        scores = q @ k.T
        return jax.nn.softmax(jnp.where(jnp.tril(jnp.ones(scores.shape, bool)), scores, fill))

    q = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    findings = out_of_range(attention, q, q)
    made = [f for f in findings if f.what == "select_n"]
    assert made and made[0].largest >= 1e9 and "test_coverage.py" in made[0].where and "attention" in made[0].where
    assert out_of_range(lambda q, k: jax.nn.softmax(q @ k.T), q, q) == []


def test_check_command_prints_coverage_range_and_predicted_cost(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "examples"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "raympc.cli", "check", "flax_denoiser:make", "--networks", "lan,wan"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())
    assert "2 of 2 nonlinearity call sites swapped" in out and "examples/flax_denoiser.py" in out
    assert "0 operations make values" in out and "predicted s / step" in out
    lan, wan = (float(next(line.split("│")[2] for line in proc.stdout.splitlines() if line.startswith(f"│ {n} ")))
                for n in ("lan", "wan"))
    assert wan > lan > 0  # the same step, priced on two networks


def test_sample_records_the_coverage_of_what_it_ran(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "raympc.cli", "sample", "--workload", "tiny-mnist", "--steps", "1",
                           "--batch", "1", "--no-breakdown", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((tmp_path / "tiny-mnist-raympc.json").read_text())
    assert run["coverage"]["total"] > 0 and run["coverage"]["swapped"] == run["coverage"]["total"]
    assert "nonlinearity call sites swapped" in proc.stdout
