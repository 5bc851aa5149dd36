"""Shaping backends (a registry) and the `Shaping` they return.

Every shaped backend gives each directed party link a port of its own: a relay per link that
the source party dials instead of the destination. What differs is who shapes:
  relay     the relay: rate, delay, jitter (user space; no root, no netem)
  tc        the kernel: htb rate, netem delay/jitter/loss (needs root, and netem for delay)
  tc+relay  the kernel rate (htb), the relay's delay and jitter (for kernels without netem)
  none      nothing: parties dial each other directly, no counters
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from netsim import loss, state, tc
from netsim.probe import Capabilities, probe
from netsim.profile import LinkShape, NetworkProfile
from netsim.relay import DirectedLink, Relay, beyond_floor
from netsim.timeline import Message

# A library attaches no handler: the `raympc` command line shows these on stderr, and Python's
# last-resort handler shows warnings to everybody else.
log = logging.getLogger("netsim")


class ShapingError(RuntimeError):
    """Shaping cannot be applied as asked (unsupported, refused, or conflicting)."""


@dataclass(frozen=True)
class PartyLink:
    """Directed link src -> dst; `upstream` is where dst really listens."""

    src: int
    dst: int
    upstream: tuple[str, int]

    @property
    def key(self) -> str:
        return f"{self.src}->{self.dst}"


class Shaping:
    """Shaping applied to a set of party links; undo with `close()` (also a context manager)."""

    def __init__(self, backend: str, profile: NetworkProfile, links: list[PartyLink], trace: bool = False) -> None:
        self.backend, self.profile, self.links, self.trace = backend, profile, links, trace
        self.id = uuid.uuid4().hex[:12]
        self.notes: list[str] = []
        self.applied: dict[str, dict] = {}
        self._relays: dict[str, Relay] = {}
        self._dlinks: dict[str, DirectedLink] = {}
        self._tc_classes: dict[int, str] = {}
        self._record: state.ShapingRecord | None = None
        self._loss: loss.LossRules | None = None
        self._closed = False

    # -- what callers use ---------------------------------------------------------------------
    def address(self, src: int, dst: int) -> str:
        """host:port that party `src` dials to reach party `dst`."""
        key = f"{src}->{dst}"
        if key in self._relays:
            host, port = self._relays[key].address
            return f"{host}:{port}"
        link = next(l for l in self.links if l.key == key)
        return f"{link.upstream[0]}:{link.upstream[1]}"

    def cut(self, src: int, dst: int) -> None:
        """Fault injection: drop the connection party `src` uses to reach `dst`, and refuse reconnects.

        Only relayed links can be cut (the relay owns their sockets)."""
        relay = self._relays.get(f"{src}->{dst}")
        if relay is None:
            raise ShapingError(f"link {src}->{dst} is not relayed (backend {self.backend!r}); "
                               "cutting links needs shaping='relay' or 'tc+relay'")
        relay.cut()

    def counters(self) -> dict[str, dict[str, int]]:
        """Bytes and packets (relay: chunks) carried by each directed link so far."""
        if self._tc_classes:
            by_class = tc.class_counters()
            return {key: by_class.get(cid, {"bytes": 0, "packets": 0}) for cid, key in self._tc_classes.items()}
        return {key: d.counter.snapshot() for key, d in self._dlinks.items()}

    def messages(self, start: float | None = None, end: float | None = None) -> list[Message]:
        """Every message sent on the links in [start, end] (`time.monotonic()`), with `trace`.

        Raises:
            ShapingError: the shaping was made without `trace=True`.
        """
        if not self.trace:
            raise ShapingError("this shaping keeps no message timeline: shape(..., trace=True)")
        return sorted((m for d in self._dlinks.values() if d.timeline is not None for m in d.timeline.messages(start, end)),
                      key=lambda m: m.sent)

    def loss_counters(self) -> dict[str, dict[str, int]]:
        """Per lossy link: packets its nftables rules saw and dropped (empty without such rules)."""
        return self._loss.counters() if self._loss is not None else {}

    def metadata(self) -> dict:
        return {"profile": self.profile.name, "profile_detail": self.profile.describe(),
                "backend": self.backend, "applied": self.applied, "notes": list(self.notes),
                "counter_source": "tc class stats" if self._tc_classes else ("relay" if self._dlinks else None)}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for relay in self._relays.values():
            relay.close()
        if self._loss is not None:
            self._loss.remove()
        if self._tc_classes:
            with _state_lock():
                tc.remove_root()
        if self._record is not None:
            self._record.delete()

    def __enter__(self) -> "Shaping":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def threads_alive(self) -> int:
        return sum(r.threads_alive() for r in self._relays.values())

    # -- building -----------------------------------------------------------------------------
    def _start_relays(self, relay_shape: Callable[[LinkShape], LinkShape]) -> None:
        for link in self.links:
            self._dlinks[link.key] = DirectedLink(link.src, link.dst, relay_shape(self.profile.link(link.src, link.dst)),
                                                  trace=self.trace)
        for link in self.links:
            back = self._dlinks[f"{link.dst}->{link.src}"]
            self._relays[link.key] = Relay(self._dlinks[link.key], back, link.upstream,
                                           avoid_ports=frozenset(l.upstream[1] for l in self.links))

    def _record_state(self, interface: str | None) -> None:
        self._record = state.ShapingRecord(id=self.id, pid=os.getpid(), backend=self.backend, interface=interface,
                                           ports=[r.port for r in self._relays.values()])
        self._record.save()


@contextmanager
def _state_lock() -> Iterator[None]:
    state.STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(state.STATE_DIR / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _check_lo_free() -> None:
    """Refuse to touch lo if anything but the kernel default sits at its root."""
    with tc._ipr() as ipr:
        kind, handle = tc.root_qdisc(ipr, tc.lo_index(ipr))
    if kind in ("noqueue", "pfifo_fast") and handle == 0:
        return
    owners = [r for r in state.records() if r.interface == "lo"]
    live = [r for r in owners if r.owner_alive]
    if live:
        raise ShapingError(f"lo is already shaped by raympc shaping {live[0].id} (pid {live[0].pid}); "
                           "only one kernel shaping of lo at a time")
    if owners:
        raise ShapingError(f"lo still carries the qdisc of a killed raympc run ({owners[0].id}); "
                           "run `raympc netsim reset` first")
    raise ShapingError(f"lo has a root qdisc raympc did not create ({kind} {handle:#x}); refusing to touch it")


def _apply_loss(shaping: Shaping) -> None:
    """Drop each lossy link's share of its packets in the kernel (nftables, `netsim.loss`): a relay
    over TCP can only delay, never drop. The table is recorded before it is made, so `reset`
    finds it after a SIGKILL."""
    shapes = {link.key: shaping.profile.link(link.src, link.dst) for link in shaping.links}
    rules = [loss.LossRule(key, shaping._relays[key].port, s.loss) for key, s in shapes.items() if s.loss > 0]
    if not rules:
        return
    table = f"{loss.TABLE_PREFIX}{shaping.id}"
    shaping._record.nft_table = table
    shaping._record.save()
    try:
        shaping._loss = loss.LossRules(table, rules).apply()
    except loss.LossError as exc:
        raise ShapingError(str(exc)) from exc
    for rule in rules:
        shaping.applied.setdefault(rule.link, {})["loss"] = f"{rule.rate:.2%} (nftables drop rule on port {rule.port})"


def _no_relay_shape(shape: LinkShape) -> LinkShape:
    return LinkShape()


def _relay_delay_only(shape: LinkShape) -> LinkShape:
    return LinkShape(delay_s=shape.delay_s, jitter_s=shape.jitter_s)


def build_none(profile: NetworkProfile, links: list[PartyLink], caps: Capabilities, trace: bool = False) -> Shaping:
    if trace:
        raise ShapingError("backend 'none' relays nothing, so it sees no message: trace with 'relay' (it shapes "
                           "nothing on an unshaped profile)")
    shaping = Shaping("none", profile, links)
    if profile.shaped:
        shaping.notes.append(f"profile {profile.name!r} asked for shaping, but backend 'none' applies nothing")
    return shaping


def build_relay(profile: NetworkProfile, links: list[PartyLink], caps: Capabilities, trace: bool = False) -> Shaping:
    shaping = Shaping("relay", profile, links, trace)
    shaping._start_relays(lambda s: s)
    shaping._record_state(None)
    shaping.applied = {k: {"relay": d.shape.describe()} for k, d in shaping._dlinks.items()}
    try:
        _apply_loss(shaping)
    except BaseException:
        shaping.close()
        raise
    _flag_beyond_floor(shaping)
    return shaping


def _flag_beyond_floor(shaping: Shaping) -> None:
    """Say loudly (a note, and `beyond_floor` in what was applied) where a link asks for less delay
    or more rate than the relay can give: its times are then slower than the profile's."""
    for key, d in shaping._dlinks.items():
        why = beyond_floor(d.shape)
        if why:
            shaping.applied[key]["beyond_floor"] = why
    flagged = sorted({a["beyond_floor"] for a in shaping.applied.values() if "beyond_floor" in a})
    if flagged:
        shaping.notes.append(f"profile {shaping.profile.name!r} is beyond what the relay can do ({'; '.join(flagged)}): "
                             "measured times are upper bounds, slower than this network would be")


