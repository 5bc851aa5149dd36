"""What listens where during a session: every socket the embedded Ray, the parties' SPU links and
the network relay listen on is a loopback one (docs/security.md says so; nothing is exempt)."""

from __future__ import annotations

import ipaddress
import os

import psutil
import ray

from raympc.runtime.session import Session

# Sockets allowed off loopback, with the reason each one cannot move; the docs list the same.
DOCUMENTED_EXCEPTIONS: dict[str, str] = {}


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _listening() -> list[tuple[str, str, int]]:
    """(process name, ip, port) of every inet socket this process and its descendants listen on
    (TCP) or are bound to (UDP)."""
    me = psutil.Process(os.getpid())
    ours = {p.pid: p for p in [me, *me.children(recursive=True)]}
    found = []
    for c in psutil.net_connections(kind="inet"):
        if c.pid in ours and c.laddr and (c.status == psutil.CONN_LISTEN or c.type == 2):  # 2: SOCK_DGRAM
            try:
                name = ours[c.pid].name()
            except psutil.Error:
                name = str(c.pid)
            found.append((name, c.laddr.ip, c.laddr.port))
    return found


def test_a_shaped_session_listens_on_loopback_only():
    with Session(network="wan") as session:
        assert abs(float(session.run(lambda x: x * 2, 3.0).outputs) - 6.0) < 1e-3
        listening = _listening()
        node = ray.nodes()[0]["NodeManagerAddress"]
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names and any("Party" in n for n in names), listening  # the probe sees them
    exposed = [x for x in listening if not _loopback(x[1]) and x[0] not in DOCUMENTED_EXCEPTIONS]
    assert exposed == [], exposed
    assert node == "127.0.0.1"  # what `raympc info` reports for the embedded node
