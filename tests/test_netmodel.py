"""The analytic network model: calibration recovers known constants, predictions start from the
run's own profile, and `raympc predict` reads sample JSON and sweep directories."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netsim import resolve
from raympc.runtime.netmodel import Calibration, RunCost

TRUE = Calibration(rounds_per_action=0.6, link_share_of_bytes=0.7, overhead_per_action_s=2e-4)
PROFILES = ["100mbit,1ms", "1gbit,10ms", "300mbit,5ms", "50mbit,20ms", "wan", "spu-wan", "lan"]


def _measured(cost: RunCost, network: str) -> float:
    return TRUE.predict(cost, network)["time_s"]


def test_fit_recovers_the_constants_and_predicts_other_profiles():
    costs = [RunCost(4.0, 15e6, 1300), RunCost(9.0, 40e6, 1900)]
    samples = [(c, p, _measured(c, p)) for c in costs for p in PROFILES[:3]]
    fitted = Calibration.fit(samples)
    assert fitted.rounds_per_action == pytest.approx(0.6, rel=1e-6)
    assert fitted.link_share_of_bytes == pytest.approx(0.7, rel=1e-6)
    assert fitted.overhead_per_action_s == pytest.approx(2e-4, rel=1e-6)
    for p in PROFILES[3:]:
        assert fitted.predict(costs[0], p)["time_s"] == pytest.approx(_measured(costs[0], p), rel=1e-6)


def test_prediction_from_a_shaped_run_removes_its_own_network_time_first():
    unshaped = RunCost(4.0, 15e6, 1300)
    wan_time = _measured(unshaped, "wan")
    from_wan = RunCost(wan_time, 15e6, 1300, network="wan")
    assert TRUE.predict(from_wan, "unshaped")["time_s"] == pytest.approx(4.0)
    assert TRUE.predict(from_wan, "lan")["time_s"] == pytest.approx(_measured(unshaped, "lan"))
    parts = TRUE.predict(unshaped, "wan")
    assert parts["latency_s"] == pytest.approx(0.6 * 1300 * resolve("wan").default.delay_s)


def test_calibration_needs_three_profiles_and_unshaped_runs():
    c = RunCost(4.0, 15e6, 1300)
    with pytest.raises(ValueError, match="three"):
        Calibration.fit([(c, "wan", 10.0), (c, "lan", 5.0)])
    with pytest.raises(ValueError, match="without shaping"):
        Calibration.fit([(RunCost(4.0, 1, 1, network="wan"), p, 9.0) for p in PROFILES[:3]])
    with pytest.raises(ValueError, match="max_rank_send_bytes"):
        RunCost.from_dict({"time_s": 1.0})


def test_predict_command_reads_a_sample_json(tmp_path):
    run = {"workload": "ddim-mnist", "activations": "raympc", "network": {"profile": "unshaped"},
           "per_step": [{"time_s": 4.0, "max_rank_send_bytes": 15e6, "max_rank_send_actions": 1300}] * 2}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    out = subprocess.run([sys.executable, "-m", "raympc.cli", "predict", str(path), "--network", "wan",
                          "--network", "100mbit,40ms"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "wan" in out.stdout and "100mbit,40ms" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "raympc.cli", "predict", str(path), "--network", "fast"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "fast" in bad.stderr


def test_relay_overhead_scales_with_how_long_the_relay_busy_waits():
    """The per-message overhead is the relay's CPU time yielding through each delay's last stretch:
    full from 0.6 ms one way, in proportion below (lan's 0.1 ms: a sixth), none unshaped."""
    cost = RunCost(4.0, 15e6, 1300)
    full = TRUE.predict(cost, "1gbit,1ms")["overhead_s"]
    assert full == pytest.approx(2e-4 * 1300)
    assert TRUE.predict(cost, "wan")["overhead_s"] == pytest.approx(full)
    assert TRUE.predict(cost, "lan")["overhead_s"] == pytest.approx(full * 0.1 / 0.6)
    assert TRUE.predict(cost, "unshaped")["overhead_s"] == 0.0


def test_random_held_out_profiles_are_seeded_and_inside_the_tested_ranges(tmp_path):
    from raympc.bench.netmodel import DELAY_RANGE_MS, RATE_RANGE_MBIT, SPEC, random_profiles, with_profiles
    from raympc.sweeps import expand, load_spec

    drawn = random_profiles(6, seed=3)
    assert drawn == random_profiles(6, seed=3) and drawn != random_profiles(6, seed=4)
    for name in drawn:
        link = resolve(name).default
        assert RATE_RANGE_MBIT[0] * 1e6 * 0.99 <= link.rate_bps <= RATE_RANGE_MBIT[1] * 1e6 * 1.01
        assert DELAY_RANGE_MS[0] * 1e-3 * 0.99 <= link.delay_s <= DELAY_RANGE_MS[1] * 1e-3 * 1.01
    spec = with_profiles(SPEC, drawn, tmp_path)
    networks = {p.network for p in expand(load_spec(spec))}
    assert set(drawn) <= networks and {p.network for p in expand(load_spec(SPEC))} <= networks


def test_a_run_beyond_the_relays_floor_is_corrected_to_the_profile_as_set():
    """lan asks for 10 Gbit/s, more than the relay's 7: the model moves the run's time from what
    the relay gave to what was set; a profile the relay can give needs no correction."""
    from netsim.relay import RELAY_FLOOR_RTT_S, RELAY_MAX_RATE_BPS, achievable, achievable_profile
    from raympc.runtime.netmodel import floor_correction

    lan = resolve("lan")
    gave = achievable_profile(lan)
    assert gave.default.rate_bps == RELAY_MAX_RATE_BPS and gave.default.delay_s == lan.default.delay_s
    assert achievable(resolve("10gbit,0.02ms").default).delay_s == RELAY_FLOOR_RTT_S / 2
    assert achievable_profile(resolve("wan")) == resolve("wan")
    steps = [{"time_s": 4.0, "max_rank_send_bytes": 15e6, "max_rank_send_actions": 1300}] * 2
    fixed = floor_correction(steps, "lan", "relay", TRUE)
    assert "7 Gbit/s" in fixed["why"] and fixed["measured_s"] == 8.0
    # the bytes term at 10 Gbit/s instead of 7, nothing else
    expected = 8.0 - 2 * 0.7 * 15e6 * 8 * (1 / 7e9 - 1 / 10e9)
    assert fixed["time_s"] == pytest.approx(expected, rel=1e-9) and fixed["time_s"] < 8.0
    assert floor_correction(steps, "wan", "relay", TRUE) is None
    assert floor_correction(steps, "lan", "tc", TRUE) is None  # the kernel shaped it: no relay floor