def _build_kernel(profile: NetworkProfile, links: list[PartyLink], caps: Capabilities, relay_delay: bool,
                  trace: bool = False) -> Shaping:
    name = "tc+relay" if relay_delay else "tc"
    if not caps.htb:
        raise ShapingError(f"backend {name!r} needs kernel htb: {caps.detail}")
    wants_delay = any(profile.link(l.src, l.dst).delay_s or profile.link(l.src, l.dst).jitter_s for l in links)
    if not relay_delay and wants_delay and not caps.netem:
        raise ShapingError("backend 'tc' needs sch_netem for delay and jitter, and this kernel has none; "
                           "use 'tc+relay' (kernel rate, relay delay) or 'relay'")
    use_netem = caps.netem and not relay_delay  # otherwise loss comes from nftables drop rules
    shaping = Shaping(name, profile, links, trace)
    shaping._start_relays(_relay_delay_only if relay_delay else _no_relay_shape)
    try:
        with _state_lock():
            _check_lo_free()
            shaping._record_state("lo")
            tc_links = []
            for i, link in enumerate(links, start=1):
                reverse = shaping._relays[f"{link.dst}->{link.src}"]
                tc_links.append(tc.TcLink(key=link.key, classid=i, shape=profile.link(link.src, link.dst),
                                          matches=tc.port_matches(dports=(shaping._relays[link.key].port,),
                                                                  sports=(reverse.port,))))
                shaping._tc_classes[i] = link.key
            tc.apply(tc_links, use_netem=use_netem)
        if not use_netem:
            _apply_loss(shaping)
    except BaseException:
        shaping.close()
        raise
    for link in links:
        shape = profile.link(link.src, link.dst)
        applied = tc.describe_applied(shape, netem=use_netem)
        if relay_delay:
            applied["relay_delay"] = f"{shape.delay_s * 1e3:g} ms ± {shape.jitter_s * 1e3:g} ms"
        shaping.applied[link.key] = {**applied, **shaping.applied.get(link.key, {})}
    if relay_delay:
        _flag_beyond_floor(shaping)
    if not caps.netem:
        shaping.notes.append("kernel delay unavailable (no sch_netem): "
                             + ("delay and jitter come from the relay" if relay_delay else "links have no added delay"))
    return shaping


