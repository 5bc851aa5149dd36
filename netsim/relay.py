"""A user-space TCP relay per directed link: rate, one-way delay and jitter, with byte counters.

Needs neither root nor netem. Each accepted connection gets two pumps: the forward pump shapes
traffic as the link src->dst, the backward pump (the peer's RPC responses, TCP-level replies) as
the link dst->src. The reader of a pump paces itself at the link rate (so the sender feels
backpressure as on a real link); a writer releases each chunk at departure + delay (+ jitter),
never reordering within a connection. Payloads are never logged or kept beyond delivery.
"""

from __future__ import annotations

import collections
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

from netsim.profile import LinkShape, NetworkProfile
from netsim.timeline import Timeline
from netsim.sockets import close_quietly, stop_listening

CHUNK = 256 * 1024
# A pacing thread that waits for the GIL loses link time. CPython's default switch interval
# (5 ms) is longer than the pacer's bucket, so while relays run we ask for faster hand-offs.
RELAY_SWITCH_INTERVAL_S = 0.0005
_switch_lock = threading.Lock()
_active_relays = 0
_saved_interval: float | None = None


def _relay_started() -> None:
    global _active_relays, _saved_interval
    with _switch_lock:
        if _active_relays == 0:
            _saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved_interval, RELAY_SWITCH_INTERVAL_S))
        _active_relays += 1


def _relay_stopped() -> None:
    global _active_relays
    with _switch_lock:
        _active_relays -= 1
        if _active_relays == 0 and _saved_interval is not None:
            sys.setswitchinterval(_saved_interval)
_PACE_SLACK_S = 0.0005


# time.sleep overshoots by a few hundred microseconds on small VMs; the last stretch before a
# delivery is spent yielding instead, which keeps RTTs within a few tenths of a millisecond.
_SPIN_S = 0.0006
# The relay's own one-way latency when it shapes (wake-ups of its reader and writer threads), by
# how the writer waits: a delay shorter than _SPIN_S is spun out, a longer one slept first. Chosen
# on the project's 2-core VM from round trips through a shaped relay pair (medians of 300 pings,
# three runs each): at lan's 0.1 ms each way, 0.07 ms gave 0.22 ms and 0.1 ms gave 0.18 ms (set:
# 0.2); at 1 ms, 0.1 ms gave 1.98 ms and 0.18 ms 1.81 ms (set: 2). It is taken off each added
# delay so the link's total matches the profile; delays below it come out at the relay's floor.
HOP_LATENCY_SPIN_S = 0.000085
HOP_LATENCY_SLEEP_S = 0.0001
# What the relay cannot go below or above on that VM (`raympc bench netsim`): a round trip of
# 0.12 ms (unshaped), and a shaping relay moved 7.2 and 10.1 Gbit/s in two runs of the `lan`
# preset (10 Gbit/s) with both cores busy: the lower one is its ceiling. Profiles beyond either
# are flagged (`beyond_floor`), `lan` included.
RELAY_FLOOR_RTT_S = 0.00012
RELAY_MAX_RATE_BPS = 7e9


def busy_wait_s(delay_s: float) -> float:
    """How long the relay's writer yields in a loop before delivering a message with this added
    delay: CPU time the parties' computation loses on a machine with few cores (the analytic
    model's per-message overhead scales with it)."""
    return min(delay_s, _SPIN_S)


def hop_latency(delay_s: float) -> float:
    """The relay's own one-way latency for a link with this added delay (see above)."""
    return HOP_LATENCY_SPIN_S if delay_s <= _SPIN_S else HOP_LATENCY_SLEEP_S


def beyond_floor(shape: LinkShape) -> str | None:
    """Why the relay cannot give this link its profile on such a machine, or None."""
    reasons = []
    if 0 < 2 * shape.delay_s < RELAY_FLOOR_RTT_S:
        reasons.append(f"a round trip of {2 * shape.delay_s * 1e3:g} ms is below the relay's floor of "
                       f"{RELAY_FLOOR_RTT_S * 1e3:g} ms")
    if shape.rate_bps is not None and shape.rate_bps > RELAY_MAX_RATE_BPS:
        reasons.append(f"{shape.rate_bps / 1e9:g} Gbit/s is above the relay's {RELAY_MAX_RATE_BPS / 1e9:g} Gbit/s")
    return "; ".join(reasons) or None


