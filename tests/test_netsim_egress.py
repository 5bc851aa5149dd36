"""Multi-machine shaping: a node's egress to a peer IP, on a real NIC (a veth between two
network namespaces this test creates; all traffic stays inside them)."""

from __future__ import annotations

import os

import pytest

from netsim import NetworkProfile, probe, reset, state, tc
from netsim.egress import shape_egress
from netsim.measure import measure_rtt, measure_throughput, run_in_netns, serve_in_netns

CAPS = probe()
pytestmark = pytest.mark.skipif(not (CAPS.netns and CAPS.htb),
                                reason=f"needs root, network namespaces and htb: {CAPS.detail}")

A_IP, B_IP, PORT = "10.231.0.1", "10.231.0.2", 45001
# htb meters whole frames; a full 1500-MTU TCP frame (timestamps on) carries 1448 payload bytes
# in 1514 on the wire, so payload arrives at 95.6% of the shaped rate.
PAYLOAD_PER_FRAME = 1448 / 1514


@pytest.fixture
def two_hosts():
    """Namespaces a and b joined by veth va<->vb: the project's own test hosts."""
    from pyroute2 import IPRoute, NetNS, netns

    a, b = f"raympc-a-{os.getpid()}", f"raympc-b-{os.getpid()}"
    va, vb = f"rmpca{os.getpid() % 10000}", f"rmpcb{os.getpid() % 10000}"
    netns.create(a)
    netns.create(b)
    try:
        with IPRoute() as ip:
            ip.link("add", ifname=va, kind="veth", peer={"ifname": vb, "net_ns_fd": b})
            ip.link("set", index=ip.link_lookup(ifname=va)[0], net_ns_fd=a)
        for ns, ifname, addr in ((a, va, A_IP), (b, vb, B_IP)):
            with NetNS(ns) as n:
                idx = n.link_lookup(ifname=ifname)[0]
                n.addr("add", index=idx, address=addr, prefixlen=24)
                n.link("set", index=idx, state="up")
                n.link("set", index=n.link_lookup(ifname="lo")[0], state="up")
        server = serve_in_netns(b, B_IP, PORT)
        yield {"a": a, "b": b, "va": va}
        server.kill()
        server.join(timeout=10)
    finally:
        netns.remove(a)  # removing a namespace removes its end of the veth, and so the pair
        netns.remove(b)
    assert a not in netns.listnetns() and b not in netns.listnetns()


@pytest.mark.parametrize("rate, nbytes", [(100e6, 16 << 20), (1e9, 96 << 20)], ids=["100mbit", "1gbit"])
def test_egress_rate_to_peer_ip(two_hosts, rate, nbytes):
    prof = NetworkProfile.symmetric(rate=rate)
    with shape_egress(prof, 0, {1: B_IP}, two_hosts["va"], netns=two_hosts["a"]) as s:
        measured = run_in_netns(two_hosts["a"], measure_throughput, (B_IP, PORT), nbytes)
        counters = s.counters()
        assert s.id in {r.id for r in state.records()}
    goodput = rate * PAYLOAD_PER_FRAME
    assert abs(measured - goodput) <= 0.05 * goodput, f"{measured / 1e6:.1f} Mbit/s through {rate / 1e6:g} Mbit/s"
    on_wire = nbytes / PAYLOAD_PER_FRAME
    assert abs(counters["0->1"]["bytes"] - on_wire) <= 0.02 * on_wire, counters
    with tc._ipr(two_hosts["a"]) as ipr:
        assert tc.root_qdisc(ipr, tc.if_index(ipr, two_hosts["va"]))[1] == 0, "qdisc left on the NIC"


def test_unshaped_peer_is_untouched_and_reset_cleans_a_dead_record(two_hosts):
    prof = NetworkProfile.symmetric(rate="50mbit")
    s = shape_egress(prof, 0, {1: "10.231.0.9"}, two_hosts["va"], netns=two_hosts["a"])  # not B's IP
    try:
        measured = run_in_netns(two_hosts["a"], measure_throughput, (B_IP, PORT), 16 << 20)
        assert measured > 200e6, "traffic to an unlisted peer must not be shaped"
        # Simulate a killed owner: the record names a dead pid; reset removes the qdisc.
        s._record.pid = 2 ** 22 + 1
        s._record.save()
        undone = reset()
        assert any("removed the htb root on" in u and two_hosts["va"] in u for u in undone)
    finally:
        s._closed = True  # reset already restored the interface
    with tc._ipr(two_hosts["a"]) as ipr:
        assert tc.root_qdisc(ipr, tc.if_index(ipr, two_hosts["va"]))[1] == 0


@pytest.mark.skipif(not CAPS.netem, reason=f"this kernel has no sch_netem: {CAPS.detail}")
def test_egress_delay_with_netem(two_hosts):
    with shape_egress(NetworkProfile.symmetric(rate="1gbit", delay="10ms"), 0, {1: B_IP}, two_hosts["va"],
                      netns=two_hosts["a"]):
        rtt = run_in_netns(two_hosts["a"], measure_rtt, (B_IP, PORT))
    assert abs(rtt - 0.010) <= 0.001  # only a's egress is delayed: RTT = 10 ms
