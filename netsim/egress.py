"""Multi-machine shaping: a node shapes its own egress towards each peer node, on its real NIC.

One htb class per peer, matched by the peer's IP, with a netem leaf for delay/jitter/loss where
the kernel has sch_netem (rate only, and a note saying so, where it has not). Meant to run on
each party's node (through a Ray task pinned there); on one machine it is tested between network
namespaces joined by a veth pair.
"""

from __future__ import annotations

import os
import uuid

from netsim import state, tc
from netsim.backends import ShapingError, _state_lock, log
from netsim.probe import probe
from netsim.profile import NetworkProfile


class EgressShaping:
    """Egress shaping of one node towards its peers; `close()` restores the interface."""

    def __init__(self, profile: NetworkProfile, my_rank: int, peers: dict[int, str], ifname: str,
                 netns: str | None = None) -> None:
        self.profile, self.my_rank, self.peers, self.ifname, self.netns = profile, my_rank, peers, ifname, netns
        self.id = uuid.uuid4().hex[:12]
        self.notes: list[str] = []
        self.applied: dict[str, dict] = {}
        self._classes: dict[int, str] = {}
        self._record: state.ShapingRecord | None = None
        self._closed = False

    def _apply(self) -> None:
        caps = probe()
        if not caps.htb:
            raise ShapingError(f"egress shaping needs kernel htb: {caps.detail}")
        links = []
        for i, (rank, ip) in enumerate(sorted(self.peers.items()), start=1):
            key = f"{self.my_rank}->{rank}"
            shape = self.profile.link(self.my_rank, rank)
            if shape.loss and not caps.netem:
                raise ShapingError("loss needs sch_netem, which this kernel lacks")
            links.append(tc.TcLink(key=key, classid=i, shape=shape, matches=tc.peer_ip_match(ip)))
            self._classes[i] = key
            applied = {"peer_ip": ip, **tc.describe_applied(shape, caps.netem)}
            self.applied[key] = applied
        if not caps.netem and any(self.profile.link(self.my_rank, r).delay_s for r in self.peers):
            self.notes.append(f"kernel delay unavailable (no sch_netem) on {self.ifname}: rate shaped, no added delay")
        with _state_lock():
            with tc._ipr(self.netns) as ipr:
                kind, handle = tc.root_qdisc(ipr, tc.if_index(ipr, self.ifname))
            if handle != 0:
                raise ShapingError(f"{self.ifname} already has a root qdisc ({kind} {handle:#x}); "
                                   "refusing to replace it (raympc netsim reset if a killed run left it)")
            self._record = state.ShapingRecord(id=self.id, pid=os.getpid(), backend="tc-egress",
                                               interface=self.ifname, netns=self.netns)
            self._record.save()
            try:
                tc.apply(links, use_netem=caps.netem, ifname=self.ifname, netns=self.netns)
            except BaseException:
                self._record.delete()
                raise
        for note in self.notes:
            log.warning(note)

    def counters(self) -> dict[str, dict[str, int]]:
        by_class = tc.class_counters(self.ifname, self.netns)
        return {key: by_class.get(cid, {"bytes": 0, "packets": 0}) for cid, key in self._classes.items()}

    def metadata(self) -> dict:
        return {"profile": self.profile.name, "backend": "tc-egress", "interface": self.ifname,
                "applied": self.applied, "notes": list(self.notes)}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _state_lock():
            tc.remove_root(ifname=self.ifname, netns=self.netns)
            if self._record is not None:
                self._record.delete()

    def __enter__(self) -> "EgressShaping":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shape_egress(profile: NetworkProfile, my_rank: int, peers: dict[int, str], ifname: str,
                 netns: str | None = None) -> EgressShaping:
    """Shape `ifname`'s traffic to each peer IP as the links my_rank -> peer of `profile`."""
    shaping = EgressShaping(profile, my_rank, peers, ifname, netns)
    shaping._apply()
    return shaping
