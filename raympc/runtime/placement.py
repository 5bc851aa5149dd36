"""Where the parties run. A registry of strategies, each turning party specs into actor options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from raympc.cluster.ray_instance import alive_nodes
from raympc.errors import PlacementError
from raympc.runtime.config import PartySpec

PLACEMENT_GROUP_TIMEOUT_S = 60.0


@dataclass
class Placement:
    """Ray actor options per rank, and the placement group to remove when the session closes."""

    options: list[dict[str, Any]]
    group: PlacementGroup | None = None
    describe: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def release(self) -> None:
        if self.group is not None:
            remove_placement_group(self.group)
            self.group = None


def _bundle(spec: PartySpec) -> dict[str, float]:
    bundle = {"CPU": spec.num_cpus, **spec.resources}
    if spec.num_gpus:
        bundle["GPU"] = spec.num_gpus
    return bundle


def _base_options(spec: PartySpec) -> dict[str, Any]:
    return {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus, "resources": dict(spec.resources)}


def _pinned(specs: Sequence[PartySpec], strategy: str) -> Placement:
    bundles = [_bundle(s) for s in specs]
    group = placement_group(bundles, strategy=strategy, name="")
    if not group.wait(timeout_seconds=PLACEMENT_GROUP_TIMEOUT_S):
        remove_placement_group(group)
        raise PlacementError(
            f"no room for the parties' bundles {bundles} with strategy {strategy} "
            f"within {PLACEMENT_GROUP_TIMEOUT_S:.0f} s; cluster resources: {ray.available_resources()}"
        )
    options = [
        {**_base_options(s), "scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=i)}
        for i, s in enumerate(specs)
    ]
    return Placement(options=options, group=group, describe=strategy)


def place_local(specs: Sequence[PartySpec]) -> Placement:
    """All parties on the driver's node."""
    node_id = ray.get_runtime_context().get_node_id()
    options = [
        {**_base_options(s), "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)}
        for s in specs
    ]
    return Placement(options=options, describe="local")


def place_spread(specs: Sequence[PartySpec]) -> Placement:
    """One party per node (STRICT_SPREAD)."""
    nodes = alive_nodes()
    if len(nodes) < len(specs):
        raise PlacementError(
            f"placement 'spread' needs {len(specs)} nodes, one per party; the cluster has {len(nodes)} "
            f"alive node(s). Add nodes or use placement='local'."
        )
    return _pinned(specs, "STRICT_SPREAD")


def place_explicit(specs: Sequence[PartySpec]) -> Placement:
    """Each party pinned by its own node_id, node_ip or custom resources."""
    nodes = {n["NodeID"]: n for n in alive_nodes()}
    by_ip = {n["NodeManagerAddress"]: n["NodeID"] for n in nodes.values()}
    options = []
    for rank, s in enumerate(specs):
        opts = _base_options(s)
        node_id = s.node_id
        if s.node_ip is not None:
            if s.node_ip not in by_ip:
                raise PlacementError(f"party {rank}: no alive node with IP {s.node_ip}; nodes: {sorted(by_ip)}")
            node_id = by_ip[s.node_ip]
        if node_id is not None:
            if node_id not in nodes:
                raise PlacementError(f"party {rank}: no alive node {node_id}")
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
        for res in s.resources:
            if not any(res in n["Resources"] for n in nodes.values()):
                raise PlacementError(f"party {rank}: no node offers resource {res!r}")
        options.append(opts)
    return Placement(options=options, describe="explicit")


PLACEMENTS: dict[str, Callable[[Sequence[PartySpec]], Placement]] = {
    "local": place_local,
    "spread": place_spread,
    "explicit": place_explicit,
}


def place(name: str, specs: Sequence[PartySpec]) -> Placement:
    strategy = PLACEMENTS.get(name)
    if strategy is None:
        raise PlacementError(f"unknown placement {name!r}; choose one of {sorted(PLACEMENTS)}")
    return strategy(specs)
