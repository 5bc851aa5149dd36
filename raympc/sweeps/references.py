"""Unshaped reference steps, measured once per program and shared by every sweep point that runs it.

A shaped point's prediction needs the compute time of its step program: the fastest of a few
unshaped steps of the same program on the same kind of reservation. That figure does not depend on
the network, the noise seed or the number of steps, so points that differ only in those share one
measurement: a rate x RTT grid of 18 points measures two references (one per implementation)
instead of 18, and a busy cluster spends its CPU on the shaped runs being measured.

The board is a Ray actor: the first point to ask for a key measures it (before its own shaped run,
so the others, which start their shaped runs meanwhile, rarely wait); the rest pick the result up
when they finish. A measurer that fails hands the key to the next point that asks. A resumed sweep
measures its references afresh rather than reusing those its earlier rows recorded: a shared
machine's speed drifts, and points added to the netmodel bench 40 minutes after their program's
reference was measured came out 10-15% slower in prediction than measured (within 5% with a fresh
reference).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any, Callable

import ray

import raympc.activations as acts
from raympc.sweeps.spec import PointParams
from workloads.protocol import WorkloadOptions
from workloads.registry import build

# What a point's step program and its compute time do not depend on.
NETWORK_ONLY_FIELDS = ("network", "rate", "rtt", "shaping", "seed", "steps", "breakdown")


def reference_key(params: PointParams, forms: tuple[str, ...] = ()) -> str:
    """Points with equal keys run the same unshaped step program on the same kind of reservation.

    A policy whose forms depend on the network (raympc's softmax picks its row max by it) may
    compile another program for another network: `forms`, what runs at each call site on the
    point's network (`program_forms`), keeps those apart, and points whose networks pick the same
    forms still share one reference.
    """
    same = {k: v for k, v in params.model_dump().items() if k not in NETWORK_ONLY_FIELDS}
    same["forms"] = list(forms)
    return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()[:12]


def program_forms(params: PointParams, opts: WorkloadOptions) -> tuple[str, ...]:
    """What runs at each nonlinearity call site of the point's step on its network; () for a
    policy whose forms do not depend on the network (no workload is built then)."""
    mapping = acts.resolve(params.activations)
    if not any(acts.get(kind, impl).form is not None for kind, impl in mapping.items()):
        return ()
    w = build(params.workload, opts)
    with acts.use(mapping):
        return acts.coverage(w.step, *w.step_arguments(0), network=params.profile).forms


class ReferenceBoard:
    """Who measures which reference, and the measured ones (run as an async Ray actor)."""

    def __init__(self) -> None:
        self._done: dict[str, dict[str, Any]] = {}
        self._claimed: dict[str, asyncio.Event] = {}

    async def claim(self, key: str) -> dict[str, Any]:
        """{'reference': ...} if measured, {'measure': True} for the first asker, else {'pending': True}."""
        if key in self._done:
            return {"reference": self._done[key]}
        if key in self._claimed:
            return {"pending": True}
        self._claimed[key] = asyncio.Event()
        return {"measure": True}

    async def publish(self, key: str, reference: dict[str, Any]) -> None:
        self._done[key] = reference
        self._claimed.pop(key, asyncio.Event()).set()

    async def abandon(self, key: str) -> None:
        """The measurer failed: wake the waiters; the next to claim measures."""
        self._claimed.pop(key, asyncio.Event()).set()

    async def wait(self, key: str, timeout_s: float) -> dict[str, Any]:
        """{'reference': ...} once measured, {'abandoned': True} if the measurer failed, or {'timeout': True}."""
        event = self._claimed.get(key)
        if event is not None:
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except asyncio.TimeoutError:
                return {"timeout": True}
        return {"reference": self._done[key]} if key in self._done else {"abandoned": True}


def start_board():
    """A board actor for one invocation of a sweep (it knows no references yet)."""

    return ray.remote(num_cpus=0)(ReferenceBoard).remote()


# How long a point waits for another point's reference before measuring its own.
WAIT_S = 1800.0


def obtain(board, key: str, measure: Callable[[], dict[str, Any]], block: bool = True) -> dict[str, Any] | None:
    """The reference for `key`: from the board, or measured here by `measure()` when this point is
    the first to ask (or the measurer failed or stalled). With `block=False`, None instead of
    waiting for another point's measurement."""

    while True:
        state = ray.get(board.claim.remote(key))
        if "pending" in state:
            if not block:
                return None
            state = ray.get(board.wait.remote(key, WAIT_S))
            if "abandoned" in state:
                continue  # claim again: this point may be the one to measure now
        if "reference" in state:
            return state["reference"]
        if "timeout" in state:
            return measure()  # the measurer stalled: do not hold this point hostage
        try:
            reference = measure()
        except BaseException:
            ray.get(board.abandon.remote(key))
            raise
        ray.get(board.publish.remote(key, reference))
        return reference
