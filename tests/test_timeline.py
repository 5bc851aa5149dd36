"""The per-link message timeline: the relay records every message's size and times (never its
bytes) on real loopback TCP, exports it as Trace Event JSON and reads it back; a traced session
accounts for its wire bytes; `raympc sample --trace` and `raympc sweep --trace` write the files
and the report links them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from netsim import NetworkProfile, PartyLink, ShapingError, chrome_trace, from_chrome_trace, shape
from netsim.measure import LoopbackServer, rtt_samples
from netsim.timeline import Message
from raympc.errors import ConfigError
from raympc.runtime.session import Session
from raympc.runtime.values import Secret

ROOT = Path(__file__).resolve().parents[1]
MARKER = b"raympc-secret-payload-"


def _links(a, b):
    return [PartyLink(0, 1, b.address), PartyLink(1, 0, a.address)]


def _dial(shaping, src, dst):
    host, port = shaping.address(src, dst).rsplit(":", 1)
    return host, int(port)


def test_the_relay_times_every_message_and_keeps_no_payload():
    delay = 0.02
    with LoopbackServer() as a, LoopbackServer() as b, \
            shape(NetworkProfile.symmetric(rate="1gbit", delay=delay), _links(a, b), "relay", trace=True) as s:
        rtt_samples(_dial(s, 0, 1), pings=5)
        with socket.create_connection(_dial(s, 0, 1)) as sock:  # 'T' + length + payload: the server answers 'K'
            payload = MARKER * 1000
            sock.sendall(b"T" + len(payload).to_bytes(8, "big") + payload)
            assert sock.recv(1) == b"K"
        messages = s.messages()
        counters = s.counters()
    forward = [m for m in messages if m.link == "0->1"]
    assert sum(m.nbytes for m in forward) == counters["0->1"]["bytes"]  # every byte is in some message
    assert all(m.delivered - m.sent >= delay - 0.002 for m in messages)  # each one crossed the delay line
    assert {"1->0"} <= {m.link for m in messages}
    trace = chrome_trace(messages)
    text = json.dumps(trace)
    assert MARKER.decode() not in text and set(vars(messages[0])) == {"link", "sent", "delivered", "nbytes"}
    back, _ = from_chrome_trace(trace)
    assert sorted(m.nbytes for m in back) == sorted(m.nbytes for m in messages)
    tracks = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert tracks == {"runs", "link 0->1", "link 1->0"}
    in_flight = [e["args"]["bytes"] for e in trace["traceEvents"] if e["ph"] == "C"]
    assert min(in_flight) == 0 and in_flight[-1] == 0  # what goes in comes out


def test_a_shaping_without_trace_says_so():
    with LoopbackServer() as a, LoopbackServer() as b, shape(NetworkProfile.symmetric(delay=0.001), _links(a, b),
                                                             "relay") as s:
        with pytest.raises(ShapingError, match="trace=True"):
            s.messages()
    with LoopbackServer() as a, LoopbackServer() as b, pytest.raises(ShapingError, match="relays nothing"):
        shape(NetworkProfile.symmetric(), _links(a, b), "none", trace=True)


def test_counter_of_bytes_in_flight_follows_overlapping_messages():
    messages = [Message("0->1", 0.0, 1.0, 10), Message("0->1", 0.5, 2.0, 5), Message("1->0", 0.2, 0.3, 7)]
    trace = chrome_trace(messages, marks=[("run 0: f", 0.0, 2.0)])
    counter = [(e["ts"], e["args"]["bytes"]) for e in trace["traceEvents"]
               if e["ph"] == "C" and e["name"].endswith("0->1")]
    assert counter == [(0.0, 10), (500000.0, 15), (1000000.0, 5), (2000000.0, 0)]
    assert from_chrome_trace(trace)[1] == [("run 0: f", 0.0, 2.0)]


def test_a_traced_session_accounts_for_its_wire_bytes():
    x = np.random.default_rng(0).standard_normal((32, 32)).astype(np.float32)
    with Session(trace=True) as session:  # unshaped: the relay only forwards, and watches
        run = session.run(lambda a, b: a @ b, x, Secret(x, owner="model"))
        messages = session.messages(-1)
        wire = run.metrics.extra["links"]["wire_bytes"]
    assert len({m.link for m in messages}) == 6
    assert abs(sum(m.nbytes for m in messages) - wire) <= 0.01 * wire
    with pytest.raises(ConfigError, match="trace"):
        Session(trace=True, shaping="none")


def test_sample_and_sweep_write_timelines_and_the_report_links_them(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "raympc.cli", "sample", "--workload", "tiny-mnist", "--steps", "1",
                           "--batch", "1", "--no-breakdown", "--trace", "--out", str(tmp_path / "sample")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((tmp_path / "sample" / "tiny-mnist-raympc.json").read_text())
    messages, marks = from_chrome_trace(json.loads((tmp_path / "sample" / run["trace"]).read_text()))
    assert marks and sum(m.nbytes for m in messages) >= run["total"]["send_bytes"]  # SPU's payload, plus framing
    assert (tmp_path / "sample" / run["timeline"]).stat().st_size > 0

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "traced", "base": {"workload": "tiny-mnist", "steps": 1, "batch": 1,
                                                               "breakdown": False}}))
    out = tmp_path / "sweep"
    for cmd in (["sweep", str(spec), "--out", str(out), "--trace"], ["report", str(out)]):
        proc = subprocess.run([sys.executable, "-m", "raympc.cli", *cmd], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert row["status"] == "ok" and "trace_events" not in row and (out / row["trace"]).exists()
    report = (out / "report.md").read_text()
    assert f"]({row['trace']})" in report and f"figures/timeline-{row['point_id'][:8]}.png" in report
