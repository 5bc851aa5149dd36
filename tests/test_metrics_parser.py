"""The profile-log parser, on a block as SPU 0.9.5 writes it."""

from __future__ import annotations

import pytest

from raympc.runtime.metrics import ProfileLogError, RunMetrics, parse_profile_log

BLOCK = """\
2026-11-26 06:10:58.632 [info] [api.cc:printProfilingData:172] [Profiling] SPU execution f completed, input processing took 3.6e-06s, execution took 0.0372s, output processing took 4.5e-06s, total time 0.0372s.
2026-11-26 06:10:58.632 [info] [api.cc:printProfilingData:220] HLO profiling: total time 0.0288
2026-11-26 06:10:58.632 [info] [api.cc:printProfilingData:223] - pphlo.dot, executed 1 times, duration 0.0014s, send bytes 20480 recv bytes 24576, send actions 3, recv actions 4
2026-11-26 06:10:58.632 [info] [api.cc:printProfilingData:223] - pphlo.exponential, executed 2 times, duration 0.0044s, send bytes 151552 recv bytes 151552, send actions 23, recv actions 23
2026-11-26 06:10:58.632 [info] [api.cc:printProfilingData:220] HAL profiling: total time 0.0287
2026-11-26 06:10:58.632 [info] [api.cc:printProfilingData:223] - f_mmul, executed 1 times, duration 0.0014s, send bytes 20480 recv bytes 24576, send actions 3, recv actions 4
2026-11-26 06:10:58.632 [info] [api.cc:printProfilingData:220] MPC profiling: total time 0.0282
2026-11-26 06:10:58.632 [info] [api.cc:printProfilingData:223] - mmul_aa, executed 1 times, duration 0.0007s, send bytes 8192 recv bytes 8192, send actions 1, recv actions 1
2026-11-26 06:10:58.633 [info] [api.cc:printProfilingData:233] Link details: total send bytes 172032, recv bytes 176128, send actions 26, recv actions 27
"""


def test_parse_one_block():
    m = parse_profile_log(BLOCK.splitlines(), rank=1, node="n1")
    assert (m.rank, m.node) == (1, "n1")
    assert m.send_bytes == 172032 and m.recv_bytes == 176128
    assert m.send_actions == 26 and m.recv_actions == 27
    assert m.execution_time_s == pytest.approx(0.0372)
    assert m.ops["hlo"]["pphlo.exponential"].count == 2
    assert m.ops["hlo"]["pphlo.exponential"].send_bytes == 151552
    assert set(m.ops["hal"]) == {"f_mmul"}
    assert m.ops["mpc"]["mmul_aa"].send_actions == 1


def test_two_blocks_are_summed():
    m = parse_profile_log((BLOCK + BLOCK).splitlines(), rank=0)
    assert m.send_bytes == 2 * 172032
    assert m.ops["hlo"]["pphlo.dot"].count == 2


def test_missing_link_line_is_an_error():
    with pytest.raises(ProfileLogError):
        parse_profile_log(BLOCK.splitlines()[:-1], rank=2)


def test_round_trip_through_dict():
    ranks = [parse_profile_log(BLOCK.splitlines(), rank=r) for r in range(3)]
    m = RunMetrics(program="f", wall_time_s=0.1, ranks=ranks)
    again = RunMetrics.from_dict(m.to_dict())
    assert again.send_bytes == 3 * 172032 == m.send_bytes
    assert again.ops("mpc")["mmul_aa"].count == 3
