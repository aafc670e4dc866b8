"""``spec.fromCluster``: a PinSet whose pins are an IPFS Cluster's, against a real two-peer
cluster (each peer in front of a Kubo of its own). Each pin's content must come from the Kubo of
the peer holding it: the operator's own node has none of it."""

from __future__ import annotations

import os

import pytest

from pinsync.devenv import cluster
from tests.e2e.conftest import World
from tests.kubetools import create_secret, eventually

pytestmark = pytest.mark.e2e

ONE_COPY = {"replication-min": "1", "replication-max": "1", "meta-team": "media"}


def pin_on(member: cluster.Member, via: cluster.Member, name: str) -> str:
    """Content added to ``member``'s Kubo only, pinned in the cluster allocated to it alone."""
    cid = member.kubo.add(os.urandom(3000), pin=False)
    via.peer.pin(cid, name=name, **ONE_COPY, **{"user-allocations": member.peer.peer_id})
    return cid


def test_a_pinset_from_a_two_peer_cluster_is_exported_from_the_peers_holding_each_pin(
    world: World, cluster_pair: tuple[cluster.Member, cluster.Member]
) -> None:
    first, second = cluster_pair
    prefix = f"{world.namespace}/"
    a = pin_on(first, first, f"{prefix}a")
    b = pin_on(second, first, f"{prefix}b")
    other = pin_on(first, first, f"not-{prefix}c")
    first.peer.wait_for_statuses(
        {a: {"peer-0": "pinned", "peer-1": "remote"}, b: {"peer-0": "remote", "peer-1": "pinned"}}
    )
    assert first.peer.auth is not None
    username, password = first.peer.auth
    create_secret(
        world.k8s, world.namespace, "cluster-api", {"username": username, "password": password}
    )
    world.backend()
    spec = {
        "apiUrl": first.peer.api_url,
        "namePrefix": prefix,
        "metadata": {"team": "media"},
        "credentialsSecretRef": {"name": "cluster-api"},
        "peers": [
            {"peer": "peer-0", "ipfsApiUrl": first.kubo.api_url},  # by peername
            {"peer": second.peer.peer_id, "ipfsApiUrl": second.kubo.api_url},  # by peer ID
        ],
    }
    world.pinsets.create("cluster", {"fromCluster": spec, "backends": ["minio"]})
    world.wait_synced(present=2, timeout=180)
    keys = world.bucket.keys()
    assert world.bucket.read(f"pins/{a}.car") == first.kubo.export_car(a)
    assert world.bucket.read(f"pins/{b}.car") == second.kubo.export_car(b)
    assert f"pins/{other}.car" not in keys
    world.pinsets.wait_condition("cluster", "Ready", "True")

    # A pin added to the cluster later, nothing changed in Kubernetes: the cluster's pinset is
    # watched (every PINSYNC_NODE_PINS_INTERVAL, 30 s) and the backend follows.
    late = pin_on(second, first, f"{prefix}d")
    first.peer.wait_for_statuses({late: {"peer-0": "remote", "peer-1": "pinned"}})
    eventually(lambda: f"pins/{late}.car" in world.bucket.keys(), timeout=150)
    world.wait_synced(present=3)
    assert world.bucket.read(f"pins/{late}.car") == second.kubo.export_car(late)
    eventually(lambda: world.pinsets.get("cluster")["status"]["counts"]["pins"] == 3)


def test_a_cluster_that_refuses_the_credentials_is_reported_on_the_pinset(
    world: World, cluster_pair: tuple[cluster.Member, cluster.Member]
) -> None:
    first, _ = cluster_pair
    wrong = "wrong-password-5f1c9e"
    create_secret(world.k8s, world.namespace, "wrong", {"username": "pinsync", "password": wrong})
    world.backend()
    spec = {"apiUrl": first.peer.api_url, "credentialsSecretRef": {"name": "wrong"}}
    world.pinsets.create("cluster", {"fromCluster": spec, "backends": ["minio"]})
    condition = world.pinsets.wait_condition("cluster", "Stalled", "True")
    assert condition["reason"] == "AuthFailed"
    assert wrong not in condition["message"]
    assert all(wrong not in (e.message or "") for e in world.events())
