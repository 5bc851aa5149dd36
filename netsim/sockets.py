"""Socket helpers shared by the relay and the measuring server."""

from __future__ import annotations

import socket


def close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def stop_listening(server: socket.socket) -> None:
    """Close a listening socket so that a thread blocked in accept() returns at once
    (close() alone leaves it blocked on Linux)."""
    try:
        server.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    close_quietly(server)


def split_host_port(address: str) -> tuple[str, int]:
    """"host:port" -> (host, port); the port is what follows the last colon.

    Raises:
        ValueError: no colon, an empty host, or a port that is not a number in 0-65535.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host, int(port)
