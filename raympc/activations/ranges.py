"""Values a program makes that SPU's fixed point cannot hold, found by a plaintext dry run.

Under FM64 with 18 fraction bits a secret is an integer of 64 bits scaled by 2^-18, and a product
of two is formed before its truncation: operands whose product reaches 2^27 wrap the ring. A model
in floats does not care, so common code does not either: attention masks of -1e9 or
`finfo(float32).min`, or an -inf. This module evaluates a function's traced program equation by
equation in the clear and reports every input, constant and intermediate beyond the safe range,
with the operation and the source location that made it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import jax
import numpy as np

from raympc.activations.rewrite import evaluate
from raympc.runtime.compiler import fresh, location

# Beyond this magnitude a value times anything of magnitude 2 or more overflows FM64's product
# bound (2^27 with 18 fraction bits on each operand).
SAFE_LIMIT = 2.0 ** 26


@dataclass(frozen=True)
class Finding:
    """One operation that made (or one input that holds) values beyond the fixed point's range."""

    what: str  # "input 2", "constant", or the primitive's name
    where: str
    shape: tuple[int, ...]
    largest: float  # the largest magnitude seen (inf for infinities); NaN is reported as nan

    def describe(self) -> str:
        return f"{self.what} at {self.where}: |value| up to {self.largest:.3g} (shape {list(self.shape)})"


def _magnitude(value: Any) -> float | None:
    arr = np.asarray(value)
    if arr.dtype.kind != "f" or arr.size == 0:
        return None
    if np.isnan(arr).any():
        return float("nan")
    return float(np.abs(arr).max())


def _beyond(m: float | None, limit: float) -> bool:
    return m is not None and (m != m or m >= limit)


def out_of_range(fn: Callable, *args: Any, limit: float = SAFE_LIMIT) -> list[Finding]:
    """Every input, constant and intermediate of `fn(*args)` with a magnitude of `limit` or more.

    Args:
        fn: a JAX function.
        *args: example arguments (the values matter: a mask is only large where it is set).
        limit: the magnitude to report from (default: FM64's safe range, 2^26).

    Returns:
        One finding per operation and source location, in program order.
    """
    closed = jax.make_jaxpr(fresh(fn))(*args)
    findings: dict[tuple[str, str], Finding] = {}

    def note(what: str, where: str, value: Any) -> None:
        m = _magnitude(value)
        if _beyond(m, limit):
            key = (what, where)
            old = findings.get(key)
            if old is None or not (old.largest >= m):
                findings[key] = Finding(what, where, tuple(np.shape(value)), m)

    def constants(values: list[Any]) -> None:
        for c in values:
            note("constant", "a captured constant", c)

    def observe(eqn, outs: list[Any]) -> None:
        where = location(eqn)
        for v in eqn.invars:
            # -inf as max's identity (jax.nn.softmax's row max starts from it) never meets a product
            identity = eqn.primitive.name in ("max", "min") and np.isinf(np.asarray(v.val, float)).all() \
                if isinstance(v, jax.core.Literal) else False
            if isinstance(v, jax.core.Literal) and not identity:
                note("constant", where, v.val)
        if eqn.primitive.name != "pjit":  # a jitted call's values were noted inside it, op by op
            for out in outs:
                note(eqn.primitive.name, where, out)

    flat = jax.tree_util.tree_leaves(args)
    for i, value in enumerate(flat):
        note(f"input {i}", "the arguments", value)
    evaluate(closed.jaxpr, closed.consts, flat, observe=observe, constants=constants)
    return list(findings.values())


def as_dicts(findings: list[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in findings]
