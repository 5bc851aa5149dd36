"""A three-node Ray cluster built in-process: placement 'spread' puts each party on its own node."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

from raympc import PartySpec, PlacementError, Session


@contextlib.contextmanager
def private_ray_tmpdir():
    """Ray sessions of `cluster_utils.Cluster` nodes under a directory of our own, removed after,
    instead of the machine-wide /tmp/ray (its nodes ignore a head-only `--temp-dir`)."""
    path = tempfile.mkdtemp(prefix="rmpc-mn-")  # short: Ray's socket paths live under it
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = path
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def three_nodes():
    if ray.is_initialized():
        ray.shutdown()  # the shared embedded instance; tests after this one start it again
    with private_ray_tmpdir():
        # Each node carries a party label (custom resource); the last one declares a (logical) GPU.
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"party0": 1}})
        cluster.add_node(num_cpus=1, resources={"party1": 1})
        cluster.add_node(num_cpus=1, num_gpus=1, resources={"party2": 1})
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


def test_explicit_labels_and_a_gpu_party(three_nodes, rng):
    specs = [PartySpec(resources={"party0": 1}), PartySpec(resources={"party1": 1}),
             PartySpec(resources={"party2": 1}, num_gpus=1)]
    with Session(placement="explicit", party_specs=specs, address=three_nodes.address) as s:
        by_label = {}
        for n in ray.nodes():
            for label in ("party0", "party1", "party2"):
                if label in n["Resources"]:
                    by_label[label] = n["NodeID"]
        assert [i["node_id"] for i in s.party_info] == [by_label["party0"], by_label["party1"], by_label["party2"]]
        assert s.party_info[2]["gpu_ids"] and not s.party_info[0]["gpu_ids"]
        x = rng.standard_normal((3, 3)).astype(np.float32)
        np.testing.assert_allclose(s.run(lambda a: a + a, x).outputs, 2 * x, atol=1e-4)


def test_explicit_label_nobody_offers(three_nodes):
    with pytest.raises(PlacementError, match="no node offers resource 'party9'"):
        Session(placement="explicit", party_specs=PartySpec(resources={"party9": 1}),
                address=three_nodes.address).open()


def test_spread_needs_three_nodes(rng):
    with private_ray_tmpdir():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
        try:
            with pytest.raises(PlacementError, match="needs 3 nodes, one per party; the cluster has 1"):
                Session(placement="spread", address=cluster.address).open()
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()
