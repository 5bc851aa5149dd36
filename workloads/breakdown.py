"""Cost by layer kind: which part of a secure model step moves the bytes and takes the time.

SPU profiles by operation (`pphlo.multiply`, `pphlo.less`, ...), and a SiLU, a GroupNorm and an
attention all lower to the same operations, so the op profile cannot say which *layer* cost what.
We therefore trace the step once with abstract values, record every layer call it makes, then run
each kind's calls on their own under MPC, with the same shapes, the same activation
implementations and secret inputs and weights:

- `conv/matmul`: flax `Conv`, `ConvTranspose`, `Dense`, `DenseGeneral`, `Einsum`;
- `groupnorm`: `GroupNorm`, `LayerNorm`;
- `activation`: SiLU, Mish, GeLU, with the implementations the policy runs; SiLU and GeLU are
  found in the traced program, so a model that bound its own (a Flax field, a dict) counts too;
- `attention`: whole self/cross-attention modules (projections, scores, softmax, weighted sum),
  and the layers inside them are not counted again;
- `other`: the step's total minus the four kinds (linear glue: residual sums, resizes, the
  sampler's update, the time and label embeddings' additions).

Secure op costs depend on shapes only, so the kinds' bytes and send actions are exact; "other" is
what the isolation does not capture. Weight values are random (cost does not depend on them).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import numpy as np

from raympc.activations import active
from raympc.activations.coverage import ELEMENTWISE_KINDS, elementwise_sites
from raympc.runtime.values import Secret

KINDS = ("conv/matmul", "groupnorm", "activation", "attention")
ALL_KINDS = KINDS + ("other",)

_MODULE_KINDS = {
    "Conv": "conv/matmul", "ConvTranspose": "conv/matmul", "Dense": "conv/matmul",
    "DenseGeneral": "conv/matmul", "Einsum": "conv/matmul",
    "GroupNorm": "groupnorm", "LayerNorm": "groupnorm",
}
# Attention modules by class name: ours (MNIST U-Net) and diffusers' Flax attention.
_ATTENTION_CLASSES = {"Attention", "FlaxAttention"}


def module_kind(module: Any) -> str | None:
    name = type(module).__name__
    if name in _ATTENTION_CLASSES:
        return "attention"
    return _MODULE_KINDS.get(name)


@dataclass
class LayerCall:
    """One recorded layer call: enough to replay it alone on inputs of the same shapes."""

    kind: str
    name: str
    apply: Callable[[Any, list], Any]  # (params, array arguments) -> output
    params: Any  # pytree of jax.ShapeDtypeStruct (None for activations)
    arrays: list  # jax.ShapeDtypeStruct of each array argument, in call order
    features: dict[str, int] = field(default_factory=dict)  # sizes a cost model scales with (incl. output elements)


@dataclass
class _Recorder:
    calls: list[LayerCall] = field(default_factory=list)
    depth_inside: int = 0  # > 0 while inside a recorded layer (its inner layers are not recorded)
    # Activation inputs already recorded: XLA computes an activation of the same value once
    # (the U-Net applies SiLU to the same time embedding in every block).
    seen: list[tuple[str, Any]] = field(default_factory=list)


_state = threading.local()


def _is_array(v: Any) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype")


def _abstract(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype) if _is_array(v) else v, tree)


def _split_call(args: tuple, kwargs: dict) -> tuple[list, Callable[[list], tuple[tuple, dict]]]:
    """Traced arguments (secret in the replay) apart from everything else.

    Values the step derived from its public inputs alone are concrete while tracing; they stay
    constants of the replay, so public-times-secret layers are not costed as secret-times-secret.
    """
    leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
    where = [i for i, v in enumerate(leaves) if isinstance(v, jax.core.Tracer)]
    static = [None if i in where else v for i, v in enumerate(leaves)]

    def rebuild(arrays: list) -> tuple[tuple, dict]:
        filled = list(static)
        for i, a in zip(where, arrays):
            filled[i] = a
        return jax.tree_util.tree_unflatten(tree, filled)

    return [jax.ShapeDtypeStruct(leaves[i].shape, leaves[i].dtype) for i in where], rebuild


def _elements(out: Any) -> int:
    return int(sum(np.prod(v.shape) for v in jax.tree_util.tree_leaves(out) if _is_array(v)))


def _interceptor(next_fun, args, kwargs, context):
    rec: _Recorder | None = getattr(_state, "recorder", None)
    kind = module_kind(context.module) if context.method_name == "__call__" else None
    if rec is None or kind is None or rec.depth_inside:
        return next_fun(*args, **kwargs)
    module = context.module
    unbound = module.clone(parent=None, name=None)
    variables = module.variables
    rec.depth_inside += 1
    try:
        out = next_fun(*args, **kwargs)
    finally:
        rec.depth_inside -= 1

    arrays, rebuild = _split_call(tuple(args), dict(kwargs))

    def apply(params, call_arrays, _m=unbound, _rebuild=rebuild):
        a, kw = _rebuild(call_arrays)
        return _m.apply(params, *a, **kw)

    rec.calls.append(LayerCall(kind, type(module).__name__, apply, _abstract(dict(variables)), arrays,
                               _features(kind, module, args, kwargs, out)))
    return out


def _features(kind: str, module: Any, args: tuple, kwargs: dict, out: Any) -> dict[str, int]:
    """Sizes a layer's secure cost grows with: output elements, normalisation statistics, and for
    attention the score matrix, its rows (softmax and its reciprocal) and `depth`, ceil(log2(keys)):
    a row max compares level by level, and the levels' messages follow one another, so an
    attention's send actions grow with the depth of a pairwise tree over its rows (a tournament's
    levels grow with it too, more slowly; the cost model fits by how much)."""
    elements = _elements(out)
    x = args[0] if args else kwargs.get("hidden_states")
    f = {"elements": elements}
    if kind == "groupnorm":
        groups = getattr(module, "num_groups", None)
        f["stats"] = x.shape[0] * groups if groups else elements // x.shape[-1]
    elif kind == "attention":
        heads = getattr(module, "heads", 1)
        tq = int(np.prod(x.shape[1:-1]))
        context = kwargs.get("context", args[1] if len(args) > 1 else None)
        tk = int(np.prod(context.shape[1:-1])) if _is_array(context) else tq
        f["scores"] = x.shape[0] * heads * tq * tk
        f["rows"] = x.shape[0] * heads * tq
        f["depth"] = int(np.ceil(np.log2(tk))) if tk > 1 else 0
    return f


def _wrap_activation(name: str, fn: Callable) -> Callable:
    """`fn`, recording each call as an activation layer (outside recorded layers, once per input)."""
    def recorded(x, *a, **kw):
        rec: _Recorder | None = getattr(_state, "recorder", None)
        if rec is None or rec.depth_inside:
            return fn(x, *a, **kw)
        if any(n == name and seen is x for n, seen in rec.seen):
            return fn(x, *a, **kw)
        rec.seen.append((name, x))
        rec.depth_inside += 1
        try:
            out = fn(x, *a, **kw)
        finally:
            rec.depth_inside -= 1
        arrays, rebuild = _split_call((x, *a), kw)

        def apply(_params, call_arrays, _f=fn, _rebuild=rebuild):
            args, kwargs = _rebuild(call_arrays)
            return _f(*args, **kwargs)

        rec.calls.append(LayerCall("activation", name, apply, None, arrays, {"elements": _elements(out)}))
        return out

    return recorded


@contextlib.contextmanager
def _recording() -> Iterator[_Recorder]:
    """Record module calls, and activations looked up through `activations.current` (Mish); SiLU
    and GeLU come from the traced program (`_elementwise_calls`), however the model bound them."""
    rec = _Recorder()
    current = active.current

    def watched(activation: str) -> Callable:
        fn = current(activation)
        return fn if activation in ELEMENTWISE_KINDS else _wrap_activation(activation, fn)

    try:
        active.current = watched
        _state.recorder = rec
        with nn.intercept_methods(_interceptor):
            yield rec
    finally:
        _state.recorder = None
        active.current = current


def _elementwise_calls(fn: Callable, args: tuple) -> list[LayerCall]:
    """Every SiLU and GeLU of `fn(*args)`, replayed with the current policy's implementation."""
    calls = []
    for kind, spec in elementwise_sites(fn, *args):
        impl = active.current(kind)
        calls.append(LayerCall("activation", kind, lambda _params, arrays, _f=impl: _f(arrays[0]), None, [spec],
                               {"elements": int(np.prod(spec.shape))}))
    return calls


