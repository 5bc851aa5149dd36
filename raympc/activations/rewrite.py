"""Swap activations inside the traced program, wherever and however the model bound them.

`use()` rebinds the names models look up when they run. A model that captured its activation
earlier (a dataclass field default, a dict built at import such as transformers' `ACT2FN`, a
`functools.partial`, a closure) still calls the stock function, and its traced program shows it:
jax.nn's SiLU as a jitted call named `silu`, GeLU as tanh of a cubic (or its `erfc` form), softmax
as `exp(x - stop_gradient(max x)) / sum`. `rewrite(fn, mapping)` traces `fn`, finds those call
sites and evaluates the program with each replaced by the mapping's implementation, so the
compiled program computes the secure form everywhere. The stock forms' operations that no longer
feed anything are dropped by XLA before SPU compiles. Sites it cannot recognise stay stock, and
the coverage report lists them as missed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import jax
from jax._src import source_info_util
from jax._src.interpreters import partial_eval as pe

from raympc.activations.registry import get
from raympc.runtime.compiler import fresh

ELEMENTWISE = ("mul", "add", "sub", "copy", "div", "neg", "convert_element_type")


@dataclass(frozen=True)
class _Site:
    kind: str
    x: Any  # the input variable the activation applies to
    axis: int | None = None  # softmax's


def cubes(eqn) -> bool:
    """x^3, as `x ** 3` (integer_pow) or `jnp.power(x, 3.0)` (pow with a literal 3)."""
    if eqn.primitive.name == "integer_pow":
        return eqn.params.get("y") == 3
    return eqn.primitive.name == "pow" and isinstance(eqn.invars[1], jax.core.Literal) and eqn.invars[1].val == 3


def _consumers(jaxpr) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if isinstance(v, jax.core.Var):
                out.setdefault(v, []).append(eqn)
    return out


def _producers(jaxpr) -> dict[Any, Any]:
    return {v: eqn for eqn in jaxpr.eqns for v in eqn.outvars}


def _is_var(v: Any) -> bool:
    return isinstance(v, jax.core.Var)


def upstream(var: Any, producers: dict[Any, Any], depth: int) -> Iterator[Any]:
    """The equations that produced `var`, level by level, up to `depth` levels back."""
    frontier = [var]
    for _ in range(depth):
        nxt = []
        for v in frontier:
            eqn = producers.get(v) if _is_var(v) else None
            if eqn is not None:
                yield eqn
                nxt += eqn.invars
        frontier = nxt


def cubic_tanh(eqn, producers: dict[Any, Any]) -> bool:
    """tanh(c (x + 0.044715 x^3)): GeLU's tanh form, however it was written."""
    return eqn.primitive.name == "tanh" and any(cubes(e) for e in upstream(eqn.invars[0], producers, 4))


def _ancestors(var: Any, producers: dict[Any, Any], depth: int) -> set[Any]:
    """The variables `var` was computed from, up to `depth` levels back."""
    return {w for eqn in upstream(var, producers, depth) for w in eqn.invars if _is_var(w)}


def _scaled(v: Any, xs: set[Any], producers: dict[Any, Any]) -> Any | None:
    """`v` if it is in `xs`, or x when v = x * constant (0.5 x in 0.5 x (1 + tanh ...))."""
    if not _is_var(v):
        return None
    if v in xs:
        return v
    eqn = producers.get(v)
    if eqn is not None and eqn.primitive.name == "mul":
        a, b = eqn.invars
        if _is_var(a) and a in xs and not _is_var(b):
            return a
        if _is_var(b) and b in xs and not _is_var(a):
            return b
    return None


def _gelu_root(start: Any, ancestors: set[Any], consumers, producers) -> tuple[Any, Any] | None:
    """From a GeLU's tanh/erfc output, the multiply by x that ends it: (root variable, x)."""
    frontier = [start]
    for _ in range(4):
        nxt = []
        for v in frontier:
            for eqn in consumers.get(v, []) if _is_var(v) else []:
                if eqn.primitive.name not in ELEMENTWISE:
                    continue
                if eqn.primitive.name == "mul":
                    for here, other in ((eqn.invars[0], eqn.invars[1]), (eqn.invars[1], eqn.invars[0])):
                        x = _scaled(other, ancestors, producers) if here is v else None
                        if x is not None:
                            return eqn.outvars[0], x
                nxt += eqn.outvars
        frontier = nxt
    return None


def _softmax_root(div, producers) -> _Site | None:
    """`div(e, broadcast(reduce_sum e))` with e = exp(x - broadcast(stop_gradient(max x)))."""
    e, total = div.invars
    exp = producers.get(e) if _is_var(e) else None
    if exp is None or exp.primitive.name != "exp":
        return None
    if not any(q.primitive.name == "reduce_sum" and q.invars[0] is e for q in upstream(total, producers, 3)):
        return None  # divided by something other than the exponentials' own sum
    sub = producers.get(exp.invars[0])
    if sub is None or sub.primitive.name != "sub":
        return None
    x = sub.invars[0]
    chain = sub.invars[1]
    seen = []
    for _ in range(5):
        eqn = producers.get(chain) if _is_var(chain) else None
        if eqn is None:
            break
        seen.append(eqn)
        if eqn.primitive.name == "reduce_max":
            axes = eqn.params["axes"]
            if eqn.invars[0] is x and len(axes) == 1 and any(q.primitive.name == "stop_gradient" for q in seen):
                return _Site("softmax", x, axes[0])
            return None
        chain = eqn.invars[0]
    return None


