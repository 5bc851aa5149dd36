"""Packet loss without netem: nftables rules that drop a random share of a link's packets.

Kernels without `sch_netem` (and without the `gact` action) still have nftables with `numgen`.
For each lossy directed link, a table of raympc's own holds, on the `output` hook:

    tcp dport PORT counter                                         (every packet of the link)
    tcp dport PORT numgen random mod 10000 < N counter drop        (N = loss x 10000)

PORT is the relay port the link's source party dials, so the loss hits that link's data and
TCP's retransmissions recover from it as they would on a lossy network (on the relay's loopback
hop: see docs/netsim.md for what that means for recovery times). The rules are made through
pyroute2's nftables module, never a shelled-out `nft`. Each table is named after its shaping and
recorded with it, so `close()` and `netsim reset` (after SIGKILL) delete exactly the tables raympc
made, and no other rule is touched.
"""

from __future__ import annotations

import errno
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nftsocket import Cmp, Regs
from pyroute2.nftables.expressions import genex, verdict
from pyroute2.nftables.main import NFTables

TABLE_PREFIX = "raympc_"
CHAIN = "loss"
MODULUS = 10_000  # loss is set in steps of 0.01%
IPPROTO_TCP, NF_DROP, NF_ACCEPT = 6, 0, 1
NFT_META_L4PROTO, NFT_PAYLOAD_TRANSPORT_HEADER, NFT_NG_RANDOM, NFT_BYTEORDER_HTON = 16, 2, 1, 1


class LossError(RuntimeError):
    """The loss rules cannot be made here (no nftables, no permission)."""


@dataclass(frozen=True)
class LossRule:
    link: str  # "src->dst"
    port: int  # the TCP destination port of the link's packets
    rate: float  # in [0, 1)

    @property
    def threshold(self) -> int:
        return round(self.rate * MODULUS)


def _kw(**items: Any) -> OrderedDict:
    return OrderedDict(items)


def _compare(op: Cmp, data: bytes) -> dict:
    return genex("cmp", _kw(sreg=Regs.NFT_REG_1, op=op, data={"attrs": [("NFTA_DATA_VALUE", data)]}))


def _tcp_dport(port: int) -> list[dict]:
    return [genex("meta", _kw(dreg=Regs.NFT_REG_1, key=NFT_META_L4PROTO)),
            _compare(Cmp.NFT_CMP_EQ, bytes([IPPROTO_TCP])),
            genex("payload", _kw(dreg=Regs.NFT_REG_1, base=NFT_PAYLOAD_TRANSPORT_HEADER, offset=2, len=2)),
            _compare(Cmp.NFT_CMP_EQ, struct.pack("!H", port))]


def _random_below(threshold: int) -> list[dict]:
    # built by hand: `genex("numgen", ...)` would name its attributes NFTA_NUMGEN_*, and the kernel
    # (and pyroute2's own netlink map) call them NFTA_NG_*, so the kernel would answer EINVAL
    numgen = {"attrs": [("NFTA_EXPR_NAME", "numgen"), ("NFTA_EXPR_DATA", {"attrs": [
        ("NFTA_NG_DREG", Regs.NFT_REG_1), ("NFTA_NG_MODULUS", MODULUS), ("NFTA_NG_TYPE", NFT_NG_RANDOM),
        ("NFTA_NG_OFFSET", 0)]})]}
    # numgen writes host order and `cmp lt` compares bytes as big-endian numbers: convert first
    to_network = genex("byteorder", _kw(sreg=Regs.NFT_REG_1, dreg=Regs.NFT_REG_1, op=NFT_BYTEORDER_HTON, len=4,
                                        size=4))
    return [numgen, to_network, _compare(Cmp.NFT_CMP_LT, struct.pack("!I", threshold))]


def _counter() -> list[dict]:
    return [genex("counter", _kw(bytes=0, packets=0))]


class LossRules:
    """One nftables table of drop rules for a shaping's lossy links; `remove()` deletes it."""

    def __init__(self, table: str, rules: list[LossRule]) -> None:
        if not table.startswith(TABLE_PREFIX):
            raise ValueError(f"raympc's loss tables are named {TABLE_PREFIX}*, got {table!r}")
        self.table, self.rules = table, rules

    def apply(self) -> "LossRules":
        """Create the table, its chain and every link's two rules.

        Raises:
            LossError: nftables refused (not root, or no nf_tables in this kernel).
        """
        try:
            with NFTables(nfgen_family=2) as nft:
                nft.table("add", name=self.table)
                nft.chain("add", table=self.table, name=CHAIN, hook="output", type="filter", priority=0,
                          policy=NF_ACCEPT)
                for rule in self.rules:
                    nft.rule("add", table=self.table, chain=CHAIN, expressions=(_tcp_dport(rule.port), _counter()))
                    nft.rule("add", table=self.table, chain=CHAIN,
                             expressions=(_tcp_dport(rule.port), _random_below(rule.threshold), _counter(),
                                          verdict(NF_DROP)))
        except NetlinkError as exc:
            remove_table(self.table)
            raise LossError(f"nftables refused the loss rules ({exc}); loss without netem needs root and "
                            "nf_tables") from exc
        return self

    def counters(self) -> dict[str, dict[str, int]]:
        """Per link: packets its rules saw, and packets they dropped (the kernel's own counters)."""
        out = {r.link: {"seen": 0, "dropped": 0} for r in self.rules}
        by_port = {r.port: r.link for r in self.rules}
        with NFTables(nfgen_family=2) as nft:
            for msg in nft.get_rules():
                if msg.get_attr("NFTA_RULE_TABLE") != self.table:
                    continue
                exprs = msg.get_attr("NFTA_RULE_EXPRESSIONS")
                data = {e.get_attr("NFTA_EXPR_NAME"): e.get_attr("NFTA_EXPR_DATA") for e in exprs}
                port_cmp = exprs[3].get_attr("NFTA_EXPR_DATA")  # _tcp_dport's fourth expression: the port's cmp
                port = struct.unpack("!H", port_cmp.get_attr("NFTA_CMP_DATA").get_attr("NFTA_DATA_VALUE"))[0]
                kind = "dropped" if "numgen" in data else "seen"
                out[by_port[port]][kind] = data["counter"].get_attr("NFTA_COUNTER_PACKETS")
        return out

    def remove(self) -> bool:
        return remove_table(self.table)


def remove_table(table: str) -> bool:
    """Delete raympc's table `table` if it exists; True if it did."""
    if not table.startswith(TABLE_PREFIX):
        raise ValueError(f"refusing to delete {table!r}: not one of raympc's tables")
    try:
        with NFTables(nfgen_family=2) as nft:
            nft.table("del", name=table)
    except NetlinkError as exc:
        if exc.code == errno.ENOENT:
            return False
        raise
    return True


def tables() -> list[str]:
    """raympc's loss tables present in this network namespace."""
    with NFTables(nfgen_family=2) as nft:
        return [t.get_attr("NFTA_TABLE_NAME") for t in nft.get_tables()
                if t.get_attr("NFTA_TABLE_NAME", "").startswith(TABLE_PREFIX)]
