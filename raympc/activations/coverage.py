"""Which nonlinearities a program calls, and what runs at each call site under the current policy.

`use()` swaps activations through the names models look up when they run and, for models that
bound theirs earlier, inside the traced program (`rewrite`). Where neither reaches, a call site
keeps SPU's stock form, and the coverage report says so: it traces the program twice, once with
the model's own activations and once as the session would compile it under the current policy,
finds every nonlinearity in the first (by the primitive or pattern JAX lowers it to), and checks
at each call site whether the stock form is still there in the second.

A site's status is one of:
- `swapped`: the policy's implementation runs there;
- `missed`: the policy names an implementation for this kind but the site still runs SPU's stock
  form (the model bound its activation where `use` cannot reach; say it, never hide it);
- `stock`: the policy leaves this kind to SPU (or raympc has no secure form for it).
"""

from __future__ import annotations

import collections
import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import jax
from jax._src.interpreters import partial_eval as pe

from raympc.activations import policy
from netsim import NetworkProfile, resolve
from raympc.activations.registry import REGISTRY
from raympc.activations.rewrite import cubic_tanh, upstream
from raympc.runtime.compiler import compiling_for, fresh, location, traced_form

# Primitives whose presence marks a nonlinearity, and the activation each one is evidence of
# unless a pattern below says more (softmax's exp, GeLU's tanh or erfc).
PRIMITIVES = {"logistic": "sigmoid", "tanh": "tanh", "erf": "erf", "erfc": "gelu_erf", "exp": "exp",
              "rsqrt": "rsqrt", "log": "log"}
# Named jitted functions of jax.nn that appear as one call in a trace (their insides are not sites).
NAMED = {"silu": "silu", "swish": "silu", "gelu": "gelu_tanh", "sigmoid": "sigmoid", "softmax": "softmax"}


@dataclass(frozen=True)
class Site:
    """One nonlinearity call site of a traced program."""

    kind: str  # an activation name (silu, gelu_tanh, softmax, ...) or a primitive raympc has no form of
    shape: tuple[int, ...]
    where: str  # the source location JAX recorded ("file:line:col (function)")
    status: str  # swapped, missed or stock
    runs: str  # what computes it: an implementation's name and, where it varies, its form; or "SPU stock"


@dataclass
class Coverage:
    """Every nonlinearity call site of a program and what runs there."""

    policy: dict[str, str]
    sites: list[Site]

    @property
    def forms(self) -> tuple[str, ...]:
        """What runs at each site, in order: equal for two traces of a model under one policy
        exactly when they compile the same program (a form may depend on the network)."""
        return tuple(s.runs for s in self.sites)

    @property
    def missed(self) -> list[Site]:
        return [s for s in self.sites if s.status == "missed"]

    @property
    def swapped(self) -> list[Site]:
        return [s for s in self.sites if s.status == "swapped"]

    def summary(self) -> str:
        """"5 of 7 call sites swapped; 1 missed (gelu_tanh at model.py:41:12)"."""
        text = f"{len(self.swapped)} of {len(self.sites)} nonlinearity call sites swapped"
        if self.missed:
            text += f"; {len(self.missed)} MISSED: " + ", ".join(f"{s.kind} at {s.where}" for s in self.missed[:4])
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "swapped": len(self.swapped), "missed": len(self.missed),
                "total": len(self.sites), "sites": [asdict(s) for s in self.sites]}


def _eqns(jaxpr) -> Iterator[Any]:
    """Every equation, recursing into sub-programs except the named jax.nn functions (one site each)."""
    for eqn in jaxpr.eqns:
        yield eqn
        if eqn.primitive.name == "pjit" and eqn.params.get("name") in NAMED:
            continue
        for sub in jax.core.jaxprs_in_params(eqn.params):
            yield from _eqns(sub)


def _producers(jaxpr) -> dict[Any, Any]:
    out = {}
    for eqn in _eqns(jaxpr):
        for v in eqn.outvars:
            out[v] = eqn
    return out


def _kind(eqn, producers: dict[Any, Any]) -> str | None:
    name = eqn.primitive.name
    if name == "pjit":
        return NAMED.get(eqn.params.get("name"))
    if name not in PRIMITIVES:
        return None
    if name == "exp" and any(e.primitive.name == "stop_gradient" for e in upstream(eqn.invars[0], producers, 3)):
        return "softmax"  # exp(x - stop_gradient(max x)): jax.nn.softmax as it inlines
    if cubic_tanh(eqn, producers):
        return "gelu_tanh"
    return PRIMITIVES[name]


