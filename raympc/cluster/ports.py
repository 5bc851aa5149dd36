"""Choosing ports that are bound later, by another program (brpc, `ray start`)."""

from __future__ import annotations

import random
import socket

# Ray's default worker ports are 10002-19999 (and it refuses a GCS port inside them): start above.
LOWEST_CHOSEN_PORT = 20000


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str) -> int:
    """A free port *below* the kernel's ephemeral range.

    The port is only bound later by someone else; a port from the ephemeral range could meanwhile
    be handed by the kernel to any outgoing connection (Ray's, brpc's, a relay's) or to a listener
    asking for port 0, and the later bind would fail. Below the range (and above Ray's worker ports)
    nobody gets it by accident."""
    lo, _ = ephemeral_range()
    if lo - LOWEST_CHOSEN_PORT >= 1000:
        rng = random.Random()
        for _ in range(200):
            port = rng.randrange(LOWEST_CHOSEN_PORT, lo)
            if port_is_free(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
