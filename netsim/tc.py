"""Kernel traffic control through pyroute2: an htb class per directed link.

Two layouts share one installer. Multi-machine: on a node's NIC, one class per peer node,
matched by the peer's IP (each node shapes its own egress). Single host, on `lo`: root htb 1: with no default class, so traffic raympc did not
classify is passed straight through; class 1:<n> per directed link (rate, and ceil = rate);
u32 filters send a link's packets to its class; a netem leaf adds delay/jitter/loss where the
kernel has sch_netem. Each link is identified by the port of the relay that splits it out (see
`backends.py`): its data has that destination port, and the replies on that connection (the
reverse direction) have it as source port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

from netsim.profile import LinkShape

ETH_P_IP = 0x0800
ROOT = "1:"
ROOT_HANDLE = 0x10000
# Loopback carries 64 KiB GSO segments: a burst smaller than a few of them throttles below the rate.
MIN_BURST_BYTES = 256 * 1024
NETEM_LIMIT_PACKETS = 100_000  # netem's default 1000 packets is far below a WAN bandwidth-delay product
UNLIMITED_BPS = 100e9


class TcError(RuntimeError):
    """The kernel refused a traffic-control change."""


@dataclass(frozen=True)
class TcLink:
    key: str  # "src->dst"
    classid: int  # minor number under 1:
    shape: LinkShape
    matches: tuple[str, ...]  # u32 keys ("value/mask+offset" into the IP header)


def port_matches(dports: Iterable[int] = (), sports: Iterable[int] = ()) -> tuple[str, ...]:
    """TCP destination ports (offset 22) and source ports (upper half of the word at 20)."""
    return (tuple(f"0x{p:04x}/0xffff+22" for p in dports)
            + tuple(f"0x{p:04x}0000/0xffff0000+20" for p in sports))


def peer_ip_match(ip: str) -> tuple[str, ...]:
    """IPv4 destination address (offset 16)."""
    return (f"0x{int(ipaddress.IPv4Address(ip)):08x}/0xffffffff+16",)


def _ipr(netns: str | None = None):
    if netns is not None:
        return NetNS(netns)
    return IPRoute()


def if_index(ipr, ifname: str = "lo") -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise TcError(f"no interface {ifname!r}")
    return found[0]


def lo_index(ipr) -> int:
    return if_index(ipr, "lo")


def root_qdisc(ipr, index: int) -> tuple[str, int]:
    for q in ipr.get_qdiscs(index):
        if q["parent"] == 0xFFFFFFFF:
            return q.get_attr("TCA_KIND"), q["handle"]
    return "noqueue", 0


def describe_applied(shape: LinkShape, netem: bool) -> dict[str, str]:
    """What the kernel applies to one link, for a run's metadata."""
    applied = {"kernel_rate": "unlimited" if shape.rate_bps is None else f"{shape.rate_bps:g} bit/s"}
    if netem:
        applied["kernel_delay"] = f"{shape.delay_s * 1e3:g} ms ± {shape.jitter_s * 1e3:g} ms, loss {shape.loss:g}"
    return applied


def _burst(rate_bps: float) -> int:
    return max(MIN_BURST_BYTES, int(rate_bps / 8 * 0.002))


def apply(links: Iterable[TcLink], use_netem: bool, ifname: str = "lo", netns: str | None = None) -> None:
    """Install the htb tree on `ifname`. Caller has checked that its root is the default qdisc."""
    with _ipr(netns) as ipr:
        idx = if_index(ipr, ifname)
        try:
            ipr.tc("add", "htb", idx, ROOT, default=0)
            for link in links:
                rate = link.shape.rate_bps or UNLIMITED_BPS
                handle = f"1:{link.classid:x}"
                # pyroute2 reads a bare int as bytes/s: say bits explicitly.
                ipr.tc("add-class", "htb", idx, handle, parent=ROOT, rate=f"{int(rate)}bit", ceil=f"{int(rate)}bit",
                       burst=_burst(rate), cburst=_burst(rate))
                if use_netem and (link.shape.delay_s or link.shape.jitter_s or link.shape.loss):
                    ipr.tc("add", "netem", idx, parent=handle, handle=f"{link.classid:x}:",
                           delay=int(link.shape.delay_s * 1e6), jitter=int(link.shape.jitter_s * 1e6),
                           loss=link.shape.loss * 100, limit=NETEM_LIMIT_PACKETS)
                for key in link.matches:
                    ipr.tc("add-filter", "u32", idx, parent=ROOT, protocol=ETH_P_IP, prio=10,
                           target=handle, keys=[key])
        except NetlinkError as exc:
            remove_root(ipr, idx)
            raise TcError(f"traffic control on {ifname} failed: {exc}") from exc


def remove_root(ipr=None, index: int | None = None, ifname: str = "lo", netns: str | None = None) -> bool:
    """Delete our root htb (restores the default qdisc). True if something was removed."""
    own = ipr is None
    ipr = ipr or _ipr(netns)
    try:
        idx = index if index is not None else if_index(ipr, ifname)
        kind, handle = root_qdisc(ipr, idx)
        if kind == "htb" and handle == ROOT_HANDLE:
            ipr.tc("del", index=idx, handle=ROOT, root=True)
            return True
        return False
    finally:
        if own:
            ipr.close()


def class_counters(ifname: str = "lo", netns: str | None = None) -> dict[int, dict[str, int]]:
    """Bytes and packets sent by each class under our root, keyed by class minor number."""
    out: dict[int, dict[str, int]] = {}
    with _ipr(netns) as ipr:
        idx = if_index(ipr, ifname)
        for c in ipr.get_classes(idx):
            if c["handle"] >> 16 != 1:
                continue
            stats = c.get_attr("TCA_STATS2")
            basic = stats.get_attr("TCA_STATS_BASIC") if stats else None
            if basic:
                out[c["handle"] & 0xFFFF] = {"bytes": basic["bytes"], "packets": basic["packets"]}
    return out
