"""`raympc cluster label`: which party a worker node is, for cluster configs without node types.

On-premises clusters (Ray's `local` provider) start every worker with the same command; each
worker finds its own IP in the ordered worker list and becomes party R with resource `partyR`.
"""

from __future__ import annotations

import psutil

from raympc.errors import ConfigError


def local_ips() -> set[str]:
    return {a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family.name == "AF_INET"}


def party_resources(workers: list[str], mine: set[str] | None = None) -> dict[str, int]:
    mine = local_ips() if mine is None else mine
    hits = [rank for rank, ip in enumerate(workers) if ip.strip() in mine]
    if len(hits) != 1:
        raise ConfigError(f"this host ({sorted(mine)}) matches {len(hits)} entries of the worker list {workers}; "
                          "it must match exactly one")
    return {f"party{hits[0]}": 1}
