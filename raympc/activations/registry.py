"""The activation registry: (activation, implementation) -> a JAX function plus its documented bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

ACTIVATIONS = ("silu", "mish", "gelu_tanh", "gelu_erf", "softmax", "exp", "rsqrt", "groupnorm")
# Functions of one element each; softmax works on rows and groupnorm on (batch, ..., channels).
ELEMENTWISE = ("silu", "mish", "gelu_tanh", "gelu_erf", "exp", "rsqrt")


@dataclass(frozen=True)
class Implementation:
    activation: str
    impl: str
    fn: Callable
    # Documented max abs error against the exact function on `grid` (None: not bounded there).
    max_abs_error: float | None
    grid: tuple[float, float]
    note: str = ""
    fitted: bool = False  # made by `raympc fit`: may be replaced by a later fit of the same name
    # for an implementation whose form depends on the call site: (shape, axis) -> what it runs
    # there, for the coverage report ("row max by tree")
    form: Callable[[tuple[int, ...], int], str] | None = None


REGISTRY: dict[tuple[str, str], Implementation] = {}


def register(activation: str, impl: str, max_abs_error: float | None, grid: tuple[float, float],
             note: str = "", fitted: bool = False,
             form: Callable[[tuple[int, ...], int], str] | None = None) -> Callable[[Callable], Callable]:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {ACTIVATIONS}")

    def wrap(fn: Callable) -> Callable:
        key = (activation, impl)
        old = REGISTRY.get(key)
        if old is not None and not (old.fitted and fitted):
            raise ValueError(f"{activation}/{impl} is already registered; choose another name")
        REGISTRY[key] = Implementation(activation, impl, fn, max_abs_error, grid, note, fitted, form)
        return fn

    return wrap


def get(activation: str, impl: str) -> Implementation:
    found = REGISTRY.get((activation, impl))
    if found is None:
        have = sorted(i for a, i in REGISTRY if a == activation)
        raise KeyError(f"no implementation {impl!r} of {activation!r}; registered: {have}")
    return found


def implementations(activation: str | None = None) -> list[Implementation]:
    return [v for (a, _), v in sorted(REGISTRY.items()) if activation in (None, a)]
