"""`raympc netsim probe|set|show|reset`: the shaping verbs, usable without Ray or SPU."""

from __future__ import annotations

import signal
import threading
import time

from rich.console import Console
from rich.table import Table

from netsim import state, tc
from netsim.backends import PartyLink, choose_backend, reset, shape
from netsim.probe import probe
from netsim.profile import PRESETS, ProfileError, resolve
from netsim.sockets import split_host_port


def cmd_probe(console: Console) -> dict:
    caps = probe()
    t = Table(title="network shaping on this machine")
    t.add_column("capability")
    t.add_column("available")
    for k, v in caps.to_dict().items():
        if k != "detail":
            t.add_row(k, "yes" if v else "no")
    console.print(t)
    console.print(caps.detail)
    choice = Table(title="backend 'auto' would use")
    for col in ("profile", "shape", "backend", "why"):
        choice.add_column(col)
    for name, prof in PRESETS.items():
        backend, why = choose_backend(prof, caps)
        choice.add_row(name, prof.default.describe(), backend, why)
    console.print(choice)
    return {"capabilities": caps.to_dict(), "auto": {n: choose_backend(p, caps)[0] for n, p in PRESETS.items()}}


def cmd_set(profile: str, parties: list[str], backend: str, console: Console, duration: float | None = None) -> dict:
    """Shape the links between parties listening at `parties` (host:port) until interrupted."""
    prof = resolve(profile)
    try:
        addrs = [split_host_port(a) for a in parties]
    except ValueError as exc:
        raise ProfileError(f"--parties: {exc}") from None
    links = [PartyLink(s, d, addrs[d]) for s in range(len(addrs)) for d in range(len(addrs)) if s != d]
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with shape(prof, links, backend) as shaping:
            t = Table(title=f"{prof.describe()} via {shaping.backend}: party src dials")
            for col in ("link", "dial", "applied"):
                t.add_column(col)
            for link in links:
                t.add_row(link.key, shaping.address(link.src, link.dst), str(shaping.applied.get(link.key, "")))
            console.print(t)
            console.print("shaping active; Ctrl-C (or SIGTERM) removes it")
            stop.wait(timeout=duration)
            counters = shaping.counters()
            console.print(_counter_table(counters))
            return {"backend": shaping.backend, "counters": counters}
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _counter_table(counters: dict) -> Table:
    t = Table(title="per-link counters")
    for col in ("link", "bytes", "packets"):
        t.add_column(col, justify="right")
    for key, c in sorted(counters.items()):
        t.add_row(key, f"{c['bytes']:,}", f"{c['packets']:,}")
    return t


def cmd_show(console: Console) -> dict:
    recs = state.records()
    t = Table(title=f"raympc shapings recorded in {state.STATE_DIR}")
    for col in ("id", "pid", "owner", "backend", "kernel", "relay ports", "age s"):
        t.add_column(col)
    for r in recs:
        t.add_row(r.id, str(r.pid), "alive" if r.owner_alive else "DEAD (run reset)", r.backend, r.interface or "-",
                  ",".join(map(str, r.ports)), f"{time.time() - r.created:.0f}")
    console.print(t)
    counters = {}
    if any(r.interface == "lo" for r in recs):
        counters = tc.class_counters()
        console.print(_counter_table({f"class 1:{k:x}": v for k, v in counters.items()}))
    if not recs:
        console.print("no active shaping")
    return {"records": [r.__dict__ for r in recs], "tc_classes": counters}


def cmd_reset(include_live: bool, console: Console) -> list[str]:
    undone = reset(include_live=include_live)
    for line in undone:
        console.print(f"undone: {line}")
    if not undone:
        console.print("nothing to reset")
    return undone
