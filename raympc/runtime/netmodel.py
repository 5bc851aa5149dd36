"""Analytic network model: a secure run's time under any network profile, from one measured run.

    time = compute + rounds x one-way delay + link bytes / rate + per-message relay overhead

What the measured run gives: per rank, SPU's send bytes and send actions (messages). Send actions
are not rounds. In ABY3 a dependent round has every party send to its next neighbour at the same
time (resharing a product, a truncation, a comparison layer), so each round costs one one-way delay
and about one action per rank; some rounds send to both neighbours (opening a value), and parties
send while others wait. So the model counts `rounds = a x max-rank actions` with `a` calibrated
(the shipped fit gives 1.04: the busiest rank's messages are essentially its dependent rounds).
Bytes: each directed link is shaped on its own, and a rank sends most of its traffic to one
neighbour, so the busiest link carries `b x max-rank bytes`, `b` calibrated. The shaping relay
costs each message CPU time the parties' computation loses: its writer yields in a loop through
the last stretch of each added delay (`netsim.relay.busy_wait_s`, at most 0.6 ms; it keeps round
trips within a tenth of a millisecond of the profile), so the overhead is `g x max-rank actions x
busy_wait / 0.6 ms`: full at one-way delays of 0.6 ms and more, a sixth of it on `lan` (0.1 ms).
A flat `g` per message put `lan`'s prediction 21-26% above the measured step: there the relay
hardly waits. `compute` is the run's time with no shaping; from a run that was itself shaped,
it is that time minus the model's network time for its own profile.

`Calibration.fit` finds a, b, g by least squares from runs of the same program under several
profiles; `raympc bench netmodel` measures them and checks the prediction on profiles it was not
fitted on. Shipped constants (`DEFAULT_PATH`) come from that bench on this project's CI machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from scipy.optimize import nnls

from netsim import NetworkProfile, resolve
from netsim.relay import achievable_profile, beyond_floor_profile, busy_wait_s

# the relay's longest busy wait per message: the overhead term's unit
FULL_BUSY_WAIT_S = busy_wait_s(float("inf"))


@dataclass(frozen=True)
class RunCost:
    """What the model needs from a measured run (one step, or a whole run: it is linear)."""

    time_s: float
    max_rank_send_bytes: float
    max_rank_send_actions: float
    network: "str | NetworkProfile" = "unshaped"  # the profile the run was measured under

    # the run figures (per step or per run) a cost is built from
    FIELDS = ("time_s", "max_rank_send_bytes", "max_rank_send_actions")

    @classmethod
    def from_dict(cls, d: dict[str, Any], network: "str | NetworkProfile | None" = None) -> "RunCost":
        missing = [k for k in cls.FIELDS if k not in d]
        if missing:
            raise ValueError(f"run figures lack {missing}; rerun with this raympc version "
                             "(they are recorded per step since the analytic model landed)")
        return cls(float(d["time_s"]), float(d["max_rank_send_bytes"]), float(d["max_rank_send_actions"]),
                   network or d.get("network", "unshaped"))


def _delay_rate(profile: NetworkProfile) -> tuple[float, float | None]:
    """One-way delay (s) and rate (bit/s, None = unlimited) of the slowest directed link."""
    links = [profile.default, *profile.links.values()]
    delay = max(link.delay_s for link in links)
    rates = [link.rate_bps for link in links if link.rate_bps]
    return delay, (min(rates) if rates else None)


def _busy_actions(actions: float, delay_s: float) -> float:
    """Messages weighted by how long the relay busy-waits on each (1 = its longest wait)."""
    return actions * busy_wait_s(delay_s) / FULL_BUSY_WAIT_S


@dataclass
class Calibration:
    rounds_per_action: float = 1.0  # a
    link_share_of_bytes: float = 1.0  # b
    overhead_per_action_s: float = 0.0  # g: per message at the relay's longest busy wait
    fitted_on: list[str] = field(default_factory=list)
    note: str = ""

    def network_time(self, cost: RunCost, profile: NetworkProfile) -> dict[str, float]:
        if not profile.shaped:
            return {"latency_s": 0.0, "bandwidth_s": 0.0, "overhead_s": 0.0}
        delay, rate = _delay_rate(profile)
        return {
            "latency_s": self.rounds_per_action * cost.max_rank_send_actions * delay,
            "bandwidth_s": self.link_share_of_bytes * cost.max_rank_send_bytes * 8 / rate if rate else 0.0,
            "overhead_s": self.overhead_per_action_s * _busy_actions(cost.max_rank_send_actions, delay),
        }

    def predict(self, cost: RunCost, network: "str | NetworkProfile") -> dict[str, float]:
        """Predicted time of `cost`'s run under `network`, with its parts."""
        target = resolve(network)
        own = self.network_time(cost, resolve(cost.network))
        compute = max(cost.time_s - sum(own.values()), 0.0)
        parts = self.network_time(cost, target)
        out = {"time_s": compute + sum(parts.values()), "compute_s": compute, **parts, "network": target.name}
        if target.default.loss or any(s.loss for s in target.links.values()):
            # lossy points are measured, and predicted as if lossless: say so beside the figure
            out["not_modelled"] = "packet loss: TCP's retransmissions and recovery"
        return out

    @classmethod
    def fit(cls, samples: Iterable[tuple[RunCost, str, float]], note: str = "") -> "Calibration":
        """Least squares over (unshaped run, profile, measured time under that profile)."""
        rows, target, names = [], [], []
        for cost, network, measured in samples:
            profile = resolve(network)
            delay, rate = _delay_rate(profile)
            if cost.network not in ("unshaped", None) and resolve(cost.network).shaped:
                raise ValueError("calibrate from runs measured without shaping")
            rows.append([cost.max_rank_send_actions * delay,
                         cost.max_rank_send_bytes * 8 / rate if rate else 0.0,
                         _busy_actions(cost.max_rank_send_actions, delay)])
            target.append(measured - cost.time_s)
            names.append(profile.name)
        if len(rows) < 3:
            raise ValueError("calibration needs runs under at least three shaped profiles")

        a = np.asarray(rows)
        scale = np.where(a.max(axis=0) > 0, a.max(axis=0), 1.0)
        coef, _ = nnls(a / scale, np.asarray(target))
        coef = coef / scale
        return cls(float(coef[0]), float(coef[1]), float(coef[2]), sorted(set(names)), note)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path | None = None) -> "Calibration":
        path = path or DEFAULT_PATH
        if not path.exists():
            return cls(note="uncalibrated: a = b = 1, g = 0")
        return cls(**json.loads(path.read_text()))


