"""SPU's in-process simulation (three runtimes on threads, memory links): an independent check.

It shares nothing with the Ray path but the compiled program: no actors, no brpc, no per-party log
files. It runs inside one Ray task so its process-wide SPU logging stays out of the driver.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import ray
import spu
import spu.libspu as libspu

from netsim.sockets import split_host_port
from raympc.runtime.compiler import CompiledProgram
from raympc.runtime.config import LinkConfig, SpuConfig
from raympc.runtime.party import Party

_LINK_RE = re.compile(r"Link details: total send bytes (\d+), recv bytes \d+, send actions (\d+)")


@dataclass
class ReferenceResult:
    outputs: list[np.ndarray]
    wall_time_s: float
    send_bytes: int
    send_actions: int
    per_rank_bytes: list[int]


def simulate(program: CompiledProgram, arrays: Sequence[np.ndarray], spu_config: SpuConfig) -> ReferenceResult:
    """Run `program` on `arrays` in this process; figures summed from every rank's profile."""

    cfg = spu_config.runtime_config()
    n = spu_config.parties
    io = spu.Io(n, cfg)
    shares = [io.make_shares(a, libspu.Visibility(v)) for a, v in zip(arrays, program.in_visibility)]
    in_names = [f"in{i}" for i in range(len(arrays))]
    out_names = [f"out{i}" for i in range(len(program.out_specs))]
    executable = program.executable(in_names, out_names)
    log_dir = tempfile.mkdtemp(prefix="raympc-ref-")
    log_path = os.path.join(log_dir, "reference.log")
    opts = libspu.logging.LogOptions()
    opts.system_log_path = log_path
    opts.enable_console_logger = False
    libspu.logging.setup_logging(opts)

    desc = libspu.link.Desc()
    for r in range(n):
        desc.add_party(f"party{r}", f"thread{r}")
    runtimes: list = [None] * n
    outs: list = [None] * n
    errors: list = []

    def connect(rank: int) -> None:
        runtimes[rank] = spu.Runtime(libspu.link.create_mem(desc, rank), cfg)
        for name, share in zip(in_names, shares):
            runtimes[rank].set_var(name, share[rank])

    def run(rank: int) -> None:
        try:
            runtimes[rank].run(executable)
            outs[rank] = [runtimes[rank].get_var(o) for o in out_names]
        except Exception as exc:  # noqa: BLE001 - re-raised below in the caller's thread
            errors.append(exc)

    def on_threads(target) -> None:
        threads = [threading.Thread(target=target, args=(r,)) for r in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    on_threads(connect)
    start = time.perf_counter()
    on_threads(run)
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    with open(log_path) as f:
        links = [(int(b), int(a)) for b, a in _LINK_RE.findall(f.read())]
    shutil.rmtree(log_dir, ignore_errors=True)
    if len(links) != n:
        raise RuntimeError(f"expected {n} 'Link details' lines in the reference log, found {len(links)}")
    outputs = [io.reconstruct([outs[r][i] for r in range(n)]).reshape(spec.shape)
               for i, spec in enumerate(program.out_specs)]
    return ReferenceResult(outputs=outputs, wall_time_s=wall, send_bytes=sum(b for b, _ in links),
                           send_actions=sum(a for _, a in links), per_rank_bytes=[b for b, _ in links])


def simulate_in_ray(program: CompiledProgram, arrays: Sequence[np.ndarray], spu_config: SpuConfig,
                    threads_per_party: int = 1) -> ReferenceResult:
    """`simulate` in a fresh Ray worker with the same yacl thread count per party.

    It reserves no CPU: it measures, and must run even while a session holds every CPU.
    """
    env = {"YACL_NUM_THREADS": str(threads_per_party), "OMP_NUM_THREADS": str(threads_per_party)}
    task = ray.remote(simulate).options(num_cpus=0, runtime_env={"env_vars": env}, max_retries=0)
    return ray.get(task.remote(program, list(arrays), spu_config))


def _brpc_worker(rank: int, addresses: list[str], program: CompiledProgram, share_blobs: list,
                 spu_config: SpuConfig, link_config, repeats: int, barrier) -> list[float]:
    os.environ.setdefault("YACL_NUM_THREADS", "1")

    log_dir = tempfile.mkdtemp(prefix=f"raympc-brpc{rank}-")
    party = Party(rank, spu_config, link_config, log_dir)
    party.choose_port(*split_host_port(addresses[rank]))
    party.connect(addresses)
    names = [f"in{i}" for i in range(len(share_blobs))]
    for name, share in zip(names, share_blobs):
        party.set_share(name, share)
    outs = [f"out{i}" for i in range(len(program.out_specs))]
    times = []
    for i in range(repeats + 1):  # the first run warms connections and caches
        barrier.wait()
        start = time.perf_counter()
        party.run(program.key, program.code if i == 0 else None, program.name, names, outs, [])
        times.append(time.perf_counter() - start)
    shutil.rmtree(log_dir, ignore_errors=True)
    return times[1:]


def simulate_brpc_processes(program: CompiledProgram, arrays: Sequence[np.ndarray], spu_config: SpuConfig,
                            repeats: int = 3) -> list[float]:
    """The same three parties and brpc links as a session, in plain processes without Ray.

    Separates what Ray's hosting costs from what SPU's link costs. Returns, per repeat, the
    slowest rank's run time.
    """

    n = spu_config.parties
    io = spu.Io(n, spu_config.runtime_config())
    shares = [io.make_shares(a, libspu.Visibility(v)) for a, v in zip(arrays, program.in_visibility)]
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    addresses = [f"127.0.0.1:{p}" for p in ports]
    ctx = mp.get_context("spawn")  # never fork a process that runs JAX threads
    with ctx.Manager() as manager, ProcessPoolExecutor(n, mp_context=ctx) as pool:
        barrier = manager.Barrier(n)
        futures = [pool.submit(_brpc_worker, r, addresses, program, [s[r] for s in shares], spu_config,
                               LinkConfig(), repeats, barrier) for r in range(n)]
        per_rank = [f.result(timeout=600) for f in futures]
    return [max(t) for t in zip(*per_rank)]
