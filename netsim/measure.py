"""Measure what a (shaped) path really does: throughput and round-trip time, on loopback only."""

from __future__ import annotations

import multiprocessing as mp
import socket
import statistics
import struct
import threading
import time

from pyroute2 import netns as pyroute2_netns

from netsim.sockets import stop_listening


class LoopbackServer:
    """A loopback server: 'T'+length -> read that many bytes, answer 'K'; 'P' -> echo 1-byte pings."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = socket.create_server((host, port), backlog=8)
        self.address = self._server.getsockname()[:2]
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(conn)
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    @staticmethod
    def _handle(conn: socket.socket) -> None:
        buf = bytearray(1 << 20)
        try:
            while True:
                cmd = conn.recv(1)
                if not cmd:
                    return
                if cmd == b"T":
                    (left,) = struct.unpack("!Q", _recv_exact(conn, 8))
                    first = last = None
                    counted = 0
                    while left:
                        n = conn.recv_into(buf, min(left, len(buf)))
                        if n == 0:
                            return
                        last = time.perf_counter()
                        if first is None:
                            first = last
                        else:
                            counted += n
                        left -= n
                    # Bytes after the first chunk over the time they took: the path's rate, free of
                    # the one-way delay and connection start-up.
                    conn.sendall(b"K" + struct.pack("!dQ", (last or 0) - (first or 0), counted))
                elif cmd == b"P":
                    conn.sendall(b"P")
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        stop_listening(self._server)
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in [self._accept, *self._threads]:
            t.join(timeout=2)

    def __enter__(self) -> "LoopbackServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def _connect(address: tuple[str, int], timeout: float) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def measure_throughput(address: tuple[str, int], nbytes: int, timeout: float = 120.0) -> float:
    """Send `nbytes` through `address`; bit/s as the receiver saw them arrive (steady-state rate)."""
    payload = memoryview(bytearray(1 << 20))
    with _connect(address, timeout) as sock:
        start = time.perf_counter()
        sock.sendall(b"T" + struct.pack("!Q", nbytes))
        left = nbytes
        while left:
            n = min(left, len(payload))
            sock.sendall(payload[:n])
            left -= n
        if _recv_exact(sock, 1) != b"K":
            raise ConnectionError("bad answer from test server")
        duration, counted = struct.unpack("!dQ", _recv_exact(sock, 16))
        if duration <= 0:
            return nbytes * 8 / (time.perf_counter() - start)
        return counted * 8 / duration


def rtt_samples(address: tuple[str, int], pings: int = 20, timeout: float = 30.0) -> list[float]:
    """Round-trip times of `pings` 1-byte pings through `address`, in seconds, in the order sent."""
    with _connect(address, timeout) as sock:
        sock.sendall(b"P")
        _recv_exact(sock, 1)  # connection set-up and first-packet effects out of the sample
        samples = []
        for _ in range(pings):
            start = time.perf_counter()
            sock.sendall(b"P")
            _recv_exact(sock, 1)
            samples.append(time.perf_counter() - start)
        return samples


def measure_rtt(address: tuple[str, int], pings: int = 20, timeout: float = 30.0) -> float:
    """Median round-trip time of 1-byte pings through `address`, in seconds."""
    return statistics.median(rtt_samples(address, pings, timeout))


def _in_netns(netns: str, fn, args: tuple, out) -> None:
    pyroute2_netns.setns(netns)
    try:
        out.put(("ok", fn(*args)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.put(("error", repr(exc)))


def run_in_netns(netns: str, fn, *args, timeout: float = 120.0):
    """Call `fn(*args)` in a fresh process inside network namespace `netns`; return its result."""

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_in_netns, args=(netns, fn, args, out))
    proc.start()
    try:
        status, value = out.get(timeout=timeout)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    if status != "ok":
        raise RuntimeError(f"in netns {netns}: {value}")
    return value


def serve_in_netns(netns: str, host: str, port: int):
    """A LoopbackServer (bound to host:port) in a process inside `netns`; kill the process to stop."""

    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(netns, host, port, ready), daemon=True)
    proc.start()
    if ready.get(timeout=30) != "ready":
        raise RuntimeError("test server did not start")
    return proc


def _serve(netns: str, host: str, port: int, ready) -> None:
    pyroute2_netns.setns(netns)
    server = LoopbackServer(host, port)
    ready.put("ready")
    server._accept.join()