def _sites(jaxpr) -> dict[Any, _Site]:
    """Root variable -> the activation that the equations ending there compute."""
    producers, consumers = _producers(jaxpr), _consumers(jaxpr)
    found: dict[Any, _Site] = {}
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "pjit" and eqn.params.get("name") in ("silu", "swish"):
            found[eqn.outvars[0]] = _Site("silu", eqn.invars[0])
        elif name == "div":
            site = _softmax_root(eqn, producers)
            if site is not None:
                found[eqn.outvars[0]] = site
        elif name == "erfc" or cubic_tanh(eqn, producers):
            ancestors = _ancestors(eqn.invars[0], producers, 5)
            root = _gelu_root(eqn.outvars[0], ancestors, consumers, producers)
            if root is not None:
                found[root[0]] = _Site("gelu_tanh" if name == "tanh" else "gelu_erf", root[1])
    return found


Replacements = Callable[[Any], dict[Any, Callable[[Callable[[Any], Any]], Any]]]
# Calls whose insides are evaluated in line (parameter holding the sub-program): their sites are
# the model's like any other, and for inference a custom derivative or a remat changes nothing.
INLINED = {"pjit": "jaxpr", "closed_call": "call_jaxpr", "custom_jvp_call": "call_jaxpr",
           "custom_vjp_call_jaxpr": "fun_jaxpr", "checkpoint": "jaxpr"}
Observer = Callable[[Any, list[Any]], None]


def evaluate(jaxpr, consts, args, replacements: Replacements | None = None, observe: Observer | None = None,
             constants: Callable[[list[Any]], None] | None = None) -> list[Any]:
    """Evaluate `jaxpr` equation by equation, entering jitted calls, as `jax.core.eval_jaxpr` does.

    Args:
        jaxpr, consts, args: the program, its captured constants and its (flat) arguments; values
            may be tracers, so evaluating inside a trace re-traces the program.
        replacements: for each (sub-)program, root variable -> a function of `read` computing that
            variable instead of its equation.
        observe: called with each equation and its outputs (a jitted call's after its insides).
        constants: called with each (sub-)program's captured constants.

    Returns:
        The program's outputs.
    """
    env: dict[Any, Any] = {}

    def read(v):
        return v.val if isinstance(v, jax.core.Literal) else env[v]

    if constants is not None:
        constants(list(consts))
    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    replace = replacements(jaxpr) if replacements is not None else {}
    for eqn in jaxpr.eqns:
        compute = replace.get(eqn.outvars[0]) if len(eqn.outvars) == 1 else None
        if compute is not None:
            env[eqn.outvars[0]] = compute(read)
            continue
        invals = [read(v) for v in eqn.invars]
        inlined = INLINED.get(eqn.primitive.name)
        if inlined is not None:  # a jitted helper (or a custom-derivative one) may hold sites of its own
            sub = eqn.params[inlined]
            closed = (sub.jaxpr, sub.consts) if hasattr(sub, "consts") else (sub, [])
            outs = evaluate(*closed, invals, replacements, observe, constants)
        elif eqn.primitive.name == "scan" and replacements is not None:
            outs = _scan(eqn, invals, replacements)
        else:
            # keep the model's source location on what is re-traced (error messages, coverage)
            subfuns, params = eqn.primitive.get_bind_params(eqn.params)
            with source_info_util.user_context(eqn.source_info.traceback):
                outs = eqn.primitive.bind(*subfuns, *invals, **params)
            outs = outs if eqn.primitive.multiple_results else [outs]
        if observe is not None:
            observe(eqn, outs)
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def _scan(eqn, invals: list[Any], replacements: Replacements) -> list[Any]:
    """A `lax.scan` whose body has its sites replaced: the body is re-traced through `evaluate`,
    and what the implementations capture (their coefficients) enters as extra leading constants."""
    body = eqn.params["jaxpr"]
    avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in body.in_avals]
    new = jax.make_jaxpr(lambda *a: evaluate(body.jaxpr, body.consts, list(a), replacements))(*avals)
    extra = len(new.consts)
    params = dict(eqn.params, jaxpr=jax.core.ClosedJaxpr(pe.convert_constvars_jaxpr(new.jaxpr), ()),
                  num_consts=eqn.params["num_consts"] + extra, linear=(False,) * extra + tuple(eqn.params["linear"]))
    with source_info_util.user_context(eqn.source_info.traceback):
        return eqn.primitive.bind(*new.consts, *invals, **params)


def _replacements(mapping: dict[str, str]) -> Replacements:
    """The call sites of `jaxpr` that `mapping` swaps, each computing its implementation on its input."""
    def sites(jaxpr) -> dict[Any, Callable[[Callable[[Any], Any]], Any]]:
        out = {}
        for root, site in _sites(jaxpr).items():
            impl = mapping.get(site.kind, "spu-direct")
            if impl == "spu-direct":  # SPU's stock forms: the model's own code is that already
                continue
            fn = get(site.kind, impl).fn
            out[root] = (lambda read, fn=fn, site=site:
                         fn(read(site.x)) if site.axis is None else fn(read(site.x), axis=site.axis))
        return out

    return sites


def rewrite(fn: Callable, mapping: dict[str, str]) -> Callable:
    """`fn` with every recognised call site of a mapped activation replaced by its implementation.

    Args:
        fn: a JAX function.
        mapping: activation -> implementation (`policy.resolve`'s result); kinds it does not name
            stay as the model wrote them.

    Returns:
        A function with `fn`'s signature and outputs.
    """
    kinds = {k for k, impl in mapping.items() if impl != "spu-direct"} & {"silu", "gelu_tanh", "gelu_erf", "softmax"}
    if not kinds:
        return fn

    @functools.wraps(fn)
    def rewritten(*args: Any) -> Any:
        closed, shapes = jax.make_jaxpr(fresh(fn), return_shape=True)(*args)
        outs = evaluate(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args), _replacements(mapping))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), outs)

    return rewritten