DEFAULT_PATH = Path(__file__).with_name("netmodel_calibration.json")


# The backend whose rate and delay the user-space relay makes, so that its floor and ceiling apply
# (under tc+relay the kernel sets the rate: only the delay floor would, and it is not corrected).
RELAY_BACKENDS = ("relay",)


def floor_correction(per_step: list[dict[str, Any]], network: "str | NetworkProfile | None", backend: str | None,
                     calibration: Calibration | None = None) -> dict[str, Any] | None:
    """For a run the relay shaped on a profile beyond what it can give (`lan`'s 10 Gbit/s): the
    model's time for the same steps on the profile as set, from each step as measured on what the
    relay gave. None when another backend shaped the run or the relay could give the profile.

    The model corrects only what it knows: the relay's delay floor and rate ceiling
    (`netsim.relay.achievable`), not its scheduling noise.
    """
    if backend not in RELAY_BACKENDS:
        return None
    profile = resolve(network)
    why = beyond_floor_profile(profile)
    if why is None:
        return None
    calibration = calibration or Calibration.load()
    gave = achievable_profile(profile)
    corrected = sum(calibration.predict(RunCost.from_dict(s, network=gave), profile)["time_s"] for s in per_step)
    measured = sum(s["time_s"] for s in per_step)
    return {"why": why, "measured_s": measured, "time_s": corrected, "change": corrected / measured - 1 if measured else 0.0,
            "relay_gave": {"rate_bps": gave.default.rate_bps, "delay_s": gave.default.delay_s}}
