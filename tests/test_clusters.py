"""Cluster configs, party labels, and the three-node cluster emulated in network namespaces."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import yaml

from raympc import ConfigError
from raympc.cluster.labels import party_resources

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILES = sorted((ROOT / "clusters").glob("*.yaml"))


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_cluster_yaml_validates_and_labels_three_parties(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(path.read_text())
    validate_config(prepare_config(copy.deepcopy(raw)))  # Ray's own schema and checks
    types = raw.get("available_node_types")
    if types:  # cloud providers: one node type per party, each with its party resource
        for rank in range(3):
            (typ,) = [t for t in types.values() if t.get("resources", {}).get(f"party{rank}")]
            assert typ["min_workers"] >= 1
        assert types[raw["head_node_type"]]["resources"].get("CPU") == 0  # no party on the head
    else:  # on-premises: the worker list, in party order, is what `raympc cluster label` reads
        workers = raw["provider"]["worker_ips"]
        assert len(workers) >= 3
        assert any(f"cluster label --workers {','.join(workers)}" in c for c in raw["worker_start_ray_commands"])
    starts = " ".join(raw["head_start_ray_commands"] + raw["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in starts and "disabled" not in starts  # token auth stays on
    assert "--force" not in starts


def test_cluster_label_picks_this_hosts_position():
    assert party_resources(["10.0.0.1", "10.0.0.2", "10.0.0.3"], mine={"10.0.0.2", "127.0.0.1"}) == {"party1": 1}
    with pytest.raises(ConfigError, match="exactly one"):
        party_resources(["10.0.0.1", "10.0.0.2"], mine={"192.168.1.5"})


DRIVER = textwrap.dedent("""
    import json, ray, numpy as np
    from raympc import Session
    from raympc.cluster.node_shaping import _pinned
    from netsim.measure import LoopbackServer, measure_throughput

    @ray.remote(num_cpus=0)
    class Server:
        def __init__(self, ip):
            self.s = LoopbackServer(ip, 0)
        def port(self):
            return self.s.address[1]

    @ray.remote(num_cpus=0)
    def send(addr, n):
        return measure_throughput(tuple(addr), n)

    with Session(placement="spread", address="emulated", network="100mbit,0ms") as s:
        info = s.party_info
        srv = Server.options(**_pinned(info[1]["node_id"])).remote(info[1]["node_ip"])
        port = ray.get(srv.port.remote())
        bps = ray.get(send.options(**_pinned(info[0]["node_id"])).remote((info[1]["node_ip"], port), 25_000_000))
        r = s.run(lambda a, b: a @ b, np.eye(4, dtype=np.float32) * 3, np.ones((4, 4), np.float32))
        out = {"node_ips": [i["node_ip"] for i in info], "bps": bps, "result": r.outputs.tolist(),
               "backend": s.describe()["network"]["backend"], "counters": s._shaping.counters()}
    print("RESULT " + json.dumps(out))
