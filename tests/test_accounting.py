"""Byte accounting: the Ray-hosted parties' totals agree with SPU's in-process simulation."""

from __future__ import annotations

import json

import jax
import numpy as np

from raympc import Secret
from raympc.runtime.simulation import simulate_in_ray
from workloads.kernels import KERNELS


def test_bytes_match_in_process_simulation(aby3, rng):
    for kernel in KERNELS.values():
        inputs = kernel.make_inputs(rng, 1)
        tagged = [Secret(a, owner=o) for a, o in zip(inputs, kernel.owners)]
        result = aby3.run(kernel.fn, *tagged)
        ref = simulate_in_ray(result.program, inputs, aby3.spu_config)
        m = result.metrics
        assert m.send_bytes > 0
        assert abs(m.send_bytes - ref.send_bytes) <= 0.01 * ref.send_bytes, (kernel.name, m.send_bytes, ref.send_bytes)
        assert abs(m.send_actions - ref.send_actions) <= 0.01 * ref.send_actions
        # Both paths compute the same thing.
        for got, want in zip(jax.tree_util.tree_leaves(result.outputs), ref.outputs):
            np.testing.assert_allclose(got, want, atol=1e-2)


def test_metrics_cover_all_ranks_and_levels(aby3, rng):
    x = rng.standard_normal((4, 32)).astype(np.float32)
    m = aby3.run(lambda a: a * a + 1.0, x).metrics
    assert [r.rank for r in m.ranks] == [0, 1, 2]
    assert all(r.send_bytes > 0 and r.send_actions > 0 for r in m.ranks)
    assert m.send_bytes == sum(r.send_bytes for r in m.ranks)
    for level in ("hlo", "hal", "mpc"):
        ops = m.ops(level)
        assert ops, level
        # Every rank's per-op bytes add up to what its link reported.
        for r in m.ranks:
            assert sum(s.send_bytes for s in r.ops[level].values()) == r.send_bytes
    d = m.to_dict()
    assert json.loads(json.dumps(d))["send_bytes"] == m.send_bytes


def test_session_metrics_accumulate(aby3, rng):
    before = aby3.metrics.send_bytes if aby3.metrics else 0
    runs_before = aby3.metrics.runs if aby3.metrics else 0
    x = rng.standard_normal((4, 4)).astype(np.float32)
    m1 = aby3.run(lambda a: a * a, x).metrics
    m2 = aby3.run(lambda a: a * a, x).metrics
    assert aby3.metrics.send_bytes == before + m1.send_bytes + m2.send_bytes
    assert aby3.metrics.runs == runs_before + 2
