"""A three-machine Ray cluster on one machine: network namespaces, veths, a bridge (root).

    root namespace                      raympc-node1 .. raympc-node3
    rmpc-br0 10.231.0.254/24  <-veth->  rmpc-e1 10.231.0.1  (Ray worker, resource party0)
    Ray head (0 CPUs)         <-veth->  rmpc-e2 10.231.0.2  (Ray worker, resource party1)
                              <-veth->  rmpc-e3 10.231.0.3  (Ray worker, resource party2)

Everything created here carries the `raympc-`/`rmpc-` prefix, and `down()` removes only that:
by the state file first, then by name, so it also cleans up after a crash. Ray processes are
stopped by the process ids recorded at start (with their start times), never by `ray stop`.
Without root (or namespaces) the fallback is several Ray nodes on 127.0.0.1 that differ only in
their party resources: placement works the same, but the nodes share one network stack, so links
are shaped by the single-host backends (relay or tc on lo) instead of per-node egress.
Token authentication stays on: `up()` makes a token, every node and driver uses it
(RAY_AUTH_MODE=token with RAY_AUTH_TOKEN_PATH pointing at a 0600 file).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import ray
from pyroute2 import IPRoute, NetNS, netns

from netsim.sockets import split_host_port
from raympc.cluster import cpu_share
from raympc.cluster.auth import use_auth_env
from raympc.cluster.leftovers import RECORD_DIR, same_process, stop
from raympc.cluster.ports import free_port
from raympc.errors import ConfigError, RaympcError
from raympc.util.files import write_json_atomically

NETNS_PREFIX = "raympc-node"
LINK_PREFIX = "rmpc-"
BRIDGE = "rmpc-br0"
SUBNET = "10.231.0"
HOST_IP = f"{SUBNET}.254"
STATE_FILE = RECORD_DIR / "emulated-cluster.json"
TOKEN_FILE = RECORD_DIR / "emulated-cluster.token"
LOG_FILE = RECORD_DIR / "emulated-cluster.log"  # `ray start` output; kept after down() for post-mortems
NODE_START_TIMEOUT_S = 90


class EmulationError(RaympcError):
    pass


@dataclass
class EmulatedCluster:
    mode: str  # "netns" (one namespace per node) or "loopback" (nodes share 127.0.0.1; no root needed)
    nodes: int
    gcs_address: str
    token_path: str
    head_temp_dir: str
    node_ips: list[str]
    processes: list[dict] = field(default_factory=list)  # {"pid", "created"} of everything we started
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    cpu_share: float | None = None  # cores per node (a cgroup CFS quota), None = nodes share all cores
    cgroups: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """Environment a driver needs to join (token auth stays on)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token_path}

    def save(self) -> None:
        write_json_atomically(STATE_FILE, asdict(self))


