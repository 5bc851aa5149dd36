"""Capture TCP payloads on loopback (root): what actually crossed the wire, for leak and TLS audits.

An AF_PACKET socket on `lo` sees every loopback frame once per direction it is sent. Frames are
parsed just far enough (Ethernet, IPv4, TCP) to keep the payload and the ports. Payloads are held
in memory only and never logged.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from collections import defaultdict

ETH_P_ALL = 0x0003
_ETH_HEADER = 14


class CaptureError(RuntimeError):
    pass


class LoopbackCapture:
    """`with LoopbackCapture(ports) as cap: ...` then `cap.payload(port)` / `cap.contains(needle)`.

    `ports`: keep only segments whose source or destination port is one of these (None: all TCP).
    """

    def __init__(self, ports: set[int] | None = None, interface: str = "lo") -> None:
        if os.geteuid() != 0:
            raise CaptureError("capturing packets needs root (an AF_PACKET socket)")
        self.ports = set(ports) if ports is not None else None
        self.interface = interface
        self._streams: dict[tuple[int, int], bytearray] = defaultdict(bytearray)
        self._seen: set[tuple[int, int, int]] = set()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.frames = 0

    def __enter__(self) -> "LoopbackCapture":
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self._sock.bind((self.interface, 0))
        self._thread = threading.Thread(target=self._run, daemon=True, name="loopback-capture")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                continue
            try:
                frame, addr = self._sock.recvfrom(1 << 17)
            except OSError:
                return
            if addr[2] == socket.PACKET_OUTGOING:  # loopback frames show up twice; keep the incoming copy
                continue
            self._parse(frame)

    def _parse(self, frame: bytes) -> None:
        if len(frame) < _ETH_HEADER + 20 or frame[12:14] != b"\x08\x00":  # IPv4 only (parties use 127.0.0.1)
            return
        ip = frame[_ETH_HEADER:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 6:  # TCP
            return
        total = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:total]
        if len(tcp) < 20:
            return
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        if self.ports is not None and sport not in self.ports and dport not in self.ports:
            return
        payload = tcp[(tcp[12] >> 4) * 4:]
        if not payload or (sport, dport, seq) in self._seen:  # drop retransmissions
            return
        self._seen.add((sport, dport, seq))
        self.frames += 1
        self._streams[(sport, dport)] += payload

    # -- queries ------------------------------------------------------------------------------
    def streams(self) -> dict[tuple[int, int], bytes]:
        """(source port, destination port) -> payload bytes in arrival order."""
        return {k: bytes(v) for k, v in self._streams.items()}

    def total_bytes(self) -> int:
        return sum(len(v) for v in self._streams.values())

    def contains(self, needle: bytes) -> bool:
        return any(needle in v for v in self._streams.values())