def achievable(shape: LinkShape) -> LinkShape:
    """What the relay gives a link asked for `shape` on such a machine: no less one-way delay than
    half its floor round trip, no more rate than its ceiling."""
    rate = None if shape.rate_bps is None else min(shape.rate_bps, RELAY_MAX_RATE_BPS)
    delay = max(shape.delay_s, RELAY_FLOOR_RTT_S / 2) if shape.delay_s > 0 else shape.delay_s
    return shape.model_copy(update={"rate_bps": rate, "delay_s": delay})


def achievable_profile(profile: NetworkProfile) -> NetworkProfile:
    """`profile` as the relay can give it (`achievable` for every link); equal to it when it can."""
    return profile.model_copy(update={
        "name": f"{profile.name} (as the relay gives it)" if beyond_floor_profile(profile) else profile.name,
        "default": achievable(profile.default), "links": {k: achievable(v) for k, v in profile.links.items()}})


def beyond_floor_profile(profile: NetworkProfile) -> str | None:
    """Why the relay cannot give some link of `profile` its shape, or None."""
    reasons = sorted({why for shape in (profile.default, *profile.links.values()) if (why := beyond_floor(shape))})
    return "; ".join(reasons) or None


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > _SPIN_S:
        time.sleep(remaining - _SPIN_S)
    while time.monotonic() < deadline:
        time.sleep(0)


@dataclass
class LinkCounter:
    bytes: int = 0
    chunks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, n: int) -> None:
        with self.lock:
            self.bytes += n
            self.chunks += 1

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"bytes": self.bytes, "packets": self.chunks}


class Pacer:
    """Serialises a directed link at its rate: a token bucket, like the kernel's tbf/htb.

    The bucket (BURST_S of link time, at least BURST_MIN_BYTES) absorbs the relay's own
    scheduling jitter: a reader that wakes late may catch up instead of losing link time for
    good. It is kept small because MPC messages are small: a large bucket would let whole
    messages skip their serialisation delay, which a real link always imposes.
    """

    BURST_S = 0.002
    BURST_MIN_BYTES = 64 * 1024

    def __init__(self, rate_bps: float | None) -> None:
        self.rate_bps = rate_bps
        self._next_free = 0.0
        self._lock = threading.Lock()
        if rate_bps is not None:
            self._burst_s = max(self.BURST_S, self.BURST_MIN_BYTES * 8 / rate_bps)

    def departure(self, nbytes: int, now: float) -> float:
        if self.rate_bps is None:
            return now
        with self._lock:
            start = max(now - self._burst_s, self._next_free)
            self._next_free = start + nbytes * 8 / self.rate_bps
            return max(self._next_free, now)


class DirectedLink:
    """Shared state of one directed link across all its connections."""

    def __init__(self, src: int, dst: int, shape: LinkShape, trace: bool = False) -> None:
        self.src, self.dst, self.shape = src, dst, shape
        self.pacer = Pacer(shape.rate_bps)
        self.counter = LinkCounter()
        self.timeline = Timeline(self.key) if trace else None

    @property
    def key(self) -> str:
        return f"{self.src}->{self.dst}"


