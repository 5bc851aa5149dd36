"""SPU's in-process simulation (three runtimes on threads, memory links): an independent check.

It shares nothing with the Ray path but the compiled program: no actors, no brpc, no per-party log
files. It runs inside one Ray task so its process-wide SPU logging stays out of the driver.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import ray

from .compiler import CompiledProgram
from .config import SpuConfig

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
    import spu
    import spu.libspu as libspu

    cfg = spu_config.runtime_config()
    n = spu_config.parties
    io = spu.Io(n, cfg)
    shares = [io.make_shares(a, libspu.Visibility(v)) for a, v in zip(arrays, program.in_visibility)]
    in_names = [f"in{i}" for i in range(len(arrays))]
    out_names = [f"out{i}" for i in range(len(program.out_specs))]
    executable = program.executable(in_names, out_names)
    log_path = os.path.join(tempfile.mkdtemp(prefix="raympc-ref-"), "reference.log")
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
