"""Real third-party code under raympc's policies: transformers' Flax GPT-2 with random weights.

GPT-2 binds its activation in transformers' ACT2FN dict when the module is imported (`gelu_new`,
GeLU written out with `jnp.power(x, 3.0)`), masks attention causally with finfo(float32).min, and
normalises with flax's LayerNorm: every way a model can dodge an activation swap or break fixed
point at once.
"""

from __future__ import annotations

import numpy as np
import pytest
from transformers import FlaxGPT2LMHeadModel, GPT2Config

import raympc.activations as acts
from raympc.activations.ranges import out_of_range
from raympc.runtime.values import Public, Secret

CONFIG = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=128, activation_function="gelu_new")


@pytest.fixture(scope="module")
def gpt2():
    model = FlaxGPT2LMHeadModel(CONFIG, seed=0)
    ids = (np.arange(16, dtype=np.int32)[None] * 7) % CONFIG.vocab_size

    def logits(params, ids):
        return model(ids, params=params).logits

    return logits, model.params, ids, np.asarray(logits(model.params, ids))


def test_every_gpt2_nonlinearity_is_swapped(gpt2):
    logits, params, ids, _ = gpt2
    with acts.use("raympc"):
        report = acts.coverage(logits, params, ids)
    kinds = sorted(s.kind for s in report.sites)
    assert kinds == ["gelu_tanh"] * 2 + ["rsqrt"] * 5 + ["softmax"] * 2  # 2 blocks: MLP, 2+1 LayerNorms, attention
    assert not report.missed and len(report.swapped) == len(report.sites)
    assert all("modeling_flax_gpt2.py" in s.where for s in report.sites if s.kind == "gelu_tanh")


def test_the_preflight_finds_gpt2s_causal_mask(gpt2):
    logits, params, ids, _ = gpt2
    found = [f for f in out_of_range(logits, params, ids) if "FlaxGPT2Attention" in f.where]
    assert found and max(f.largest for f in found) >= 3e38


def test_gpt2_logits_under_each_policy(gpt2, aby3):
    """SPU's stock softmax breaks on the mask; raympc's softmax alone, and all of raympc's forms
    (fewer bytes than SPU's), keep the logits within 2e-3 of plaintext."""
    logits, params, ids, plain = gpt2
    runs = {}
    for policy in ("spu-direct", "softmax=raympc", "raympc"):
        with acts.use(policy):
            runs[policy] = aby3.run(logits, Secret(params, "model"), Public(ids))
    error = {p: float(np.abs(r.outputs - plain).max()) for p, r in runs.items()}
    assert error["spu-direct"] > 0.1, error
    assert error["softmax=raympc"] <= 2e-3, error
    assert error["raympc"] <= 2e-3, error
    assert runs["raympc"].metrics.send_bytes < runs["spu-direct"].metrics.send_bytes