""")


def _raympc(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raympc.cli", *args], capture_output=True, text=True, timeout=timeout)


def _emulate_and_drive(mode: str, driver: str, tmp_path: Path, *up_args: str) -> tuple[dict, object, list[int], str]:
    """`cluster emulate up`, run `driver` as a separate program against it, always `down`.

    Returns the driver's RESULT, the cluster state, the recorded pids and `up`'s output."""
    from raympc.cluster import emulated as emulate

    assert emulate.load() is None, "an emulated cluster is already up"
    try:
        up = _raympc("cluster", "emulate", "up", "--mode", mode, *up_args)
        assert up.returncode == 0, up.stdout + up.stderr
        state = emulate.load()
        script = tmp_path / "driver.py"
        script.write_text(driver)
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
        result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    finally:
        down = _raympc("cluster", "emulate", "down")
    assert down.returncode == 0, down.stderr
    recorded = [p["pid"] for p in state.processes]
    assert not [p for p in recorded if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert emulate.load() is None and not os.path.exists(state.head_temp_dir)
    return result, state, recorded, up.stdout


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_emulated_cluster_runs_one_party_per_namespace_with_shaped_veths(tmp_path):
    from raympc.cluster import emulated as emulate

    result, state, _, _ = _emulate_and_drive("netns", DRIVER, tmp_path)
    assert sorted(result["node_ips"]) == state.node_ips  # one party in each namespace
    assert result["result"][0] == [3.0] * 4
    assert result["backend"] == "tc-egress"
    assert abs(result["bps"] / 100e6 - 1) <= 0.05, result["bps"]  # the veth's shaped rate, within 5%
    assert sum(c["bytes"] for c in result["counters"].values()) > 0
    # Nothing left: no namespace, veth or bridge (so no qdisc on them).
    from pyroute2 import IPRoute, netns

    assert not [n for n in netns.listnetns() if n.startswith(emulate.NETNS_PREFIX)]
    with IPRoute() as ipr:
        assert not [l.get_attr("IFLA_IFNAME") for l in ipr.get_links()
                    if l.get_attr("IFLA_IFNAME").startswith(emulate.LINK_PREFIX)]

LOOPBACK_DRIVER = textwrap.dedent("""
    import json, numpy as np
    from raympc import Session
    with Session(placement="spread", address="emulated", network="200mbit,1ms") as s:
        r = s.run(lambda a: a + 1, np.zeros(4, np.float32))
        print("RESULT " + json.dumps({"nodes": [i["node_id"] for i in s.party_info], "out": r.outputs.tolist(),
                                      "backend": s.describe()["network"]["backend"]}))
""")


@pytest.mark.slow
def test_loopback_fallback_spreads_parties_over_ray_nodes(tmp_path):
    """Where namespaces are impossible: several Ray nodes on 127.0.0.1, shaped by the relay."""
    result, _, _, up_output = _emulate_and_drive("loopback", LOOPBACK_DRIVER, tmp_path)
    assert "on loopback" in up_output
    assert len(set(result["nodes"])) == 3 and result["out"] == [1.0] * 4
    assert result["backend"] == "relay"


CPU_SHARE_DRIVER = textwrap.dedent("""
    import json, os, subprocess, sys, time, ray
    from raympc.cluster.ray_instance import start_or_join

    BUSY = ("import time\\nwall, cpu = time.perf_counter(), time.process_time()\\n"
            "while time.perf_counter() - wall < {seconds}: pass\\n"
            "print((time.process_time() - cpu) / (time.perf_counter() - wall))")

    start_or_join("emulated")

    @ray.remote(num_cpus=1, resources={"party0": 0.01})
    def burn(seconds):
        wall, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - wall < seconds:
            pass
        return (time.process_time() - cpu) / (time.perf_counter() - wall), open("/proc/self/cgroup").read()

    task = burn.remote(4.0)
    # the same busy loop outside the cluster's cgroups, over the task's window: what the host's
    # load leaves a loop that no quota holds back
    free = float(subprocess.run([sys.executable, "-c", BUSY.format(seconds=6.0)], capture_output=True,
                                text=True, check=True).stdout)
    share, groups = ray.get(task)
    print("RESULT " + json.dumps({"share": share, "free": free, "groups": groups}))
""")


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and namespaces need root")
def test_cpu_share_holds_a_node_to_its_quota_and_down_removes_the_groups(tmp_path):
    """A busy loop on a node held to 0.4 cores gets 0.4 of a core (an idle host would give it 1).
    On a host whose cores other jobs saturate, the loop can get less than its quota, never more:
    the floor is taken against what an unconstrained loop gets at the same time."""
    from raympc.cluster import cpu_share

    if not cpu_share.available()[0]:
        pytest.skip(cpu_share.available()[1])
    result, state, _, up_output = _emulate_and_drive("netns", CPU_SHARE_DRIVER, tmp_path, "--cpu-share", "0.4")
    assert "0.4 cores" in up_output and state.cpu_share == 0.4 and len(state.cgroups) == 3
    assert "raympc-node1" in result["groups"]  # party0's node is the first namespace's Ray node
    assert result["share"] <= 0.45, result
    assert result["share"] >= 0.75 * min(0.4, result["free"]), result
    assert not cpu_share.existing()
