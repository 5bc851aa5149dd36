"""The Stable Diffusion U-Net: a tiny secure step matches plaintext; layer sizes come out of an
abstract trace of full SD v1 without allocating it; the per-kind cost model fits and predicts."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import raympc.activations as acts
from raympc import Public, Secret
from workloads import breakdown, extrapolate, sd_unet


@pytest.fixture(scope="module")
def tiny():
    s = sd_unet.scale("tiny")
    params = sd_unet.init_params(s, seed=0)
    return s, params, sd_unet.step_arguments(s, params, batch=1, seed=0)


def test_secure_sd_step_matches_plaintext_and_its_kinds_cover_it(aby3, tiny):
    s, params, args = tiny
    step = sd_unet.step_function(s)
    with acts.use("raympc"):
        plain = np.asarray(jax.jit(step)(*args))
        run = aby3.run(step, Secret(params, owner="model"), *args[1:4], Public(args[4]), Public(args[5]))
        calls = breakdown.record_layers(step, *args, public=sd_unet.PUBLIC_STEP_ARGS)
        kinds = breakdown.measure_kinds(aby3, calls)
    assert run.outputs.shape == (1, 4, 8, 8)
    assert np.abs(run.outputs - plain).max() < 0.02
    layers = sum(v["send_bytes"] for v in kinds.values())
    assert 0.97 * run.metrics.send_bytes <= layers <= run.metrics.send_bytes * 1.001
    assert kinds["attention"]["calls"] > 0 and kinds["groupnorm"]["calls"] > 0


def test_full_sd_v1_is_traced_without_allocating_it():
    s = sd_unet.scale("sd-v1")
    abstract = sd_unet.abstract_params(s)
    params = sd_unet.count_params(abstract)
    assert 855e6 < params < 865e6  # SD v1's U-Net: 859.5M parameters
    with acts.use("raympc"):
        calls = breakdown.record_layers(sd_unet.step_function(s), *sd_unet.step_arguments(s, abstract),
                                        public=sd_unet.PUBLIC_STEP_ARGS)
    sizes = extrapolate.kind_sizes(calls)
    # 16 transformer blocks with one self- and one cross-attention each
    assert sizes["attention"]["calls"] == 32
    # the largest self-attention: 64x64 latent -> 4096 tokens, 8 heads, batch 1
    assert max(c.features.get("scores", 0) for c in calls) == 8 * 4096 * 4096
    # a pairwise row max over 4096 keys is 12 levels deep, over CLIP's 77 tokens 7: 16 cross-
    # attentions at 7 and self-attentions over 4096, 1024, 256 (five each) and 64 (the mid block)
    assert max(c.features.get("depth", 0) for c in calls) == 12
    assert sizes["attention"]["depth"] == 16 * 7 + 5 * (12 + 10 + 8) + 6


def _measurement(name: str, k: float, calls: int = 2) -> extrapolate.Measurement:
    """Synthetic measurement whose costs are exactly linear in its sizes; its attention's rows grow
    with k, and its row max's depth with them (log2 of the keys per call)."""
    depth = calls * np.ceil(np.log2(8 * k))
    sizes = {"conv/matmul": {"elements": 100 * k, "calls": 10},
             "groupnorm": {"elements": 50 * k, "stats": 8 * k ** 0.5, "calls": 5},
             "activation": {"elements": 60 * k, "calls": 6},
             "attention": {"scores": 30 * k * k, "rows": 4 * k, "elements": 10 * k, "depth": depth, "calls": calls}}
    kinds = {"conv/matmul": {"send_bytes": 20 * 100 * k, "send_actions": 80, "time_s": 1.0},
             "groupnorm": {"send_bytes": 24 * 50 * k + 900 * 8 * k ** 0.5, "send_actions": 1000, "time_s": 1.0},
             "activation": {"send_bytes": 550 * 60 * k, "send_actions": 600, "time_s": 1.0},
             "attention": {"send_bytes": 700 * 30 * k * k + 300 * 4 * k + 20 * 10 * k,
                           "send_actions": 500 * calls + 27 * depth, "time_s": 1.0}}
    layers = sum(v["send_bytes"] for v in kinds.values())
    actions = sum(v["send_actions"] for v in kinds.values())
    total = {"send_bytes": layers / 0.99, "send_actions": actions / 0.99, "time_s": 4.0 / 0.9}
    kinds["other"] = {m: total[m] - sum(v[m] for v in kinds.values()) for m in extrapolate.METRICS}
    return extrapolate.Measurement(name, sizes, kinds, total)


def test_cost_model_recovers_linear_costs_and_predicts_a_held_out_scale():
    fit = [_measurement(n, k, calls) for n, k, calls in (("a", 1.0, 2), ("b", 3.0, 3), ("c", 7.0, 2), ("d", 12.0, 4))]
    model = extrapolate.CostModel.fit(fit)
    assert model.actions_coef["attention"] == pytest.approx({"calls": 500, "depth": 27})
    held = _measurement("e", 512.0, 5)  # rows of 4096 keys: 12 levels, where the fitted ones reach 7
    errors = extrapolate.relative_errors(model.predict(held.sizes), held)
    assert abs(errors["total"]["send_bytes"]) < 1e-6
    assert abs(errors["total"]["send_actions"]) < 1e-6
    assert abs(errors["attention"]["send_actions"]) < 1e-6
    with pytest.raises(ValueError, match="at least two"):
        extrapolate.CostModel.fit(fit[:1])


def test_cached_scale_measurements_are_reused_only_for_the_same_code_and_scale():
    import json

    from raympc.bench import sd_scale

    code = sd_scale.code_fingerprint()
    info = {"scale": json.loads(json.dumps(sd_unet.scale("tiny").describe())), "activations": "raympc",
            "code": code}
    cached = _measurement("tiny", 1.0)
    cached.info = info
    assert sd_scale._still_valid(cached, "raympc", code)
    assert not sd_scale._still_valid(cached, "spu-direct", code)
    cached.info = {**info, "code": "0" * 16}  # measured with other activation or U-Net code
    assert not sd_scale._still_valid(cached, "raympc", code)
    cached.info = {**info, "scale": {**info["scale"], "sample_size": 12}}  # the scale was redefined
    assert not sd_scale._still_valid(cached, "raympc", code)
    cached.info = {k: v for k, v in info.items() if k != "code"}  # cached before fingerprints existed
    assert not sd_scale._still_valid(cached, "raympc", code)
