"""Shaping across machines: each party's node shapes its own egress towards the other party nodes.

A small actor pinned to each party's node (num_cpus=0) finds the interface that carries the node's
IP, installs htb classes per peer IP there (netem delay where the kernel has it, rate only and a
note where not), reports counters, and removes everything on close. If the actor dies instead,
`raympc netsim reset --address ...` runs a reset task on every node, which undoes the record the
actor left in that node's state directory.
"""

from __future__ import annotations

from typing import Any

import ray
from pyroute2 import IPRoute
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import netsim
from netsim.egress import shape_egress
from raympc.errors import ConfigError


def interface_with_ip(ip: str) -> str:
    """Name of the interface that holds `ip` in this process's network namespace."""

    with IPRoute() as ipr:
        for addr in ipr.get_addr(family=2):
            if addr.get_attr("IFA_ADDRESS") == ip:
                return ipr.get_links(addr["index"])[0].get_attr("IFLA_IFNAME")
    raise ConfigError(f"no interface holds {ip} on this node")


class NodeShaper:
    def __init__(self, profile: netsim.NetworkProfile, rank: int, my_ip: str, peers: dict[int, str]) -> None:
        self.ifname = interface_with_ip(my_ip)
        self.shaping = shape_egress(profile, rank, peers, self.ifname)

    def metadata(self) -> dict[str, Any]:
        return self.shaping.metadata()

    def counters(self) -> dict[str, dict[str, int]]:
        return self.shaping.counters()

    def close(self) -> None:
        self.shaping.close()


def _pinned(node_id: str) -> dict[str, Any]:
    return {"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}


class ClusterShaping:
    """One NodeShaper per party node; the Session's view of shaping when parties are spread."""

    def __init__(self, profile: netsim.NetworkProfile, party_info: list[dict[str, Any]]) -> None:
        ips = [i["node_ip"] for i in party_info]
        if len(set(ips)) != len(ips):
            raise ConfigError("shaping across machines filters by peer IP, so every party needs its own node "
                              f"(party node IPs: {ips}); use placement='spread'")
        self.profile = profile
        remote = ray.remote(NodeShaper)
        self._actors = []
        try:
            for rank, info in enumerate(party_info):
                peers = {r: ip for r, ip in enumerate(ips) if r != rank}
                actor = remote.options(**_pinned(info["node_id"])).remote(profile, rank, ips[rank], peers)
                self._actors.append(actor)
            self._meta = ray.get([a.metadata.remote() for a in self._actors], timeout=60)
        except Exception as exc:
            self.close()
            cause = exc.cause if hasattr(exc, "cause") and exc.cause else exc
            raise ConfigError(f"could not shape the party nodes' egress: {cause}") from exc

    def address(self, src: int, dst: int) -> None:
        return None  # parties dial each other directly; the kernel shapes on the way out

    def counters(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for c in ray.get([a.counters.remote() for a in self._actors], timeout=60):
            out.update(c)
        return out

    def metadata(self) -> dict[str, Any]:
        return {"profile": self.profile.name, "profile_detail": self.profile.describe(), "backend": "tc-egress",
                "nodes": self._meta, "notes": sorted({n for m in self._meta for n in m.get("notes", [])}),
                "counter_source": "tc class stats"}

    def close(self) -> None:
        actors, self._actors = self._actors, []
        try:
            ray.get([a.close.remote() for a in actors], timeout=60)
        except Exception:  # noqa: BLE001 - a dead shaper's record is left for `netsim reset`
            pass
        for a in actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001
                pass


def reset_all_nodes(include_live: bool = False) -> list[str]:
    """Run netsim's reset on every alive node of the connected cluster (pinned tasks)."""
    @ray.remote(num_cpus=0)
    def _reset(flag: bool) -> list[str]:
        return netsim.reset(include_live=flag)

    nodes = [n for n in ray.nodes() if n["Alive"]]
    results = ray.get([_reset.options(**_pinned(n["NodeID"])).remote(include_live) for n in nodes], timeout=120)
    return [f"{n['NodeManagerAddress']}: {line}" for n, lines in zip(nodes, results) for line in lines]
