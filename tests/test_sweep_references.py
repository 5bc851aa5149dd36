"""Shared reference steps: points that run the same program get one measurement between them, a
measurer that fails hands over to the next point, and a resumed sweep reuses stored references.
The board runs as a real Ray actor; points are threads calling it as point tasks do."""

from __future__ import annotations

import threading
import time

import ray

from raympc.sweeps.references import obtain, program_forms, reference_key, start_board
from raympc.sweeps.spec import PointParams
from workloads.protocol import WorkloadOptions


def test_key_ignores_network_seed_and_steps_but_not_the_program():
    base = PointParams(workload="tiny-mnist", network="wan", seed=0, steps=1)
    same = [PointParams(workload="tiny-mnist", network="lan", seed=3, steps=4, breakdown=False),
            PointParams(workload="tiny-mnist", rate="1gbit", rtt="10ms", shaping="relay")]
    other = [PointParams(workload="tiny-mnist", activations="spu-direct"), PointParams(workload="ddim-mnist"),
             PointParams(workload="tiny-mnist", batch=2), PointParams(workload="tiny-mnist", placement="spread"),
             PointParams(workload="tiny-mnist", exp_mode="pade"), PointParams(workload="tiny-mnist", party_cpus=0.5)]
    assert all(reference_key(p) == reference_key(base) for p in same)
    assert len({reference_key(p) for p in [base, *other]}) == 1 + len(other)


def test_networks_that_pick_other_forms_get_references_of_their_own():
    """raympc's softmax takes the tournament on `wan` and the tree unshaped and on `lan` (the
    MNIST U-Net's 49-key rows at batch 2): those are two programs, and two references."""
    opts = WorkloadOptions(steps=1, batch=2)
    points = {net: PointParams(workload="ddim-mnist", network=net, batch=2) for net in ("wan", "lan", "unshaped")}
    forms = {net: program_forms(p, opts) for net, p in points.items()}
    assert any("tournament" in f for f in forms["wan"]) and not any("tournament" in f for f in forms["lan"])
    assert forms["lan"] == forms["unshaped"]
    keys = {net: reference_key(p, forms[net]) for net, p in points.items()}
    assert keys["wan"] != keys["lan"] == keys["unshaped"]
    # a policy whose forms do not depend on the network builds nothing and shares one key
    stock = PointParams(workload="ddim-mnist", network="wan", activations="spu-direct")
    assert program_forms(stock, opts) == ()


def _measurer(calls: list[str], name: str, fail: bool = False, seconds: float = 1.0, started=None):
    def measure():
        calls.append(name)
        if started is not None:
            started.set()
        time.sleep(seconds)
        if fail:
            raise RuntimeError(f"{name} could not measure")
        return {"time_s": 1.5, "max_rank_send_bytes": 10, "max_rank_send_actions": 2, "measured_by": name}
    return measure


def _concurrently(board, key: str, first: tuple[str, dict], others: dict, block: bool = True) -> dict:
    """`first` asks alone; the others ask once it is measuring (so who measures is certain)."""
    got: dict = {}

    def run(name, measure):
        try:
            got[name] = obtain(board, key, measure, block=block)
        except RuntimeError as exc:
            got[name] = exc

    name, kwargs = first
    started = threading.Event()
    threads = [threading.Thread(target=run, args=(name, _measurer(**kwargs, started=started)))]
    threads[0].start()
    assert started.wait(60), "the first asker never started measuring"
    threads += [threading.Thread(target=run, args=(n, m)) for n, m in others.items()]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(60)
    return got


def test_first_asker_measures_and_the_others_reuse_it(ray_ready):
    board = start_board()
    calls: list[str] = []
    got = _concurrently(board, "k", ("a", {"calls": calls, "name": "a"}),
                        {n: _measurer(calls, n) for n in ("b", "c")})
    assert calls == ["a"]
    assert all(g["measured_by"] == "a" for g in got.values())
    # a point that does not block (its shaped run comes first) gets None while it is being measured
    other: list[str] = []
    slow = _concurrently(board, "k2", ("d", {"calls": other, "name": "d", "seconds": 5}),
                         {"e": _measurer(other, "e")}, block=False)
    assert other == ["d"] and slow["e"] is None and slow["d"]["measured_by"] == "d"
    assert obtain(board, "k2", _measurer(other, "f"))["measured_by"] == "d" and other == ["d"]
    ray.kill(board)


def test_a_failed_measurer_hands_over_to_the_next_point(ray_ready):
    board = start_board()
    calls: list[str] = []
    got = _concurrently(board, "k", ("a", {"calls": calls, "name": "a", "fail": True}),
                        {"b": _measurer(calls, "b"), "c": _measurer(calls, "c")})
    assert isinstance(got["a"], RuntimeError)
    assert calls[0] == "a" and len(calls) == 2  # exactly one of the others measured after a failed
    assert got["b"]["measured_by"] == got["c"]["measured_by"] == calls[1]
    ray.kill(board)


def test_each_invocation_measures_its_references_afresh(ray_ready):
    """A new board (a sweep started or resumed) knows no reference: the first point to ask
    measures, even for a program an earlier invocation measured (machines drift in between)."""
    board = start_board()
    calls: list[str] = []
    assert obtain(board, "k", _measurer(calls, "x", seconds=0))["measured_by"] == "x"
    assert obtain(board, "k", _measurer(calls, "y", seconds=0))["measured_by"] == "x"
    assert calls == ["x"]
    ray.kill(board)
