"""Which row max raympc's softmax takes at a call site, priced on the session's network.

A secure row max is the part of softmax where rounds and bytes trade against each other:

- `tree`: pairwise, one comparison and one select per element in all, ceil(log2 n) comparison
  levels: the fewest bytes and the least compute;
- `tournament`: groups of 4 compared all-pairs, then one last all-pairs level
  (`blocks.tournament_fan_ins`): two to five levels for rows of 16 to 4,096, for ~50 B per element
  more on the busiest rank and ~3x the compute.

Neither wins everywhere. On a WAN a softmax call over few elements (the MNIST U-Net's 49x49 rows)
saves a 20 ms round per level by the tournament and loses little; a call over millions of
scores (Stable Diffusion's 4,096-key rows) pays for its compute and bytes far more than the
rounds it saves, and with no delay to save the tree wins outright. So `choose` prices both on
the network the program is compiled for (`runtime.compiler.target_network`) with the analytic
model (`runtime.netmodel`), and the cheaper one runs. The program's cache key follows: the same
model traced for `wan` and for `lan` compiles to two programs.

The per-form figures below were measured with SPU 0.9.5 (ABY3, FM64) on this project's CI machine
kind (three parties on 2 cores), over rows of 16 to 4,096 (`tests/test_softmax_forms.py` checks
the send actions against SPU's own counts); they only rank the two forms, so a machine twice as
fast moves the break-even point, not the outcome far from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from netsim import NetworkProfile, resolve
from raympc.activations.blocks import tournament_fan_ins
from raympc.runtime.compiler import target_network
from raympc.runtime.netmodel import Calibration, RunCost

# busiest rank's send actions of raympc's softmax outside its row max (its clamp, exp,
# reciprocal and normalising multiply)
BASE_ACTIONS = 46.8


@dataclass(frozen=True)
class RowMax:
    """A way to take a softmax row's max, with what it costs beyond the tree's."""

    name: str
    fan_in: int
    final: int
    actions_per_level: float  # busiest rank's send actions per comparison level
    extra_bytes_per_element: float  # busiest rank's bytes per score over the tree's
    extra_compute_s_per_element: float  # wall time per score over the tree's (three parties, 2 cores)

    def levels(self, length: int) -> int:
        return len(tournament_fan_ins(length, self.fan_in, self.final))

    def actions(self, length: int) -> float:
        """The busiest rank's send actions for one softmax call over rows of `length`."""
        return BASE_ACTIONS + self.actions_per_level * self.levels(length)

    def cost(self, rows: int, length: int) -> RunCost:
        """One call's cost beyond what every form pays (time: compute only, unshaped)."""
        elements = rows * length
        return RunCost(self.extra_compute_s_per_element * elements, self.extra_bytes_per_element * elements,
                       self.actions(length))


# Measured (module docstring): the tree's send actions 92-183 for rows of 16-4,096 (11.3 per
# level), the tournament's 74-118 (14.0 per level); the tournament's busiest rank sent 42-80 B
# per score more and took 14-21 us per score longer in 8,192- and 65,536-score calls.
TREE = RowMax("tree", 2, 1, 11.3, 0.0, 0.0)
TOURNAMENT = RowMax("tournament", 4, 16, 14.0, 50.0, 15e-6)
FORMS = (TOURNAMENT, TREE)


def choose(rows: int, length: int, network: "NetworkProfile | str | None" = None,
           calibration: Calibration | None = None) -> RowMax:
    """The row max that makes one softmax call over `rows` rows of `length` fastest on `network`.

    Args:
        rows, length: the call's number of rows and their length (the softmax axis).
        network: a profile or preset; None takes the one the program is being compiled for, and
            outside a session's compile (plaintext) the unshaped network.
        calibration: the analytic model's constants; None loads the shipped ones.

    Returns:
        `TREE` or `TOURNAMENT` (ties go to the tree: fewer bytes).
    """
    if length < 2:
        return TREE
    profile = resolve(network) if network is not None else (target_network() or resolve("unshaped"))
    calibration = calibration or _shipped()
    tournament, tree = (calibration.predict(form.cost(rows, length), profile)["time_s"] for form in FORMS)
    return TOURNAMENT if tournament < tree else TREE


@lru_cache(maxsize=None)
def _shipped() -> Calibration:
    """The shipped calibration, read once per process (a softmax call site is priced per trace)."""
    return Calibration.load()


def for_shape(shape: tuple[int, ...], axis: int, network: "NetworkProfile | str | None" = None) -> RowMax:
    """`choose` for a softmax over an array of `shape` along `axis`."""
    length = shape[axis] if shape else 1
    return choose(int(np.prod(shape)) // max(length, 1), length, network)


def describe(shape: tuple[int, ...], axis: int, network: "NetworkProfile | str | None" = None) -> str:
    """What `choose` picks for a softmax over `shape` along `axis`, as the coverage report says it."""
    return f"row max by {for_shape(shape, axis, network).name}"