def _axis(eqn, producers: dict[Any, Any]) -> int:
    """A softmax site's axis: that of the row max its exp subtracts (the last if not found)."""
    for e in upstream(eqn.invars[0], producers, 5):
        if e.primitive.name == "reduce_max" and len(e.params["axes"]) == 1:
            return int(e.params["axes"][0])
    return -1


def _sites(fn: Callable, args: tuple) -> list[tuple[str, tuple[int, ...], str, int]]:
    jaxpr = jax.make_jaxpr(fresh(fn))(*args).jaxpr
    # what feeds no output is not computed (XLA drops it before SPU compiles): a swapped site's
    # stock operations, left behind by `rewrite`, must not count
    jaxpr, _ = pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
    producers = _producers(jaxpr)
    found = []
    for eqn in _eqns(jaxpr):
        kind = _kind(eqn, producers)
        if kind is not None:
            shape = tuple(getattr(eqn.outvars[0].aval, "shape", ()))
            axis = _axis(eqn, producers) if kind == "softmax" else -1
            found.append((kind, shape, location(eqn), axis))
    return found


ELEMENTWISE_KINDS = ("silu", "gelu_tanh", "gelu_erf")


def elementwise_sites(fn: Callable, *args: Any) -> list[tuple[str, jax.ShapeDtypeStruct]]:
    """The SiLU and GeLU call sites of `fn(*args)` as the model wrote them (the stock trace, so
    however the model bound them), each with its input's shape and dtype, in program order. A
    site applied again to the same value counts once: XLA computes it once.

    Args:
        fn: a JAX function; every argument is traced (close over public values to leave them out).
        *args: example arguments.
    """
    with policy.stock():
        jaxpr = jax.make_jaxpr(fresh(fn))(*args).jaxpr
    jaxpr, _ = pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
    producers = _producers(jaxpr)
    found, seen = [], set()
    for eqn in _eqns(jaxpr):
        kind = _kind(eqn, producers)
        if kind in ELEMENTWISE_KINDS and (kind, eqn.invars[0]) not in seen:
            seen.add((kind, eqn.invars[0]))
            out = eqn.outvars[0].aval
            found.append((kind, jax.ShapeDtypeStruct(out.shape, out.dtype)))
    return found


def coverage(fn: Callable, *args: Any, policy_: str | dict[str, str] | None = None,
             network: "NetworkProfile | str | None" = None) -> Coverage:
    """Every nonlinearity call site of `fn(*args)` and what runs there.

    Args:
        fn: a JAX function, as `Session.run` would take it.
        *args: example arguments (arrays or pytrees of them; wrappers such as `Secret` are not taken).
        policy_: the policy to report on; None takes the innermost `use()` (stock outside any).
        network: the profile the program runs on, where an implementation's form depends on it
            (raympc's softmax); None: unshaped.

    Returns:
        The sites in program order, each swapped, missed or stock.
    """
    mapping = policy.active_mapping() if policy_ is None else policy.resolve(policy_)
    profile = resolve(network) if network is not None else None
    with policy.stock():
        stock_sites = _sites(fn, args)
    with contextlib.nullcontext() if policy_ is None else policy.use(mapping), compiling_for(profile):
        policy_sites = _sites(traced_form(fn), args)
        remaining = collections.Counter((kind, where) for kind, _, where, _ in policy_sites)
        return Coverage(mapping, _statuses(stock_sites, remaining, mapping))


def _statuses(stock_sites, remaining: collections.Counter, mapping: dict[str, str]) -> list[Site]:
    """Each stock site's status: swapped where the policy's trace no longer has it."""
    implemented = {a for a, _ in REGISTRY}
    sites = []
    for kind, shape, where, axis in stock_sites:
        impl = mapping.get(kind)
        if impl is None and kind == "rsqrt" and "groupnorm" in mapping:
            impl = mapping["groupnorm"]  # flax's norms call rsqrt; a swapped GroupNorm takes it along
        if remaining[(kind, where)] > 0:
            remaining[(kind, where)] -= 1
            status = "missed" if impl is not None and impl != "spu-direct" else "stock"
            runs = "SPU stock" + ("" if kind in implemented else " (no raympc form)")
        elif impl == "spu-direct":
            status, runs = "stock", "SPU stock"
        else:
            status, runs = "swapped", impl or "swapped"
            form = REGISTRY[(kind, impl)].form if (kind, impl) in REGISTRY else None
            if form is not None:
                runs = f"{impl} ({form(shape, axis)})"
        sites.append(Site(kind, shape, where, status, runs))
    return sites
