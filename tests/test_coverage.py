"""Swaps that reach every call site, the coverage report and the preflight: a Flax module with its
activation in a dataclass field, GPT-2's written-out GeLU bound in a dict, flax's causally masked
attention, diffusers' Flax ResNet block and our U-Net; values the fixed point cannot hold; `raympc
check` end to end."""

from __future__ import annotations

import json
import math
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
from raympc.runtime.values import Secret
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


def test_a_dataclass_field_activation_is_swapped_in_the_compiled_program(aby3):
    """`act: Callable = nn.silu` binds jax's SiLU when the class is defined: no name `use` rebinds
    reaches it, the program rewrite does, and the bytes become those of the looked-up form."""
    field_fn, (params, x) = _apply(FieldMLP())
    lookup_fn, _ = _apply(LookupMLP())
    with acts.use("silu=raympc"):
        report = acts.coverage(field_fn, params, x)
        field = aby3.run(field_fn, Secret(params, "model"), x)
        lookup = aby3.run(lookup_fn, Secret(params, "model"), x)
    assert [(s.kind, s.status, s.runs) for s in report.sites] == [("silu", "swapped", "raympc")]
    stock = aby3.run(field_fn, Secret(params, "model"), x)
    assert field.metrics.send_bytes == lookup.metrics.send_bytes != stock.metrics.send_bytes
    assert field.program.key != stock.program.key
    assert np.abs(field.outputs - field_fn(params, x)).max() < 5e-3


def _gelu_new(x):
    """transformers' NewGELUActivation (GPT-2's `gelu_new`), as its Flax models compute it."""
    return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * jnp.power(x, 3.0))))


ACT2FN = {"gelu_new": _gelu_new}  # bound at import, as transformers' ACT2FN is


class GPT2StyleMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(4)(ACT2FN["gelu_new"](nn.Dense(16)(x)))


def test_a_gelu_written_out_and_bound_in_a_dict_is_swapped(aby3):
    fn, (params, x) = _apply(GPT2StyleMLP())
    with acts.use("gelu_tanh=raympc"):
        report = acts.coverage(fn, params, x)
        swapped = aby3.run(fn, Secret(params, "model"), x)
    stock = aby3.run(fn, Secret(params, "model"), x)
    assert [(s.kind, s.status) for s in report.sites] == [("gelu_tanh", "swapped")]
    assert swapped.metrics.send_bytes < stock.metrics.send_bytes
    assert np.abs(swapped.outputs - fn(params, x)).max() < 1e-2


def test_a_causal_mask_of_finfo_min_breaks_spus_softmax_and_not_raympcs(aby3):
    """flax's attention masks with finfo(float32).min: SPU's stock exp wraps on it."""
    q = np.random.default_rng(2).standard_normal((1, 6, 2, 8)).astype(np.float32)
    mask = nn.make_causal_mask(np.ones((1, 6)))

    def attend(q, k, v):
        return nn.dot_product_attention(q, k, v, mask=mask)

    plain = np.asarray(attend(q, q, q))
    with acts.use("softmax=raympc"):
        report = acts.coverage(attend, q, q, q)
        ours = aby3.run(attend, q, q, q).outputs
    stock = aby3.run(attend, q, q, q).outputs
    assert [(s.kind, s.status) for s in report.sites] == [("softmax", "swapped")]
    assert np.abs(ours - plain).max() < 5e-3
    assert np.abs(stock - plain).max() > 0.05  # the masked rows come out wrong
    assert any(f.largest >= 3e38 for f in out_of_range(attend, q, q, q))


SILU, GELU = jax.nn.silu, jax.nn.gelu  # bound at import, as a model's module-level aliases would be


@jax.custom_jvp
def gelu_with_own_derivative(x):  # a custom derivative, as training code often adds
    return GELU(x)


gelu_with_own_derivative.defjvp(lambda primals, tangents: (gelu_with_own_derivative(primals[0]), tangents[0]))


def test_sites_inside_a_scan_and_a_custom_derivative_are_swapped(aby3):
    """Layers stacked with lax.scan (one body, traced once) and an activation with its own jvp:
    the rewrite enters both, so the compiled loop body runs raympc's forms."""
    def stack(ws, x):
        return jax.lax.scan(lambda h, w: (gelu_with_own_derivative(SILU(h @ w)), None), x, ws)[0]

    rng = np.random.default_rng(3)
    ws, x = (0.5 * rng.standard_normal((3, 8, 8))).astype(np.float32), rng.standard_normal((2, 8)).astype(np.float32)
    with acts.use("raympc"):
        report = acts.coverage(stack, ws, x)
        ours = aby3.run(stack, Secret(ws, "model"), x)
    stock = aby3.run(stack, Secret(ws, "model"), x)
    assert [(s.kind, s.status) for s in report.sites] == [("silu", "swapped"), ("gelu_tanh", "swapped")]
    assert ours.metrics.send_bytes < stock.metrics.send_bytes
    assert np.abs(ours.outputs - stack(ws, x)).max() < 1e-2


def test_what_the_rewrite_cannot_recognise_is_reported_missed():
    def handmade_softmax(x):  # no stop_gradient: not jax.nn.softmax's shape
        e = jnp.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    with acts.use("raympc"):
        report = acts.coverage(handmade_softmax, np.ones((2, 8), np.float32))
    assert [(s.kind, s.status) for s in report.sites] == [("exp", "missed")]
    assert "MISSED: exp at" in report.summary() and "handmade_softmax" in report.missed[0].where


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
    lan, wan = (float(next(line.split("│")[5] for line in proc.stdout.splitlines() if line.startswith(f"│ {n} ")))
                for n in ("lan", "wan"))
    assert wan > lan > 0  # the same step, priced on two networks


def test_sample_records_the_coverage_of_what_it_ran(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "raympc.cli", "sample", "--workload", "tiny-mnist", "--steps", "1",
                           "--batch", "1", "--no-breakdown", "--exp-mode", "pade", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((tmp_path / "tiny-mnist-raympc-pade.json").read_text())
    assert run["exp_mode"] == "pade"
    assert run["coverage"]["total"] > 0 and run["coverage"]["swapped"] == run["coverage"]["total"]
    assert "nonlinearity call sites swapped" in proc.stdout
