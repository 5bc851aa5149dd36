"""One SPU party: a runtime, its link and its profile log, hosted by a Ray actor.

The class is plain Python so it can be unit-tested in-process; `Session` wraps it with `ray.remote`.
Every method that blocks in SPU (link set-up, runs) releases the GIL inside libspu.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict
from typing import Any

import ray
import spu.libspu as libspu
from spu import Runtime

from raympc.cluster.ports import free_port, port_is_free
from raympc.errors import ConfigError, LinkSetupError, PortInUseError
from raympc.runtime.config import LinkConfig, SpuConfig
from raympc.runtime.metrics import parse_profile_log
from raympc.runtime.tls import PartyCredentials


class Party:
    def __init__(self, rank: int, spu_config: SpuConfig, link_config: LinkConfig, log_dir: str) -> None:
        self.rank = rank
        self.spu_config = spu_config
        self.link_config = link_config
        self.host = link_config.bind_host or ""
        os.makedirs(log_dir, exist_ok=True)
        self.log_path = os.path.join(log_dir, f"party{rank}.log")
        opts = libspu.logging.LogOptions()
        opts.system_log_path = self.log_path
        # Profiles must come from this file, never from Ray's deduplicated stdout.
        opts.enable_console_logger = False
        libspu.logging.setup_logging(opts)
        self._runtime: Runtime | None = None
        self._link: Any = None
        self._programs: dict[str, bytes] = {}
        self._received: dict[str, bytes] = {}
        self._vars: set[str] = set()
        self.port: int | None = None

    # -- set-up -----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {
            "rank": self.rank, "host": self.host, "node_id": ctx.get_node_id(), "pid": os.getpid(),
            "hostname": socket.gethostname(), "yacl_threads": os.environ.get("YACL_NUM_THREADS"),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "log_path": self.log_path,
        }

    def choose_port(self, host: str, port: int | None) -> str:
        """Pick (or check) this party's listening port on its own node; returns host:port."""
        self.host = self.link_config.bind_host or host
        if port is None:
            port = free_port(self.host)
        elif not port_is_free(self.host, port):
            raise PortInUseError(self.rank, self.host, port)
        self.port = port
        return f"{self.host}:{port}"

    def connect(self, addresses: list[str], tls: "PartyCredentials | None" = None) -> float:
        """Create the brpc link. Blocks until every peer is connected, so all ranks call it at once."""
        desc = self.link_config.desc()
        for i, addr in enumerate(addresses):
            desc.add_party(f"party{i}", addr)
        # brpc reads the PEM files while the link is created; generated keys are deleted right after.
        tls_dir = tempfile.mkdtemp(prefix=f"raympc-tls-party{self.rank}-") if tls is not None else None
        start = time.perf_counter()
        try:
            if tls is not None:
                tls.apply(desc, tls_dir)
            self._link = libspu.link.create_brpc(desc, self.rank)
        except ConfigError:
            raise
        except Exception as exc:
            if self.port is not None and not port_is_free(self.host, self.port) and "bind" in str(exc).lower():
                raise PortInUseError(self.rank, self.host, self.port) from exc
            raise LinkSetupError(f"party {self.rank}: link set-up failed: {exc}") from exc
        finally:
            if tls_dir is not None:
                shutil.rmtree(tls_dir, ignore_errors=True)
        self._runtime = Runtime(self._link, self.spu_config.runtime_config())
        return time.perf_counter() - start

    # -- values -----------------------------------------------------------------------------
    def set_share(self, name: str, share: libspu.Share) -> None:
        self._received[name] = share.meta + b"".join(share.share_chunks)
        self._rt().set_var(name, share)
        self._vars.add(name)

    def get_shares(self, names: list[str]) -> list[libspu.Share]:
        return [self._rt().get_var(n) for n in names]

    def delete(self, names: list[str]) -> None:
        for n in names:
            if n in self._vars:
                self._rt().del_var(n)
                self._vars.discard(n)
            self._received.pop(n, None)

    def received_bytes(self) -> dict[str, bytes]:
        """Everything this party was sent as input shares (for leak tests)."""
        return dict(self._received)

    # -- runs -------------------------------------------------------------------------------
    def run(self, key: str, code: bytes | None, name: str, inputs: list[str], outputs: list[str],
            free: list[str]) -> dict[str, Any]:
        self.delete(free)
        if code is not None:
            self._programs[key] = code
        executable = libspu.Executable(name=name, input_names=inputs, output_names=outputs,
                                       code=self._programs[key])
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self._rt().run(executable)
        self._vars.update(outputs)
        with open(self.log_path, "r", errors="replace") as f:
            f.seek(offset)
            lines = f.read().splitlines()
        metrics = parse_profile_log(lines, self.rank, self.host)
        return asdict(metrics)

    def stall(self, seconds: float) -> None:
        """Fault injection: block this party (the actor runs one method at a time)."""
        time.sleep(seconds)

    def _rt(self) -> Runtime:
        if self._runtime is None:
            raise LinkSetupError(f"party {self.rank}: not connected")
        return self._runtime
