"""JAX -> SPU compilation with a cache keyed by the traced program itself.

The key is a hash of the lowered XLA module (plus input visibilities and compiler options), not of
the Python function object. JAX's own trace cache is keyed by function identity, so after an
activation is swapped (monkey-patched, or a policy context entered) it would serve the old trace;
we trace through a fresh wrapper each time, so whatever the function computes *now* is what gets
hashed and compiled. A stale program can therefore never be served.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np
import spu.libspu as libspu
from jax._src import source_info_util
from jax._src.lib import xla_client
from spu.utils import frontend as spu_frontend

from netsim import NetworkProfile
from raympc.runtime import fixed_point


@dataclass(frozen=True)
class ArgSpec:
    shape: tuple[int, ...]
    dtype: np.dtype

    def __str__(self) -> str:
        return f"{np.dtype(self.dtype).name}{list(self.shape)}"


@dataclass(frozen=True)
class CompiledProgram:
    """An SPU executable plus what the driver needs to feed and unpack it."""

    name: str
    key: str
    code: bytes
    in_specs: tuple[ArgSpec, ...]
    in_visibility: tuple[int, ...]
    in_tree: Any
    out_specs: tuple[ArgSpec, ...]
    out_tree: Any

    def executable(self, input_names: Sequence[str], output_names: Sequence[str]) -> libspu.Executable:
        return libspu.Executable(name=self.name, input_names=list(input_names),
                                 output_names=list(output_names), code=self.code)


# A stack of program transforms; the innermost (last) is applied to every program before it is
# traced. `raympc.activations.use` pushes one that swaps activations inside the traced program,
# so the runtime needs to know nothing of them.
TRACE_TRANSFORMS: list[Callable[[Callable], Callable]] = []


# The network a program is being traced for (its session's profile), so that an activation can
# take the form that is cheapest there (raympc's softmax: few rounds on a WAN, few bytes and
# little compute elsewhere); None while nothing is compiled for a session (plaintext runs).
_NETWORK: ContextVar[NetworkProfile | None] = ContextVar("raympc_target_network", default=None)


@contextmanager
def compiling_for(network: NetworkProfile | None) -> Iterator[None]:
    """Trace programs inside for `network` (see `target_network`)."""
    token = _NETWORK.set(network)
    try:
        yield
    finally:
        _NETWORK.reset(token)


def target_network() -> NetworkProfile | None:
    """The network the program being traced will run on, if it is traced for a session."""
    return _NETWORK.get()


def traced_form(fn: Callable) -> Callable:
    """`fn` as it will be traced: through the innermost transform, if any."""
    return TRACE_TRANSFORMS[-1](fn) if TRACE_TRANSFORMS else fn


def fresh(fn: Callable) -> Callable:
    """A new object that calls `fn`: JAX caches traces by function identity, so tracing this one
    sees whatever `fn` computes now (after an activation was swapped, say)."""

    @functools.wraps(fn)
    def wrapper(*a: Any) -> Any:
        return fn(*a)

    return wrapper


def location(eqn: Any) -> str:
    """Where a traced equation came from, without the install prefix
    ("flax/linen/normalization.py:201:8 (_normalize)")."""
    where = source_info_util.summarize(eqn.source_info)
    for marker in ("site-packages/", "dist-packages/"):
        if marker in where:
            return where.split(marker, 1)[1]
    return where


def _lower_to_xla(fn: Callable, args: Sequence[Any]) -> tuple[bytes, Any]:
    """Trace `fn` afresh and lower it to a serialized XLA module, as SPU's frontend does."""
    fn = traced_form(fn)

    with spu_frontend._jax_lock:  # the patches below are process-wide
        patches = spu_frontend._patch_jax()  # SPU's fixed-point-friendly lax patches (sort etc.)
        try:
            # SPU's own lowering (interpreter backend, keep_unused), pinned to spu 0.9.5.
            hlo, out_info = spu_frontend._jax_compilation(fresh(fn), (), None, list(args), {})
        finally:
            spu_frontend._restore_jax_patch(patches)
    return hlo, out_info


def _program_text(hlo: bytes) -> bytes:
    """The module as text without source-location metadata, so call sites do not split the cache."""
    opts = xla_client._xla.HloPrintOptions.short_parsable()
    opts.print_metadata = False
    opts.print_large_constants = True
    return xla_client.XlaComputation(hlo).get_hlo_module().to_string(opts).encode()


def _copts_fingerprint(copts: libspu.CompilerOptions) -> str:
    names = sorted(n for n in dir(copts) if not n.startswith("_") and not callable(getattr(copts, n)))
    return ";".join(f"{n}={getattr(copts, n)}" for n in names)


class ProgramCache:
    """Compiles on first sight of a (program, visibilities, options) triple; thread-safe."""

    def __init__(self) -> None:
        self._programs: dict[str, CompiledProgram] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._programs)

    def compile(
        self,
        fn: Callable,
        flat_specs: Sequence[ArgSpec],
        in_tree: Any,
        visibility: Sequence[int],
        copts: libspu.CompilerOptions,
        wide_products: bool = False,
        network: NetworkProfile | None = None,
    ) -> CompiledProgram:
        """`wide_products`: the runtime's field has room for products at twice the fraction bits
        (fixed_point.py); `network`: the profile the program will run on (`target_network`). The
        traced program, and so the cache key, may depend on both."""
        placeholders = [jax.ShapeDtypeStruct(s.shape, s.dtype) for s in flat_specs]
        args = jax.tree_util.tree_unflatten(in_tree, placeholders)
        with fixed_point.lowering(wide_products), compiling_for(network):
            hlo, out_info = _lower_to_xla(fn, args)
        key = hashlib.sha256(
            _program_text(hlo) + repr(tuple(int(v) for v in visibility)).encode() + _copts_fingerprint(copts).encode()
        ).hexdigest()
        with self._lock:
            cached = self._programs.get(key)
            if cached is not None:
                self.hits += 1
                return cached
        self.misses += 1
        source = libspu.CompilationSource(libspu.SourceIRType.XLA, hlo, [libspu.Visibility(v) for v in visibility])
        code = libspu.compile(source, copts)
        out_flat, out_tree = jax.tree_util.tree_flatten(out_info)
        name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "program")
        program = CompiledProgram(
            name=name, key=key, code=code, in_specs=tuple(flat_specs),
            in_visibility=tuple(int(v) for v in visibility), in_tree=in_tree,
            out_specs=tuple(ArgSpec(tuple(o.shape), np.dtype(o.dtype)) for o in out_flat), out_tree=out_tree,
        )
        with self._lock:
            self._programs.setdefault(key, program)
        return program
