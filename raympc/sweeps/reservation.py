"""The placement group one sweep point reserves, in one place: its bundles, where the point's own
task goes, and where each party goes.

- `pack`: bundle 0 holds the point's task (its driver and, for relay shaping, its relays), bundles
  1-3 its parties, all on one node (STRICT_PACK).
- `spread`: bundles 0-2 hold the parties, one per node (STRICT_SPREAD); the point's task only
  waits on them and reserves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from raympc.sweeps.spec import PointParams

TASK_CPUS = 1.0


@dataclass(frozen=True)
class Reservation:
    bundles: list[dict[str, float]]
    strategy: str
    task_bundle: int | None  # None: the point's task runs outside the group
    party_bundles: tuple[int, int, int]

    @property
    def cpus(self) -> float:
        return sum(b["CPU"] for b in self.bundles)

    def task_options(self, group) -> dict[str, Any]:
        """Ray options for the point's own task."""

        if self.task_bundle is None:
            return {"num_cpus": 0}
        return {"num_cpus": TASK_CPUS, "scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=self.task_bundle)}


def reservation(params: PointParams) -> Reservation:
    party = {"CPU": params.party_cpus}
    if params.placement == "spread":
        return Reservation([party] * 3, "STRICT_SPREAD", None, (0, 1, 2))
    return Reservation([{"CPU": TASK_CPUS}] + [party] * 3, "STRICT_PACK", 0, (1, 2, 3))
