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