def build_tc(profile: NetworkProfile, links: list[PartyLink], caps: Capabilities, trace: bool = False) -> Shaping:
    return _build_kernel(profile, links, caps, relay_delay=False, trace=trace)


def build_tc_relay(profile: NetworkProfile, links: list[PartyLink], caps: Capabilities, trace: bool = False) -> Shaping:
    return _build_kernel(profile, links, caps, relay_delay=True, trace=trace)


# backend -> builder(profile, links, capabilities, trace)
BACKENDS: dict[str, Callable[..., Shaping]] = {
    "none": build_none,
    "relay": build_relay,
    "tc": build_tc,
    "tc+relay": build_tc_relay,
}


def choose_backend(profile: NetworkProfile, caps: Capabilities | None = None) -> tuple[str, str]:
    """The backend `auto` picks for this profile on this machine, and why."""
    caps = caps or probe()
    if not profile.shaped:
        return "none", "the profile shapes nothing"
    wants_loss = profile.default.loss > 0 or any(s.loss for s in profile.links.values())
    if caps.htb and caps.netem:
        return "tc", "root with htb and netem: the kernel shapes rate, delay, jitter and loss"
    if caps.htb:
        return "relay", ("no sch_netem here; the relay shapes rate and delay in user space (set against "
                         "measured per preset: `raympc bench netsim`), needs no change to lo, and lets shaped "
                         "sessions run side by side; profiles beyond what it can do (lan's 10 Gbit/s) are flagged"
                         + ("; loss comes from nftables drop rules" if wants_loss else ""))
    return "relay", f"kernel shaping unavailable ({caps.detail}); the user-space relay shapes instead"


