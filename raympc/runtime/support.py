"""Which operations of a program SPU cannot compile, found before anything secure runs.

SPU compiles a JAX program through XLA into its own dialect, and some XLA operations have no
legalisation there (in SPU 0.9.5: `cbrt`, `fft`, ...). A model that uses one fails only when the
secure run compiles, and some (`fft`) abort the compiling process outright. So the probe compiles
in a child process: the whole program first, which is all it costs when everything is supported;
if that fails, every distinct operation on its own, to name each one SPU rejects with the source
location JAX recorded for it. SPU's compiler reports the rejected operation on stderr
("failed to legalize operation 'stablehlo.fft'"); the child marks which probe each report belongs
to, and a probe that kills the child is reported as such and the rest go to a fresh child.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import jax
import numpy as np

from raympc.runtime.compiler import _lower_to_xla, fresh, location, traced_form

MARK = "@@raympc-probe "
_LEGALIZE = re.compile(r"failed to legalize operation '([^']+)'")
TIMEOUT_S = 600


@dataclass(frozen=True)
class Unsupported:
    """An operation SPU's compiler rejects."""

    primitive: str  # the JAX primitive
    where: str  # its source location
    shape: tuple[int, ...]  # its first output's shape
    reason: str  # what SPU said ("failed to legalize operation 'stablehlo.fft'"), or how the compiler died

    def describe(self) -> str:
        return f"{self.primitive} {list(self.shape)} at {self.where}: {self.reason}"


def unsupported_ops(fn: Callable, *args: Any) -> list[Unsupported]:
    """Every operation of `fn(*args)`, as the session would compile it now (under the innermost
    `raympc.activations.use`), that SPU cannot compile; empty when the whole program compiles.

    Args:
        fn: a JAX function, as `Session.run` takes it.
        *args: example arguments (arrays or pytrees of them), or `jax.ShapeDtypeStruct`s.
    """
    specs = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype)
                                   if not isinstance(a, jax.ShapeDtypeStruct) else a, args)
    whole = (_lower_to_xla(fn, list(specs))[0], len(jax.tree_util.tree_leaves(specs)))
    if _compile_in_children([whole])[0] is None:
        return []
    jaxpr = jax.make_jaxpr(fresh(traced_form(fn)))(*specs).jaxpr
    probes: dict[tuple, Any] = {}
    for eqn in _leaves(jaxpr):
        key = (eqn.primitive.name, tuple(str(getattr(v, "aval", v)) for v in eqn.invars), repr(eqn.params))
        probes.setdefault(key, eqn)
    eqns = list(probes.values())
    verdicts = _compile_in_children([_lower_equation(e) for e in eqns])
    return [Unsupported(e.primitive.name, location(e), tuple(getattr(e.outvars[0].aval, "shape", ())), v)
            for e, v in zip(eqns, verdicts) if v is not None]


def as_dicts(found: list[Unsupported]) -> list[dict[str, Any]]:
    return [asdict(u) for u in found]


def _leaves(jaxpr) -> Iterator[Any]:
    """Every equation without a sub-program (those are probed through their insides)."""
    for eqn in jaxpr.eqns:
        subs = list(jax.core.jaxprs_in_params(eqn.params))
        if subs:
            for sub in subs:
                yield from _leaves(sub)
        else:
            yield eqn


def _lower_equation(eqn) -> tuple[bytes, int]:
    """One equation as its own XLA module: variables become arguments, literals stay constants."""
    inputs = [v for v in eqn.invars if not isinstance(v, jax.core.Literal)]
    specs = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in inputs]

    def one(*values):
        it = iter(values)
        operands = [v.val if isinstance(v, jax.core.Literal) else next(it) for v in eqn.invars]
        return eqn.primitive.bind(*operands, **eqn.params)

    return _lower_to_xla(one, specs)[0], len(specs)


def _compile_in_children(modules: list[tuple[bytes, int]]) -> list[str | None]:
    """Per module, None if SPU compiles it, else why not; a child that dies takes the blame for
    the module it was compiling and a fresh one goes on with the rest."""
    verdicts: list[str | None] = [None] * len(modules)
    start = 0
    while start < len(modules):
        child = subprocess.run([sys.executable, "-m", __name__], input=pickle.dumps(modules[start:]),
                               capture_output=True, timeout=TIMEOUT_S, check=False)
        reports = _reports(child.stderr.decode(errors="replace"))
        done = _parse(child.stdout.decode(errors="replace"), reports)
        for i, verdict in done.items():
            verdicts[start + i] = verdict
        if child.returncode == 0:
            break
        crashed = max(done, default=-1) + 1  # the one being compiled when the child died
        verdicts[start + crashed] = ("; ".join(reports.get(crashed, []))
                                     or f"SPU's compiler aborted (exit {child.returncode})")
        start += crashed + 1
    return verdicts


def _reports(stderr: str) -> dict[int, list[str]]:
    """The legalisation failures SPU printed, by probe."""
    out: dict[int, list[str]] = {}
    current = -1
    for line in stderr.splitlines():
        if line.startswith(MARK):
            current = int(line[len(MARK):])
        else:
            out.setdefault(current, []).extend(f"no SPU form for {op}" for op in _LEGALIZE.findall(line))
    return out


def _parse(stdout: str, reports: dict[int, list[str]]) -> dict[int, str | None]:
    """Each finished probe's verdict: None if it compiled, else SPU's reports for it (or its error)."""
    done: dict[int, str | None] = {}
    for line in stdout.splitlines():
        index, _, status = line.partition("\t")
        if index.isdigit():
            i = int(index)
            done[i] = None if status == "ok" else ("; ".join(reports.get(i, [])) or status)
    return done


def _child() -> None:
    """Compile each pickled (module, input count) from stdin; report each on stdout, mark each on stderr."""
    import spu.libspu as libspu  # deferred: the child needs only SPU's compiler, not JAX

    modules = pickle.loads(sys.stdin.buffer.read())
    options = libspu.CompilerOptions()
    for i, (module, inputs) in enumerate(modules):
        print(f"{MARK}{i}", file=sys.stderr, flush=True)
        # every input secret: the strictest case (a public one may fold at compile time)
        source = libspu.CompilationSource(libspu.SourceIRType.XLA, module, [libspu.Visibility.VIS_SECRET] * inputs)
        try:
            libspu.compile(source, options)
            print(f"{i}\tok", flush=True)
        except Exception as exc:  # noqa: BLE001 - any compiler error is the verdict
            print(f"{i}\t{str(exc).splitlines()[0][:200]}", flush=True)


if __name__ == "__main__":
    _child()
