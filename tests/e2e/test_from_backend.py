"""``spec.fromBackend`` end to end: leaving one backend for another with one PinSet.

Pins held only by an S3 bucket (synced there once, then the PinSet that wanted them deleted and
the node's copies lost) become a new PinSet's pins: restored onto the node from that bucket,
and replicated byte-identical to a second bucket, through the operator.
"""

from __future__ import annotations

import os

import kubernetes
import pytest

from tests.e2e.conftest import Bucket, World
from tests.e2e.test_restore import lose, pinned_as
from tests.kubetools import eventually

pytestmark = pytest.mark.e2e


def second_backend(world: World, name: str) -> Bucket:
    bucket = Bucket(world.s3server)
    world.backends.create(
        name,
        {
            "type": "s3",
            "s3": {
                "endpoint": world.s3server.endpoint,
                "bucket": bucket.name,
                "prefix": "moved",
                "forcePathStyle": True,
            },
            "credentialsSecretRef": {"name": "minio"},
        },
    )
    return bucket


def names(world: World) -> set[str]:
    listed = world.pinsets.api.list_namespaced_custom_object(
        "pinsync.io", "v1alpha1", world.namespace, "pinsets"
    )
    return {o["metadata"]["name"] for o in listed["items"]}


def test_pins_only_a_backend_holds_move_to_another_byte_identical(world: World) -> None:
    world.backend("old")
    cids = [world.ipfs.add(os.urandom(size)) for size in (200_000, 4096, 70_000)]
    world.pinsets.create("seed", {"cids": cids, "backends": ["old"]})
    world.wait_synced("old", present=3)
    before = {cid: world.ipfs.export_car(cid) for cid in cids}
    # The old backend is all that is left: nobody wants the pins any more, the node lost them.
    world.pinsets.api.delete_namespaced_custom_object(
        "pinsync.io", "v1alpha1", world.namespace, "pinsets", "seed"
    )
    eventually(lambda: "seed" not in names(world), timeout=60)
    lose(world, cids)

    new = second_backend(world, "new")
    world.pinsets.create("move", {"fromBackend": {"name": "old"}, "backends": ["new"]})
    world.wait_synced("new", present=3, timeout=180)
    for cid, car in before.items():
        assert new.read(f"moved/{cid}.car") == car
    assert pinned_as(world, cids, f"pinsync/{world.namespace}/move")
    world.pinsets.wait_condition("move", "Ready", "True", timeout=60)
    status = world.pinsets.get("move")["status"]
    assert status["counts"]["restored"] == 3
    events = [e for e in world.events() if e.reason == "Restored"]
    assert any("old: 3" in e.message for e in events), [e.message for e in events]


def test_a_source_backend_that_does_not_exist_is_named_in_a_condition(world: World) -> None:
    world.backend()
    world.pinsets.create("orphan", {"fromBackend": {"name": "nowhere"}, "backends": ["minio"]})
    cond = world.pinsets.wait_condition(
        "orphan", "Ready", "False", reason="SourceBackendNotFound", timeout=60
    )
    assert "nowhere" in cond["message"]


def test_a_source_that_is_also_a_target_is_refused_by_the_schema(world: World) -> None:
    with pytest.raises(kubernetes.client.ApiException) as refused:
        world.pinsets.create("loop", {"fromBackend": {"name": "a"}, "backends": ["a"]})
    assert "spec.fromBackend names a backend that spec.backends also targets" in refused.value.body