def record_layers(fn: Callable, *example_args: Any, public: tuple[int, ...] = ()) -> list[LayerCall]:
    """Trace `fn` abstractly (no compute) and return its layer calls in call order.

    `public` names the positions of public arguments (their values are used, as in the secure
    run). Call it inside the same `raympc.activations.use(...)` as the secure run, so activation
    calls replay with the implementation the run used.
    """
    traced = [i for i in range(len(example_args)) if i not in public]

    def partial(*secret_args):
        full = list(example_args)
        for i, a in zip(traced, secret_args):
            full[i] = a
        return fn(*full)

    secret = tuple(example_args[i] for i in traced)
    with _recording() as rec:
        jax.eval_shape(partial, *secret)
    return rec.calls + _elementwise_calls(partial, secret)


def _random_like(tree: Any, rng: np.random.Generator) -> Any:
    return jax.tree_util.tree_map(
        lambda s: (rng.standard_normal(s.shape) * 0.5).astype(s.dtype) if isinstance(s, jax.ShapeDtypeStruct) else s,
        tree)


def kind_program(calls: list[LayerCall]) -> Callable:
    """One program that replays `calls`, every output kept secret."""

    def program(params_list, arrays_list):
        return [c.apply(p, a) for c, p, a in zip(calls, params_list, arrays_list)]

    return program


