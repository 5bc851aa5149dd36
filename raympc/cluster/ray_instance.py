"""Starting or joining Ray without ever attaching to somebody else's cluster by accident."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from dataclasses import dataclass
from typing import Iterator

import ray
from ray._private import ray_constants

from netsim.sockets import split_host_port
from raympc.cluster import leftovers
from raympc.cluster.auth import use_auth_env
from raympc.cluster.emulated import join_env
from raympc.errors import RayStartError

SINGLE_NODE_ENV = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR  # "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

# The embedded instance declares at least this many logical CPUs so three 1-CPU parties fit on a
# 2-core laptop; yacl's real thread count is set per party (see PartySpec.threads).
MIN_EMBEDDED_CPUS = 3


@dataclass
class RayHandle:
    """Who owns the Ray connection: only an embedded instance we started is shut down by us."""

    owned: bool
    address: str
    temp_dir: str | None = None

    def __enter__(self) -> "RayHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        if self.owned:
            ray.shutdown()  # stops exactly the processes this driver started
            if self.temp_dir:
                leftovers.remove_dir_when_released(self.temp_dir)
                leftovers.forget()


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Start Ray inside this to give its node the address 127.0.0.1, so that the GCS, the raylet,
    the workers' gRPC servers and the agents all listen on loopback only.

    Ray 2.60 replaces a node address of 127.0.0.1 by the machine's routable one (its
    `resolve_ip_for_localhost`) unless multi-node clusters are disabled, which is what
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` does. That setting is read into a module constant when
    Ray is imported, so the driver's copy is set here as well; processes Ray starts meanwhile
    inherit the variable. Only for the embedded instance: a driver joining a cluster must keep
    its routable address.
    """
    saved_env = os.environ.get(SINGLE_NODE_ENV)
    saved_constant = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_NODE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_env is None:
            os.environ.pop(SINGLE_NODE_ENV, None)
        else:
            os.environ[SINGLE_NODE_ENV] = saved_env


def start_or_join(address: str | None = None, num_cpus: int | None = None,
                  log_to_driver: bool = False) -> RayHandle:
    """`address=None`: reuse this process's Ray if already initialised, else start a private one.

    The private instance gets its own short temp dir (Ray's socket paths must stay < 108 bytes),
    listens on loopback only (`loopback_only`), and is started with `address="local"`, which
    never attaches to a cluster already running on the machine (plain `ray.init()` would).
    """
    if address == "emulated":  # `raympc cluster emulate up`'s cluster, joined with its token
        address, env = join_env(address)
        use_auth_env(env)
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", current):
            raise RayStartError(
                f"this process is already connected to Ray at {current}; cannot also join {address!r}"
            )
        return RayHandle(owned=False, address=current)
    if address is None:
        temp_dir = tempfile.mkdtemp(prefix="raympc-", dir="/tmp")
        cpus = max(num_cpus or os.cpu_count() or 1, MIN_EMBEDDED_CPUS)
        try:
            with loopback_only():
                ctx = ray.init(
                    address="local", num_cpus=cpus, _temp_dir=temp_dir, _node_ip_address="127.0.0.1",
                    include_dashboard=False, log_to_driver=log_to_driver, configure_logging=False,
                    namespace="raympc",
                )
        except Exception as exc:
            leftovers.remove_dir_when_released(temp_dir)  # a half-started Ray may still write into it
            raise RayStartError(f"could not start an embedded Ray instance: {exc}") from exc
        leftovers.record([temp_dir])  # so `raympc netsim reset` can undo a driver killed by SIGKILL
        return RayHandle(owned=True, address=ctx.address_info["gcs_address"], temp_dir=temp_dir)
    _check_reachable(address)
    try:
        ctx = ray.init(address=address, log_to_driver=log_to_driver, namespace="raympc")
    except Exception as exc:
        raise RayStartError(f"could not join the Ray cluster at {address!r}: {exc}") from exc
    return RayHandle(owned=True, address=ctx.address_info["gcs_address"])


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a GCS that is not there: ray.init would retry for a minute, then abort."""
    if address in ("auto", "local") or address.startswith(("ray://", "anyscale://")):
        return
    try:
        host, port = split_host_port(address)
    except ValueError:
        raise RayStartError(f"cannot parse Ray address {address!r}; expected host:port, 'auto' or ray://...") from None
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise RayStartError(f"no Ray cluster answers at {address}: {exc}") from exc


def alive_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]
