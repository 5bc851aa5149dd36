"""A three-node Ray cluster built in-process: placement 'spread' puts each party on its own node."""

from __future__ import annotations

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

from raympc import PlacementError, Session


@pytest.fixture(scope="module")
def three_nodes():
    if ray.is_initialized():
        ray.shutdown()  # the shared embedded instance; tests after this one start it again
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def test_spread_puts_each_party_on_its_own_node(three_nodes, rng):
    with Session(placement="spread", address=three_nodes.address) as s:
        nodes = [i["node_id"] for i in s.party_info]
        assert len(set(nodes)) == 3
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert set(nodes) == alive
        x = rng.standard_normal((4, 8)).astype(np.float32)
        np.testing.assert_allclose(s.run(lambda a: a @ a.T, x).outputs, x @ x.T, atol=1e-3)
        assert {r.node for r in s.run(lambda a: a * a, x).metrics.ranks} == {s.party_info[r]["host"] for r in range(3)}
    assert not ray.is_initialized()  # the session disconnected the driver it connected


def test_spread_needs_three_nodes(rng):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
    try:
        with pytest.raises(PlacementError, match="needs 3 nodes, one per party; the cluster has 1"):
            Session(placement="spread", address=cluster.address).open()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
