"""Sync end to end: real API server, real Kubo, real MinIO, the operator as a subprocess."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import World
from tests.kubetools import create_secret, eventually

pytestmark = pytest.mark.e2e


def test_new_pins_are_transferred_byte_identical_and_the_mark_cleared(world: World) -> None:
    world.backend()
    world.wait_synced()
    cids = world.add(3, 300_000)
    world.pinsets.create("media", {"cids": cids, "backends": ["minio"]})
    status = world.wait_synced(present=3)
    assert status["counts"] == {"desired": 3, "present": 3, "missing": 0, "failed": 0}
    assert status["lastSync"]["result"] == "Succeeded" and status["lastSync"]["uploaded"] == 3
    world.assert_objects_match_kubo(cids)
    world.pinsets.wait_condition("media", "Ready", "True")
    assert world.pinsets.get("media")["status"]["synced"] == "1/1"

    # More pins: only the new one is transferred.
    more = world.add(1, 1000)
    world.pinsets.patch("media", {"spec": {"cids": [*cids, *more]}})
    eventually(
        lambda: (
            world.status()["lastSync"]["uploaded"] == 1 and world.status()["counts"]["present"] == 4
        )
    )
    world.wait_synced()
    world.assert_objects_match_kubo(more)
    reasons = {e.reason for e in world.events()}
    assert {"SyncStarted", "Synced"} <= reasons
    labels = {"namespace": world.namespace, "backend": "minio"}

    def scraped() -> bool:
        # The gauge is set once the status write has returned to the operator, a moment after
        # the API server made it visible to us: read it until it agrees.
        text = httpx.get(world.operator.metrics_url, timeout=10).text
        samples = {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.labels == labels
        }
        assert samples["pinsync_uploaded_pins_total"] == 4
        assert samples["pinsync_backend_dirty"] == 0
        return True

    eventually(scraped, timeout=30)


def test_mark_dirty_annotation_is_recorded_echoed_and_synced(world: World) -> None:
    world.backend()
    world.wait_synced()
    before = world.status()["dirty"]["token"]
    world.backends.patch(
        "minio", {"metadata": {"annotations": {"pinsync.io/mark-dirty": "rotated disks"}}}
    )
    eventually(lambda: world.status().get("lastHandledMarkDirty") == "rotated disks")
    status = world.wait_synced()
    assert status["dirty"]["token"] > before
    assert status["lastSync"]["token"] > before


def test_sync_requested_annotation_forces_a_full_sync(world: World) -> None:
    cids = world.add(2, 5000)
    world.backend()
    world.pinsets.create("p", {"cids": cids, "backends": ["minio"]})
    world.wait_synced(present=2)
    key = f"pins/{cids[0]}.car"
    good = world.bucket.read(key)
    world.bucket.write(key, good[:100])  # still listed (sidecar present), but truncated

    def synced_after(token: int) -> dict[str, Any]:
        return eventually(
            lambda: world.wait_synced() if world.status()["lastSync"]["token"] > token else None
        )

    # An ordinary sync trusts the listing: the damage stays.
    token = world.status()["dirty"]["token"]
    annotations = {"pinsync.io/mark-dirty": "ordinary"}
    world.backends.patch("minio", {"metadata": {"annotations": annotations}})
    assert synced_after(token)["lastSync"]["uploaded"] == 0
    assert world.bucket.read(key) == good[:100]

    # A requested sync verifies what is present, and replaces what fails.
    token = world.status()["dirty"]["token"]
    annotations = {"pinsync.io/sync-requested-at": "2026-11-24T12:00:00Z"}
    world.backends.patch("minio", {"metadata": {"annotations": annotations}})
    status = synced_after(token)
    assert status["lastHandledSyncRequest"] == "2026-11-24T12:00:00Z"
    assert status["lastSync"]["uploaded"] == 1
    world.assert_objects_match_kubo(cids)


def test_object_deleted_in_minio_is_reuploaded_by_the_audit(world: World) -> None:
    cids = world.add(2, 5000)
    world.backend(audit={"interval": "2s"})
    world.pinsets.create("p", {"cids": cids, "backends": ["minio"]})
    world.wait_synced(present=2)
    world.bucket.delete(f"pins/{cids[0]}.car")
    eventually(lambda: f"pins/{cids[0]}.car" in world.bucket.keys(), timeout=60)
    world.wait_synced()
    world.assert_objects_match_kubo(cids)
    assert "DriftDetected" in {e.reason for e in world.events()}
    # The next audit after the repair measures usage again.
    usage = eventually(
        lambda: world.status()["usage"] if world.status()["usage"]["objects"] == 4 else None
    )
    assert usage["bytes"] >= 10_000


def test_object_corrupted_in_minio_is_found_by_deep_audit_and_replaced(world: World) -> None:
    cids = world.add(1, 50_000)
    world.backend(audit={"interval": "2s", "deep": True})
    world.pinsets.create("p", {"cids": cids, "backends": ["minio"]})
    world.wait_synced(present=1)
    key = f"pins/{cids[0]}.car"
    good = world.bucket.read(key)
    world.bucket.write(key, good[:-100] + bytes(100))  # same size, different bytes
    eventually(lambda: world.bucket.read(key) == good, timeout=60)
    audit = eventually(
        lambda: world.status().get("lastAudit") if world.status()["lastAudit"]["damaged"] else None
    )
    assert audit["deep"] is True


def test_a_mark_made_during_a_running_sync_is_not_lost(world: World) -> None:
    cids = world.add(24, 1_000_000)
    world.backend(sync={"concurrency": 1})
    world.pinsets.create("p", {"cids": cids, "backends": ["minio"]})
    eventually(lambda: world.status().get("phase") == "Syncing", interval=0.05)
    world.backends.patch(
        "minio", {"metadata": {"annotations": {"pinsync.io/mark-dirty": "during"}}}
    )
    eventually(lambda: world.status().get("lastHandledMarkDirty") == "during", interval=0.1)
    marked_token = world.status()["dirty"]["token"]
    status = world.wait_synced()
    # The pass that was running when the mark came in could not clear it; a later one did.
    assert status["lastSync"]["token"] >= marked_token
    world.assert_objects_match_kubo(cids[:2])


def test_operator_killed_mid_sync_completes_after_restart_without_partial_objects(
    world: World,
) -> None:
    cids = world.add(6, 12 * 1024 * 1024)  # > one multipart part each
    world.backend(sync={"concurrency": 2})
    world.pinsets.create("p", {"cids": cids, "backends": ["minio"]})
    eventually(lambda: world.status().get("phase") == "Syncing", interval=0.05)
    world.operator.kill()
    try:
        uploads = world.bucket.client.list_multipart_uploads(Bucket=world.bucket.name)
        in_progress = {u["Key"] for u in uploads.get("Uploads", ())}
        visible = world.bucket.keys()
        assert not (in_progress & visible), "a partial upload is visible under its final name"
        for key in visible:  # whatever is visible is complete
            if key.endswith(".car"):
                assert world.bucket.read(key) == world.ipfs.export_car(key[5:-4])
        assert world.status()["dirty"]["dirty"]
    finally:
        world.operator.start()
    world.wait_synced(timeout=240)
    world.assert_objects_match_kubo(cids)


def test_minio_down_during_sync_reports_unhealthy_then_completes(world: World) -> None:
    cids = world.add(8, 4 * 1024 * 1024)
    world.backend(sync={"concurrency": 1})
    world.pinsets.create("p", {"cids": cids, "backends": ["minio"]})
    eventually(lambda: world.status().get("phase") == "Syncing", interval=0.05)
    world.s3server.stop()
    try:
        cond = world.backends.wait_condition(
            "minio", "Healthy", "False", "Unreachable", timeout=120
        )
        assert cond["message"]
        assert world.backends.condition("minio", "Reconciling")["status"] == "True"  # type: ignore[index]
    finally:
        world.s3server.start()
    world.wait_synced(timeout=240)
    world.assert_objects_match_kubo(cids)


def test_wrong_credentials_are_reported_and_never_leak(world: World) -> None:
    secret_value = f"wrong-{uuid.uuid4().hex}"
    create_secret(
        world.k8s,
        world.namespace,
        "bad",
        {"accessKeyId": "nobody", "secretAccessKey": secret_value},
    )
    world.backends.create(
        "badcreds",
        {
            "type": "s3",
            "s3": {
                "endpoint": world.s3server.endpoint,
                "bucket": world.bucket.name,
                "forcePathStyle": True,
            },
            "credentialsSecretRef": {"name": "bad"},
        },
    )
    world.backends.wait_condition("badcreds", "Healthy", "False", "AuthFailed")
    world.backends.wait_condition("badcreds", "Stalled", "True", "AuthFailed")
    time.sleep(1)
    assert secret_value not in json.dumps(world.backends.get("badcreds"))
    assert all(secret_value not in (e.message or "") for e in world.events())
    assert secret_value not in world.operator.log()


@pytest.mark.parametrize("policy", ["Retain", "Prune"])
def test_pins_no_pinset_wants_are_deleted_only_with_the_prune_policy(
    world: World, policy: str
) -> None:
    keep, drop = world.add(2, 3000)
    world.backend(sync={"deletionPolicy": policy})
    world.pinsets.create("p", {"cids": [keep, drop], "backends": ["minio"]})
    world.wait_synced(present=2)
    world.pinsets.patch("p", {"spec": {"cids": [keep]}})
    world.wait_synced(present=1)
    eventually(lambda: world.status()["lastSync"]["token"] > 1)
    keys = world.bucket.keys()
    assert f"pins/{keep}.car" in keys
    if policy == "Retain":
        assert {f"pins/{drop}.car", f"pins/{drop}.json"} <= keys
    else:
        eventually(lambda: f"pins/{drop}.car" not in world.bucket.keys())
        assert f"pins/{drop}.json" not in world.bucket.keys()