class _Pump:
    """Moves bytes one way on one connection, shaped as `link`."""

    def __init__(self, reader: socket.socket, writer: socket.socket, link: DirectedLink, on_done) -> None:
        self.reader, self.writer, self.link, self.on_done = reader, writer, link, on_done
        shape = link.shape
        self.shaped = shape.rate_bps is not None or shape.delay_s > 0 or shape.jitter_s > 0
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._eof = False
        self.threads = [threading.Thread(target=self._read, daemon=True, name=f"relay-{link.key}-read")]
        if self.shaped:
            self.threads.append(threading.Thread(target=self._write, daemon=True, name=f"relay-{link.key}-write"))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _read(self) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        last_delivery = 0.0
        try:
            while True:
                n = self.reader.recv_into(buf)
                if n == 0:
                    break
                now = time.monotonic()
                if not self.shaped:
                    self.writer.sendall(view[:n])
                    self.link.counter.add(n)
                    if self.link.timeline is not None:
                        self.link.timeline.add(now, time.monotonic(), n)
                    continue
                departure = self.link.pacer.departure(n, now)
                shape = self.link.shape
                delay = shape.delay_s + (random.uniform(-shape.jitter_s, shape.jitter_s) if shape.jitter_s else 0.0)
                last_delivery = max(last_delivery, departure + max(delay - hop_latency(delay), 0.0))
                with self._cond:
                    self._queue.append((last_delivery, bytes(view[:n]), now))
                    self._cond.notify()
                # Hold the sender back to the link rate, as a real bottleneck would.
                wait = departure - time.monotonic()
                if wait > _PACE_SLACK_S:
                    time.sleep(wait)
        except OSError:
            pass
        finally:
            if self.shaped:
                with self._cond:
                    self._eof = True
                    self._cond.notify()
            else:
                self._finish()

    def _write(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._eof:
                        self._cond.wait()
                    if not self._queue:
                        break
                    delivery, data, sent = self._queue.popleft()
                _sleep_until(delivery)
                self.writer.sendall(data)
                self.link.counter.add(len(data))
                if self.link.timeline is not None:
                    self.link.timeline.add(sent, time.monotonic(), len(data))
        except OSError:
            pass
        finally:
            self._finish()

    def _finish(self) -> None:
        try:
            self.writer.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.on_done()


class Relay:
    """Listens for the source party and forwards to the destination party's real address."""

    def __init__(self, forward: DirectedLink, backward: DirectedLink, upstream: tuple[str, int],
                 listen_host: str = "127.0.0.1", avoid_ports: frozenset[int] = frozenset()) -> None:
        self.forward, self.backward, self.upstream = forward, backward, upstream
        self._server = _listen_avoiding(listen_host, avoid_ports)
        self.address = self._server.getsockname()[:2]
        self._sockets: list[socket.socket] = []
        self._pumps: list[_Pump] = []
        self._lock = threading.Lock()
        self._closed = False
        self._cut = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"relay-{forward.key}-accept")
        _relay_started()
        self._thread.start()

    @property
    def port(self) -> int:
        return self.address[1]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._cut:  # a cut link refuses every reconnection attempt
                close_quietly(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                close_quietly(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair_done = _PairCloser(client, upstream)
            pumps = [_Pump(client, upstream, self.forward, pair_done), _Pump(upstream, client, self.backward, pair_done)]
            with self._lock:
                if self._closed:
                    close_quietly(client)
                    close_quietly(upstream)
                    return
                self._sockets += [client, upstream]
                self._pumps += pumps
            for p in pumps:
                p.start()

    def cut(self) -> None:
        """Fault injection: drop this link's connections now and refuse new ones (the relay stays up)."""
        with self._lock:
            self._cut = True
            sockets = list(self._sockets)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sockets, pumps = list(self._sockets), list(self._pumps)
        stop_listening(self._server)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            close_quietly(s)
        self._thread.join(timeout=2)
        for p in pumps:
            for t in p.threads:
                t.join(timeout=2)
        _relay_stopped()

    def threads_alive(self) -> int:
        with self._lock:
            pumps = list(self._pumps)
        return int(self._thread.is_alive()) + sum(t.is_alive() for p in pumps for t in p.threads)


def _listen_avoiding(host: str, avoid: frozenset[int], attempts: int = 32) -> socket.socket:
    """A listening socket on a kernel-chosen port that is not in `avoid`.

    Parties pick their link ports before they bind them; a relay made in between could be handed
    one of those ports by the kernel, and the party's bind would then fail."""
    held = []
    try:
        for _ in range(attempts):
            server = socket.create_server((host, 0), backlog=16)
            if server.getsockname()[1] not in avoid:
                return server
            held.append(server)  # keep it bound so the next attempt gets another port
        raise OSError(f"no free port outside {sorted(avoid)} after {attempts} attempts")
    finally:
        for sock in held:
            sock.close()


class _PairCloser:
    """Closes both sockets of a connection once both directions have finished."""

    def __init__(self, a: socket.socket, b: socket.socket) -> None:
        self._a, self._b = a, b
        self._left = 2
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            close_quietly(self._a)
            close_quietly(self._b)
