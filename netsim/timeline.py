"""A per-link message timeline: what the relay saw on every directed link, as sizes and times.

Every relayed link can keep a `Timeline`: one `Message` per chunk the relay took from the sender
(the time it arrived, the time it was handed to the receiver, its size). Never the payload: a
timeline holds no byte of what was sent. `chrome_trace` turns messages into the Trace Event JSON
that Perfetto (ui.perfetto.dev) and chrome://tracing open: one track per directed link, one slice
per message from send to delivery, and a counter per link of the bytes in flight. A step whose
slices are many, small and one after another is latency-bound; long slices back to back on a
link are bandwidth-bound; gaps on every link are compute.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

DEFAULT_LIMIT = 2_000_000  # messages kept per link (about 100 MB); later ones are counted, not kept


@dataclass(frozen=True)
class Message:
    """One message on a directed link (times are `time.monotonic()` seconds)."""

    link: str  # "src->dst"
    sent: float  # the relay took it from the sender
    delivered: float  # the relay handed it to the receiver
    nbytes: int


class Timeline:
    """The messages of one directed link, appended by the relay's threads."""

    def __init__(self, link: str, limit: int = DEFAULT_LIMIT) -> None:
        self.link, self.limit = link, limit
        self.dropped = 0
        self._messages: list[Message] = []
        self._lock = threading.Lock()

    def add(self, sent: float, delivered: float, nbytes: int) -> None:
        with self._lock:
            if len(self._messages) < self.limit:
                self._messages.append(Message(self.link, sent, delivered, nbytes))
            else:
                self.dropped += 1

    def messages(self, start: float | None = None, end: float | None = None) -> list[Message]:
        """The messages sent in [start, end] (all by default)."""
        with self._lock:
            found = list(self._messages)
        return [m for m in found if (start is None or m.sent >= start) and (end is None or m.sent <= end)]


def chrome_trace(messages: Iterable[Message], origin: float | None = None,
                 marks: Iterable[tuple[str, float, float]] = (), title: str = "raympc links") -> dict[str, Any]:
    """Trace Event JSON of `messages`, times in microseconds from `origin` (default: the first send).

    Args:
        messages: from one or more links.
        origin: the time shown as zero.
        marks: (name, start, end) spans drawn on a track of their own (a secure run, a step).
        title: the process name the viewer shows.
    """
    messages = sorted(messages, key=lambda m: m.sent)
    marks = list(marks)
    if origin is None:
        origin = min([m.sent for m in messages] + [s for _, s, _ in marks], default=0.0)
    links = sorted({m.link for m in messages}, key=_link_order)
    tids = {link: i + 1 for i, link in enumerate(links)}

    def us(t: float) -> float:
        return round((t - origin) * 1e6, 3)

    events: list[dict[str, Any]] = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": title}},
                                    {"ph": "M", "pid": 1, "tid": 0, "name": "thread_name", "args": {"name": "runs"}}]
    events += [{"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": f"link {link}"}}
               for link, tid in tids.items()]
    events += [{"ph": "X", "pid": 1, "tid": 0, "name": name, "ts": us(s), "dur": max(us(e) - us(s), 0.0)}
               for name, s, e in marks]
    changes: list[tuple[float, str, int]] = []
    for m in messages:
        events.append({"ph": "X", "pid": 1, "tid": tids[m.link], "name": f"{m.nbytes} B", "ts": us(m.sent),
                       "dur": max(us(m.delivered) - us(m.sent), 0.0), "args": {"bytes": m.nbytes}})
        changes += [(m.sent, m.link, m.nbytes), (m.delivered, m.link, -m.nbytes)]
    in_flight = dict.fromkeys(links, 0)
    for t, link, delta in sorted(changes, key=lambda c: (c[0], c[2])):
        in_flight[link] += delta
        events.append({"ph": "C", "pid": 1, "name": f"bytes in flight {link}", "ts": us(t),
                       "args": {"bytes": in_flight[link]}})
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_chrome_trace(path: Path, messages: Iterable[Message], origin: float | None = None,
                       marks: Iterable[tuple[str, float, float]] = ()) -> Path:
    """`chrome_trace` written to `path` (open it in ui.perfetto.dev or chrome://tracing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(chrome_trace(messages, origin, marks)))
    tmp.replace(path)  # netsim imports without raympc: its own atomic write
    return path


def from_chrome_trace(trace: dict[str, Any]) -> tuple[list[Message], list[tuple[str, float, float]]]:
    """The messages and marks back from `chrome_trace`'s JSON (times in seconds from its origin)."""
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e.get("ph") == "M" and "tid" in e}
    messages, marks = [], []
    for e in trace["traceEvents"]:
        if e.get("ph") != "X":
            continue
        start, end = e["ts"] / 1e6, (e["ts"] + e["dur"]) / 1e6
        if e["tid"] == 0:
            marks.append((e["name"], start, end))
        else:
            messages.append(Message(names[e["tid"]].removeprefix("link "), start, end, e["args"]["bytes"]))
    return messages, marks


def _link_order(link: str) -> tuple[int, ...]:
    return tuple(int(p) for p in link.split("->"))
