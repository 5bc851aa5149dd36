"""Swap activations into any JAX/Flax model without editing it.

`with use("cipherdm"): ...` (or `use({"silu": "cipherdm", "softmax": "spu-direct"})`) rebinds the
module attributes models look up at call time: `jax.nn.{silu,swish,softmax,gelu}` and their
`flax.linen` re-exports, `jax.lax.rsqrt` (flax's norms call it) and `flax.linen.GroupNorm`
(replaced by a same-named module that calls the current `groupnorm`); diffusers' Flax U-Net
looks all of them up the same way. Only activations the
chosen implementation provides are swapped. raympc traces every program afresh and keys its
cache by the traced program, so a swap always reaches the compiled SPU program; the tests
assert that it does.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Iterator

import flax.linen as nn
import flax.linen.activation as act
import jax

from raympc.activations.active import active_policies as _active
from raympc.activations.flax_modules import GroupNorm
from raympc.activations.registry import REGISTRY, get
from raympc.activations.rewrite import rewrite
from raympc.errors import ConfigError
from raympc.runtime.compiler import TRACE_TRANSFORMS

_lock = threading.RLock()


def _targets() -> list[tuple[object, str, str]]:
    """(module, attribute, activation) that a policy rebinds."""

    pairs = [("silu", "silu"), ("swish", "silu"), ("softmax", "softmax")]
    targets = [(mod, attr, a) for mod in (jax.nn, nn, act) for attr, a in pairs if hasattr(mod, attr)]
    return targets + [(jax.lax, "rsqrt", "rsqrt"), (nn, "GroupNorm", "groupnorm")]


def _binding(activation: str, impl: str):
    """What a target is rebound to: the function, or for GroupNorm the module that calls it."""
    if activation == "groupnorm":
        return GroupNorm
    return get(activation, impl).fn


def _gelu_dispatch(mapping: dict[str, str]):
    tanh_fn = get("gelu_tanh", mapping["gelu_tanh"]).fn if "gelu_tanh" in mapping else None
    erf_fn = get("gelu_erf", mapping["gelu_erf"]).fn if "gelu_erf" in mapping else None
    stock = get("gelu_tanh", "spu-direct").fn, get("gelu_erf", "spu-direct").fn

    def gelu(x, approximate: bool = True):
        if approximate:
            return (tanh_fn or stock[0])(x)
        return (erf_fn or stock[1])(x)

    return gelu


def file_stem(policy: str) -> str:
    """A policy string as part of a file name: "raympc,softmax=raympc-lean" -> "raympc_softmax-raympc-lean"."""
    return policy.replace(" ", "").replace(",", "_").replace("=", "-")


def active_mapping() -> dict[str, str]:
    """The innermost `use()`'s mapping (activation -> implementation); empty outside any."""
    return dict(_active[-1]) if _active else {}


class PolicyError(ConfigError):
    """A policy string or mapping that names no registered implementation, or is malformed."""


def resolve(policy: str | dict[str, str]) -> dict[str, str]:
    """Activation -> implementation, keeping only what the implementation provides.

    Args:
        policy: an implementation ("raympc": every activation it provides), activations
            ("mish=raympc,softmax=spu-direct"), or both, the named ones overriding the
            implementation's ("raympc,softmax=raympc-lean"); or such a mapping as a dict.

    Returns:
        The mapping from activation name to implementation name.

    Raises:
        PolicyError: the string is malformed, or an activation or implementation is not registered.
    """
    if isinstance(policy, str):
        items = [item.strip() for item in policy.split(",")]
        bases = [item for item in items if "=" not in item]
        pairs = [item.split("=", 1) for item in items if "=" in item]
        if len(bases) > 1 or any(not item for item in items) or any(not (a.strip() and i.strip()) for a, i in pairs):
            raise PolicyError(f"a policy is IMPL, ACTIVATION=IMPL[,...] or IMPL,ACTIVATION=IMPL[,...]; got {policy!r}")
        mapping = {}
        if bases:
            mapping = {a: i for a, i in REGISTRY if i == bases[0]}
            if not mapping:
                raise PolicyError(f"no activations registered under {bases[0]!r}; "
                                  f"implementations: {sorted({i for _, i in REGISTRY})}")
        policy = {**mapping, **{a.strip(): i.strip() for a, i in pairs}}
    for activation, impl in policy.items():
        try:
            get(activation, impl)
        except KeyError as exc:
            raise PolicyError(exc.args[0]) from None
    return dict(policy)


def _gelu_modules() -> tuple[object, ...]:
    return (jax.nn, nn, act)


_pristine: list[tuple[object, str, object]] = []


def _stock_bindings() -> list[tuple[object, str, object]]:
    """What models find before any swap (every swap goes through `use`, which calls this first)."""
    with _lock:
        if not _pristine:
            names = [(mod, attr) for mod, attr, _ in _targets()] + [(mod, "gelu") for mod in _gelu_modules()]
            _pristine.extend((mod, attr, getattr(mod, attr)) for mod, attr in names)
        return list(_pristine)


@contextlib.contextmanager
def _bound(bindings: list[tuple[object, str, object]], mapping: dict[str, str]) -> Iterator[dict[str, str]]:
    """Rebind (module, attribute) -> function and make `mapping` current, undoing both on exit."""
    with _lock:
        saved = []
        swap = None
        try:
            for mod, attr, fn in bindings:
                saved.append((mod, attr, getattr(mod, attr)))
                setattr(mod, attr, fn)
            _active.append(mapping)
            swap = functools.partial(rewrite, mapping=mapping)
            TRACE_TRANSFORMS.append(swap)
            yield mapping
        finally:
            if swap in TRACE_TRANSFORMS:
                TRACE_TRANSFORMS.remove(swap)
            if _active and _active[-1] is mapping:
                _active.pop()
            for mod, attr, fn in reversed(saved):
                setattr(mod, attr, fn)


@contextlib.contextmanager
def stock() -> Iterator[None]:
    """The model's own activations, even inside a `use`: plaintext references run with these, so
    that quality against plaintext counts an implementation's approximation error, not only its
    fixed-point error (mish, which jax/flax lack, falls back to its exact formula)."""
    with _bound(_stock_bindings(), {}):
        yield


@contextlib.contextmanager
def use(policy: str | dict[str, str]) -> Iterator[dict[str, str]]:
    """Swap the policy's implementations into every model traced inside the `with` block.

    Args:
        policy: as for `resolve` ("raympc", "silu=raympc", "raympc,softmax=raympc-lean", or a dict).

    Yields:
        The resolved mapping (activation -> implementation).

    Raises:
        PolicyError: as `resolve`.
    """
    mapping = resolve(policy)
    _stock_bindings()
    bindings = [(mod, attr, _binding(activation, mapping[activation]))
                for mod, attr, activation in _targets() if activation in mapping]
    if "gelu_tanh" in mapping or "gelu_erf" in mapping:
        gelu = _gelu_dispatch(mapping)
        bindings += [(mod, "gelu", gelu) for mod in _gelu_modules()]
    with _bound(bindings, mapping):
        yield mapping
