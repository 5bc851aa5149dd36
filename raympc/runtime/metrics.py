"""Run metrics gathered from every party's own SPU profile log.

SPU writes, per `Runtime.run`, a block of lines like
    [Profiling] SPU execution f completed, ... execution took 0.037s, ...
    HLO profiling: total time 0.0289
    - pphlo.dot, executed 1 times, duration 0.0015s, send bytes 20480 recv bytes 24576, send actions 3, recv actions 4
    HAL profiling: ...        MPC profiling: ...
    Link details: total send bytes 651264, recv bytes 667648, send actions 80, recv actions 84
Each party routes its log to a file of its own; `parse_profile_log` turns one run's lines into
a `RankMetrics`, and `RunMetrics` combines the ranks.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from rich.console import Group
from rich.table import Table

LEVELS = ("hlo", "hal", "mpc")

_EXEC_RE = re.compile(r"\[Profiling\] SPU execution (?P<name>\S+) completed.*execution took (?P<t>[0-9.eE+-]+)s")
_SECTION_RE = re.compile(r"\b(?P<level>HLO|HAL|MPC) profiling: total time (?P<t>[0-9.eE+-]+)")
_OP_RE = re.compile(
    r"- (?P<op>\S+), executed (?P<n>\d+) times, duration (?P<t>[0-9.eE+-]+)s, "
    r"send bytes (?P<sb>\d+) recv bytes (?P<rb>\d+), send actions (?P<sa>\d+), recv actions (?P<ra>\d+)"
)
_LINK_RE = re.compile(
    r"Link details: total send bytes (?P<sb>\d+), recv bytes (?P<rb>\d+), "
    r"send actions (?P<sa>\d+), recv actions (?P<ra>\d+)"
)


@dataclass
class OpStat:
    count: int = 0
    time_s: float = 0.0
    send_bytes: int = 0
    recv_bytes: int = 0
    send_actions: int = 0
    recv_actions: int = 0

    def add(self, other: "OpStat") -> None:
        self.count += other.count
        self.time_s += other.time_s
        self.send_bytes += other.send_bytes
        self.recv_bytes += other.recv_bytes
        self.send_actions += other.send_actions
        self.recv_actions += other.recv_actions


@dataclass
class RankMetrics:
    rank: int
    node: str = ""
    execution_time_s: float = 0.0
    send_bytes: int = 0
    recv_bytes: int = 0
    send_actions: int = 0
    recv_actions: int = 0
    ops: dict[str, dict[str, OpStat]] = field(default_factory=lambda: {lvl: {} for lvl in LEVELS})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RankMetrics":
        ops = {lvl: {op: OpStat(**s) for op, s in d.get("ops", {}).get(lvl, {}).items()} for lvl in LEVELS}
        return cls(**{**{k: v for k, v in d.items() if k != "ops"}, "ops": ops})

    def add(self, other: "RankMetrics") -> None:
        self.execution_time_s += other.execution_time_s
        self.send_bytes += other.send_bytes
        self.recv_bytes += other.recv_bytes
        self.send_actions += other.send_actions
        self.recv_actions += other.recv_actions
        for lvl in LEVELS:
            for op, stat in other.ops[lvl].items():
                self.ops[lvl].setdefault(op, OpStat()).add(stat)


class ProfileLogError(RuntimeError):
    """A profile block without the lines every run must log."""


def parse_profile_log(lines: Iterable[str], rank: int, node: str = "") -> RankMetrics:
    """Parse the profile lines one party logged for one or more runs (their figures are summed)."""
    metrics = RankMetrics(rank=rank, node=node)
    level: str | None = None
    seen_link = False
    for line in lines:
        if m := _OP_RE.search(line):
            if level is not None:
                stat = OpStat(int(m["n"]), float(m["t"]), int(m["sb"]), int(m["rb"]), int(m["sa"]), int(m["ra"]))
                metrics.ops[level].setdefault(m["op"], OpStat()).add(stat)
        elif m := _SECTION_RE.search(line):
            level = m["level"].lower()
        elif m := _LINK_RE.search(line):
            seen_link = True
            metrics.send_bytes += int(m["sb"])
            metrics.recv_bytes += int(m["rb"])
            metrics.send_actions += int(m["sa"])
            metrics.recv_actions += int(m["ra"])
            level = None
        elif m := _EXEC_RE.search(line):
            metrics.execution_time_s += float(m["t"])
            level = None
    if not seen_link:
        raise ProfileLogError(f"rank {rank}: no 'Link details' line in its profile log")
    return metrics


@dataclass
class RunMetrics:
    """Metrics of one secure run (or the sum of several), from all ranks."""

    program: str
    wall_time_s: float
    ranks: list[RankMetrics]
    runs: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def send_bytes(self) -> int:
        return sum(r.send_bytes for r in self.ranks)

    @property
    def send_actions(self) -> int:
        return sum(r.send_actions for r in self.ranks)

    @property
    def max_rank_send_bytes(self) -> int:
        return max((r.send_bytes for r in self.ranks), default=0)

    @property
    def max_rank_send_actions(self) -> int:
        return max((r.send_actions for r in self.ranks), default=0)

    def cost(self) -> dict[str, float]:
        """The figures a run's cost is summarised by (all ranks, and the busiest rank)."""
        return {"time_s": self.wall_time_s, "send_bytes": self.send_bytes, "send_actions": self.send_actions,
                "max_rank_send_bytes": self.max_rank_send_bytes, "max_rank_send_actions": self.max_rank_send_actions}

    def ops(self, level: str = "hal") -> dict[str, OpStat]:
        """Per-op figures at one level, summed over ranks."""
        total: dict[str, OpStat] = {}
        for r in self.ranks:
            for op, stat in r.ops[level].items():
                total.setdefault(op, OpStat()).add(stat)
        return total

    def op_costs(self, level: str = "mpc") -> dict[str, dict[str, float]]:
        """Per-op calls, bytes, send actions and time at one level, each per rank (the mean over
        ranks), heaviest in time first: where a program's compute and messages go."""
        n = max(len(self.ranks), 1)
        rows = sorted(self.ops(level).items(), key=lambda kv: -kv[1].time_s)
        return {op: {"calls": s.count / n, "time_s": s.time_s / n, "send_bytes": s.send_bytes / n,
                     "send_actions": s.send_actions / n} for op, s in rows}

    def add(self, other: "RunMetrics") -> None:
        if len(other.ranks) != len(self.ranks):
            raise ValueError("cannot add metrics of sessions with different party counts")
        self.wall_time_s += other.wall_time_s
        self.runs += other.runs
        for mine, theirs in zip(self.ranks, other.ranks):
            mine.add(theirs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "runs": self.runs,
            "wall_time_s": self.wall_time_s,
            "send_bytes": self.send_bytes,
            "send_actions": self.send_actions,
            "ranks": [asdict(r) for r in self.ranks],
            "extra": self.extra,
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunMetrics":
        return cls(
            program=d["program"], wall_time_s=d["wall_time_s"], runs=d.get("runs", 1),
            ranks=[RankMetrics.from_dict(r) for r in d["ranks"]], extra=d.get("extra", {}),
        )

    def table(self, level: str = "hal", top: int = 12) -> "rich.console.Group":  # noqa: F821
        """Rich renderables: per-rank totals and the heaviest ops at one level."""

        ranks = Table(title=f"{self.program}: {self.runs} run(s), wall {self.wall_time_s:.3f} s")
        for col in ("rank", "node", "exec s", "sent bytes", "send actions"):
            ranks.add_column(col, justify="right")
        for r in self.ranks:
            ranks.add_row(str(r.rank), r.node, f"{r.execution_time_s:.3f}", f"{r.send_bytes:,}", f"{r.send_actions:,}")
        ranks.add_row("all", "", "", f"{self.send_bytes:,}", f"{self.send_actions:,}", style="bold")

        ops = Table(title=f"{level.upper()} ops, all ranks (top {top} by bytes)")
        for col in ("op", "count", "time s", "sent bytes", "send actions"):
            ops.add_column(col, justify="right" if col != "op" else "left")
        heaviest = sorted(self.ops(level).items(), key=lambda kv: (-kv[1].send_bytes, -kv[1].time_s))[:top]
        for op, s in heaviest:
            ops.add_row(op, f"{s.count:,}", f"{s.time_s:.3f}", f"{s.send_bytes:,}", f"{s.send_actions:,}")
        return Group(ranks, ops)
