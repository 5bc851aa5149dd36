"""What this machine can shape, found out in a private network namespace (never on a real link)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Capabilities:
    root: bool
    pyroute2: bool
    netns: bool
    htb: bool
    netem: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=1)
def probe() -> Capabilities:
    """What this machine supports; cached per process.

    The probe runs in a fresh interpreter: pyroute2 forks to enter a namespace, and forking a
    process that already runs JAX, Ray or brpc threads can deadlock.
    """
    proc = subprocess.run([sys.executable, "-m", "netsim.probe"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return Capabilities(os.geteuid() == 0, False, False, False, False,
                            f"probe failed: {proc.stderr.strip()[-300:]}")
    return Capabilities(**json.loads(proc.stdout.strip().splitlines()[-1]))


def probe_here() -> Capabilities:
    """Try htb and netem on the loopback of a throwaway namespace, in this process."""
    root = os.geteuid() == 0
    try:  # deferred into the probe: a missing or broken pyroute2 is a capability it reports, not a crash
        from pyroute2 import NetNS, netns
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError as exc:
        return Capabilities(root, False, False, False, False, f"pyroute2 missing: {exc}")
    if not root:
        return Capabilities(False, True, False, False, False, "not root: kernel shaping needs CAP_NET_ADMIN")
    name = f"raympc-probe-{os.getpid()}"
    htb = netem = False
    notes = []
    try:
        netns.create(name)
    except Exception as exc:  # noqa: BLE001 - any failure means: no namespaces here
        return Capabilities(root, True, False, False, False, f"cannot create a network namespace: {exc}")
    try:
        with NetNS(name) as ns:
            idx = ns.link_lookup(ifname="lo")[0]
            ns.link("set", index=idx, state="up")
            try:
                ns.tc("add", "htb", idx, "1:", default=0)
                ns.tc("add-class", "htb", idx, "1:1", parent="1:", rate="100mbit", ceil="100mbit",
                      burst=262144, cburst=262144)
                htb = True
                try:
                    ns.tc("add", "netem", idx, parent="1:1", handle="2:", delay=1000)
                    netem = True
                except NetlinkError as exc:
                    notes.append(f"netem unavailable ({exc}); kernel delay cannot be added")
            except NetlinkError as exc:
                notes.append(f"htb unavailable ({exc})")
    finally:
        netns.remove(name)
    return Capabilities(root, True, True, htb, netem, "; ".join(notes) or "htb and netem available")


if __name__ == "__main__":
    print(json.dumps(probe_here().to_dict()))