def measure_kinds(session, calls: list[LayerCall], seed: int = 0) -> dict[str, dict[str, float]]:
    """Run each kind's recorded calls alone on the session: bytes, send actions and time per kind."""

    rng = np.random.default_rng(seed)
    result: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        mine = [c for c in calls if c.kind == kind]
        if not mine:
            result[kind] = {"calls": 0, "time_s": 0.0, "send_bytes": 0, "send_actions": 0, "elements": 0}
            continue
        params = [_random_like(c.params, rng) if c.params is not None else {} for c in mine]
        args = [_random_like(c.arrays, rng) for c in mine]
        run = session.run(kind_program(mine), Secret(params, owner="model"), Secret(args, owner="user"),
                          reveal_to=None)
        m = run.metrics
        result[kind] = {"calls": len(mine), "time_s": m.wall_time_s, "send_bytes": m.send_bytes,
                        "send_actions": m.send_actions, "elements": sum(c.features["elements"] for c in mine)}
        session.free(run.outputs)
    return result


def with_other(kinds: dict[str, dict[str, float]], total: dict[str, float]) -> dict[str, dict[str, float]]:
    """Add the `other` row (total minus the kinds) and each kind's share of the total."""
    out = {k: dict(v) for k, v in kinds.items()}
    out["other"] = {key: total[key] - sum(v[key] for v in kinds.values())
                    for key in ("time_s", "send_bytes", "send_actions")}
    for v in out.values():
        v["bytes_share"] = v["send_bytes"] / total["send_bytes"] if total["send_bytes"] else 0.0
        v["time_share"] = v["time_s"] / total["time_s"] if total["time_s"] else 0.0
    return out