def shape(profile: NetworkProfile, links: list[PartyLink], backend: str = "auto", trace: bool = False) -> Shaping:
    """Shape every link of `links` as `profile` says, until the returned shaping is closed.

    Args:
        profile: the rate, delay, jitter and loss per directed link (`netsim.resolve("wan")`).
        links: the directed links, each a source rank, destination rank and destination address.
        backend: "relay", "tc", "tc+relay", "none", or "auto" (probes the machine and says why;
            with `trace`, an unshaped profile gets the pass-through relay rather than "none").
        trace: keep every link's message timeline (`Shaping.messages`; sizes and times only).

    Returns:
        A `Shaping` (a context manager): `address(src, dst)` is where `src` must dial `dst`,
        `counters()` the bytes per link, `metadata()` what was applied, `close()` undoes it all.

    Raises:
        ShapingError: the backend is unknown, or cannot apply the profile here (no root, no netem
            for delay through tc, `lo` already shaped by somebody else).
    """
    caps = probe()
    if backend == "auto" and trace and not profile.shaped:
        backend = "relay"  # only a relay sees the messages; on an unshaped profile it only forwards
    if backend == "auto":
        backend, why = choose_backend(profile, caps)
        if profile.shaped:
            log.info("backend %s for %s: %s", backend, profile.describe(), why)
    builder = BACKENDS.get(backend)
    if builder is None:
        raise ShapingError(f"unknown shaping backend {backend!r}; choose one of {sorted(BACKENDS)} or 'auto'")
    shaping = builder(profile, links, caps, trace=trace)
    for note in shaping.notes:
        log.warning(note)
    return shaping


def reset(include_live: bool = False) -> list[str]:
    """Undo shapings whose owner process died (all of them with `include_live`); what was undone."""
    undone = []
    here = state.current_net_inode()
    with _state_lock():
        for rec in state.records():
            if rec.owner_alive and not include_live:
                continue
            if rec.netns is None and rec.net_inode and rec.net_inode != here:
                continue  # made in another namespace (an emulated node): undone from there
            if rec.nft_table is not None:
                removed = loss.remove_table(rec.nft_table)
                undone.append(f"{rec.id} (pid {rec.pid}, {rec.backend}): "
                              + (f"removed nftables table {rec.nft_table}" if removed else f"{rec.nft_table} was already gone"))
            if rec.interface is not None:
                where = rec.interface + (f" in netns {rec.netns}" if rec.netns else "")
                try:
                    removed = tc.remove_root(ifname=rec.interface, netns=rec.netns)
                except (tc.TcError, OSError) as exc:  # the interface or namespace is gone: nothing left
                    removed = False
                    where += f" ({exc})"
                undone.append(f"{rec.id} (pid {rec.pid}, {rec.backend}): "
                              + (f"removed the htb root on {where}" if removed else f"{where} was already clean"))
            elif rec.nft_table is None:
                undone.append(f"{rec.id} (pid {rec.pid}, {rec.backend}): relay-only, nothing left in the kernel")
            rec.delete()
    return undone
