"""A ``fromNode`` PinSet follows the node: pins added to or removed from Kubo (and nothing else
touched) reach the backend, by the node's pin list being watched and diffed."""

from __future__ import annotations

import os

import pytest

from tests.e2e.conftest import World
from tests.kubetools import eventually

pytestmark = pytest.mark.e2e


def pin_named(world: World, name: str, count: int) -> list[str]:
    cids = [world.ipfs.add(os.urandom(2000), pin=False) for _ in range(count)]
    world.ipfs.ipfs("pin", "add", "--name", name, *cids)
    return cids


def test_pins_added_and_removed_on_the_node_reach_the_backend(world: World) -> None:
    prefix = f"{world.namespace}/"
    world.backend(sync={"deletionPolicy": "Prune"})
    first = pin_named(world, f"{prefix}a", 3)
    world.pinsets.create("node", {"fromNode": {"namePrefix": prefix}, "backends": ["minio"]})
    world.wait_synced(present=3)
    world.assert_objects_match_kubo(first)

    # New pins on the node, no change in Kubernetes: the watch of the node's pin list sees them
    # (within PINSYNC_NODE_PINS_INTERVAL, 30 s) and the backend uploads just those.
    more = pin_named(world, f"{prefix}b", 2)
    status = eventually(
        lambda: s if (s := world.status())["counts"]["present"] == 5 else None, timeout=120
    )
    status = world.wait_synced(present=5)
    assert status["lastSync"]["uploaded"] == 2
    world.assert_objects_match_kubo(more)
    eventually(lambda: world.pinsets.get("node")["status"]["counts"]["pins"] == 5)

    # A pin removed from the node is no longer wanted: Prune deletes it from the bucket.
    world.ipfs.ipfs("pin", "rm", first[0])
    eventually(lambda: f"pins/{first[0]}.car" not in world.bucket.keys(), timeout=120)
    status = world.wait_synced(present=4)
    assert status["counts"]["desired"] == 4
    assert "changed" in world.operator.log()