def load() -> EmulatedCluster | None:
    try:
        return EmulatedCluster(**json.loads(STATE_FILE.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _enter_node(netns_name: str | None, cgroup: str | None):
    def enter() -> None:  # runs in the child between fork and exec
        if cgroup is not None:
            cpu_share.join(cgroup)
        if netns_name is not None:
            netns.setns(netns_name)
        os.setsid()
    return enter


def _make_network(nodes: int, state: EmulatedCluster) -> None:
    with IPRoute() as ipr:
        ipr.link("add", ifname=BRIDGE, kind="bridge")
        state.links.append(BRIDGE)
        state.save()
        br = ipr.link_lookup(ifname=BRIDGE)[0]
        ipr.addr("add", index=br, address=HOST_IP, prefixlen=24)
        ipr.link("set", index=br, state="up")
        for i in range(1, nodes + 1):
            ns, host_side, ns_side = f"{NETNS_PREFIX}{i}", f"{LINK_PREFIX}v{i}", f"{LINK_PREFIX}e{i}"
            netns.create(ns)
            state.netns.append(ns)
            ipr.link("add", ifname=host_side, kind="veth", peer=ns_side)
            state.links.append(host_side)
            state.save()
            host_idx = ipr.link_lookup(ifname=host_side)[0]
            ipr.link("set", index=host_idx, master=br)
            ipr.link("set", index=host_idx, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname=ns_side)[0], net_ns_fd=ns)
            with NetNS(ns) as nsr:
                idx = nsr.link_lookup(ifname=ns_side)[0]
                nsr.addr("add", index=idx, address=f"{SUBNET}.{i}", prefixlen=24)
                nsr.link("set", index=idx, state="up")
                nsr.link("set", index=nsr.link_lookup(ifname="lo")[0], state="up")
            state.node_ips.append(f"{SUBNET}.{i}")
            state.save()


def _ray_start(args: list[str], env: dict[str, str], preexec, log: Path) -> subprocess.Popen:
    ray = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    if ray is None:
        raise EmulationError("the `ray` command is not installed next to this Python")
    with open(log, "ab") as out:
        return subprocess.Popen([ray, "start", "--block", "--disable-usage-stats", *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=preexec)


def _wait_for_gcs(address: str, proc: subprocess.Popen) -> None:
    host, port = split_host_port(address)
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulationError(f"the Ray head exited with code {proc.returncode}; see {LOG_FILE}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise EmulationError(f"the Ray head did not listen on {address} within {NODE_START_TIMEOUT_S} s")


def _wait_for_node_count(expected: int, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if sum(n["Alive"] for n in ray.nodes()) >= expected:
            return
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise EmulationError(f"a Ray node exited with code {dead[0].returncode}; see {LOG_FILE}")
        time.sleep(0.5)
    raise EmulationError(f"fewer than {expected} Ray nodes within {NODE_START_TIMEOUT_S} s; see {LOG_FILE}")


def namespaces_possible() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "not root"
    try:
        netns.listnetns()
    except Exception as exc:  # noqa: BLE001 - any failure means: no namespaces here
        return False, f"network namespaces unavailable ({exc})"
    return True, ""


def up(nodes: int = 3, cpus_per_node: int = 1, mode: str = "auto", cpu_share_cores: float | None = None) -> EmulatedCluster:
    """One Ray node per namespace (plus a head on the host); or, where namespaces are impossible
    (not root, or `mode="loopback"`), several Ray nodes on 127.0.0.1 that differ only in resources.

    `cpu_share_cores`: each node's processes get that many cores on average (a cgroup quota), as a
    machine of its own would; None lets the nodes share all of the host's cores."""
    possible, why = namespaces_possible()
    if mode == "auto":
        mode = "netns" if possible else "loopback"
    if mode == "netns" and not possible:
        raise EmulationError(f"namespaces are impossible here ({why}); use mode 'loopback'")
    if mode not in ("netns", "loopback"):
        raise ConfigError(f"unknown emulation mode {mode!r}; choose auto, netns or loopback")
    if cpu_share_cores is not None:
        quotas, why_not = cpu_share.available()
        if not quotas:
            raise EmulationError(f"per-node CPU shares are impossible here ({why_not}); leave them out to share cores")
    if load() is not None or (possible and (_existing_netns() or _existing_links())) or cpu_share.existing():
        raise EmulationError("an emulated cluster (or its leftovers) exists; run `raympc cluster emulate down` first")
    RECORD_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    head_dir = tempfile.mkdtemp(prefix="raympc-emu-", dir="/tmp")
    head_ip = HOST_IP if mode == "netns" else "127.0.0.1"
    port = free_port("127.0.0.1")
    state = EmulatedCluster(mode=mode, nodes=nodes, gcs_address=f"{head_ip}:{port}", token_path=str(TOKEN_FILE),
                            head_temp_dir=head_dir, node_ips=[], cpu_share=cpu_share_cores)
    state.save()
    procs: list[subprocess.Popen] = []
    try:
        if mode == "netns":
            _make_network(nodes, state)
        else:
            state.node_ips = ["127.0.0.1"] * nodes
        env = {**os.environ, **state.env(), "RAY_DISABLE_USAGE_STATS": "1"}
        log = LOG_FILE
        log.write_bytes(b"")
        procs.append(_ray_start(["--head", f"--node-ip-address={head_ip}", f"--port={port}", "--num-cpus=0",
                                 f"--temp-dir={head_dir}", "--include-dashboard=false"], env, os.setsid, log))
        _wait_for_gcs(state.gcs_address, procs[0])
        _record(state, procs)
        with _connected(state):
            _wait_for_node_count(1, procs)
            # One node at a time: four Ray nodes starting at once overload the GCS on two cores.
            for i in range(1, nodes + 1):
                resources = json.dumps({f"party{i - 1}": 1, "raympc_node": 1})
                group = None
                if cpu_share_cores is not None:
                    group = str(cpu_share.create(f"{cpu_share.PREFIX}{i}", cpu_share_cores))
                    state.cgroups.append(group)
                    state.save()
                preexec = _enter_node(f"{NETNS_PREFIX}{i}" if mode == "netns" else None, group)
                # `--temp-dir` is head-only; without RAY_TMPDIR the nodes would leave sessions in /tmp/ray
                procs.append(_ray_start([f"--address={state.gcs_address}", f"--node-ip-address={state.node_ips[i - 1]}",
                                         f"--num-cpus={cpus_per_node}", f"--resources={resources}"],
                                        {**env, "RAY_TMPDIR": head_dir}, preexec, log))
                _record(state, procs)
                _wait_for_node_count(i + 1, procs)
        _record(state, procs)  # raylets, agents and workers started since
        return state
    except BaseException:
        down()
        raise


@contextlib.contextmanager
def _connected(state: EmulatedCluster):
    """A driver connection to the emulated cluster, with its token, restoring this process's auth after."""

    saved = {k: os.environ.get(k) for k in state.env()}
    use_auth_env(state.env())
    try:
        ray.init(address=state.gcs_address, log_to_driver=False, configure_logging=False)
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
        use_auth_env({k: v for k, v in saved.items() if v is not None})


def _record(state: EmulatedCluster, procs: list[subprocess.Popen]) -> None:
    known = {p["pid"] for p in state.processes}
    for proc in procs:
        try:
            tree = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for p in tree:
            if p.pid not in known:
                try:
                    state.processes.append({"pid": p.pid, "created": p.create_time()})
                    known.add(p.pid)
                except psutil.NoSuchProcess:
                    pass
    state.save()


def _existing_netns() -> list[str]:
    return sorted(n for n in netns.listnetns() if n.startswith(NETNS_PREFIX))


def _existing_links() -> list[str]:
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(LINK_PREFIX))


def _processes_in(namespaces: list[str]) -> list[psutil.Process]:
    """Processes whose network namespace is one of ours (what a crash may have left unrecorded)."""
    inodes = set()
    for ns in namespaces:
        try:
            inodes.add(os.stat(f"/var/run/netns/{ns}").st_ino)
        except OSError:
            pass
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.stat(f"/proc/{p.pid}/ns/net").st_ino in inodes:
                found.append(p)
        except OSError:
            continue
    return found


def down() -> list[str]:
    """Stop our Ray nodes, delete our namespaces, veths and bridge. Safe to run at any time."""
    undone: list[str] = []
    state = load()
    possible, _ = namespaces_possible()
    namespaces = _existing_netns() if possible else []
    procs = [p for p in (same_process(i) for i in (state.processes if state else [])) if p is not None]
    procs += [p for p in _processes_in(namespaces) if p.pid not in {q.pid for q in procs}]
    stop(procs, grace_s=10)
    if procs:
        undone.append(f"stopped {len(procs)} Ray process(es)")
    if possible:
        undone += _delete_network(namespaces)
    for group in cpu_share.existing():
        if cpu_share.remove(group):
            undone.append(f"deleted cgroup {group}")
    if state is not None:
        shutil.rmtree(state.head_temp_dir, ignore_errors=True)
    STATE_FILE.unlink(missing_ok=True)
    TOKEN_FILE.unlink(missing_ok=True)
    return undone


def _delete_network(namespaces: list[str]) -> list[str]:
    undone = []
    with IPRoute() as ipr:
        for name in _existing_links():
            idx = ipr.link_lookup(ifname=name)
            if idx:
                ipr.link("del", index=idx[0])
                undone.append(f"deleted link {name}")
    for ns in namespaces:
        netns.remove(ns)
        undone.append(f"deleted namespace {ns}")
    return undone


def join_env(address: str) -> tuple[str, dict[str, str]]:
    """`--address emulated`: the emulated cluster's GCS address and the auth environment to join it."""
    state = load()
    if state is None:
        raise ConfigError("no emulated cluster is running; start one with `raympc cluster emulate up` (root)")
    return state.gcs_address, state.env()
