"""The operator's cost follows change, not size: what issue 8 found, each as an end-to-end test.

Real API server, Kubo, MinIO and the operator as a subprocess (the ``world`` of test_sync).
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import httpx
import kubernetes
import kubernetes.watch
import pytest
from multiformats import CID, multihash
from prometheus_client.parser import text_string_to_metric_families

from pinsync import cids, planner
from tests.e2e.conftest import World
from tests.kubetools import create_secret, eventually

pytestmark = pytest.mark.e2e


def test_a_deleted_pinset_leaves_its_backend_clean_and_quiet(world: World) -> None:
    keep, drop = world.add(2, 2000)
    world.backend()
    world.pinsets.create("keep", {"cids": [keep], "backends": ["minio"]})
    world.pinsets.create("drop", {"cids": [drop], "backends": ["minio"]})
    status = world.wait_synced(present=2)
    assert set(status["marked"]["sources"]) == {"keep", "drop"}

    world.pinsets.api.delete_namespaced_custom_object(
        "pinsync.io", "v1alpha1", world.namespace, "pinsets", "drop"
    )

    def forgotten() -> dict[str, Any] | None:
        status = world.wait_synced()
        gone = "drop" not in status["marked"]["sources"] and status["counts"]["desired"] == 1
        return status if gone else None

    status = eventually(forgotten, timeout=60)
    token = status["dirty"]["token"]
    # Passes keep coming (a PinSet change wakes the backend); none of them marks again.
    for _ in range(3):
        world.pinsets.patch("keep", {"metadata": {"labels": {"touched": str(time.time_ns())}}})
        time.sleep(3)
    status = world.status()
    assert status["dirty"]["token"] == token and not status["dirty"]["dirty"]
    world.pinsets.wait_condition("keep", "Ready", "True")


def v0_of(cid: str) -> str:
    """The CIDv0 spelling of a dag-pb CIDv1 (what `ipfs cid format -v 0` prints)."""
    return str(CID.decode(cid).set(base="base58btc", version=0))


def test_a_cidv0_and_its_cidv1_are_stored_once_and_satisfy_each_other(world: World) -> None:
    v1 = world.ipfs.add(os.urandom(300_000))  # > one chunk: a dag-pb root, so it has a CIDv0
    v0 = v0_of(v1)
    assert v0.startswith("Qm") and cids.same(v0, v1)
    world.backend()
    world.pinsets.create("both", {"cids": [v0, v1], "backends": ["minio"]})
    status = world.wait_synced(present=1)
    assert status["counts"] == {"desired": 1, "present": 1, "missing": 0, "failed": 0}
    cars = {k for k in world.bucket.keys() if k.endswith(".car")}
    assert cars == {f"pins/{v0}.car"}  # named as the PinSet first wrote it
    assert world.bucket.read(f"pins/{v0}.car") == world.ipfs.export_car(v0)
    assert world.pinsets.get("both")["status"]["counts"]["pins"] == 1

    # Spelling it once instead of twice is no change at all.
    token = status["dirty"]["token"]
    world.pinsets.patch("both", {"spec": {"cids": [v1]}})
    world.pinsets.wait_condition("both", "Ready", "True")
    assert world.status()["dirty"]["token"] == token
    # Another PinSet that names the CIDv1 only is satisfied by the stored CIDv0 object.
    world.pinsets.create("v1only", {"cids": [v1], "backends": ["minio"]})

    def resynced() -> dict[str, Any] | None:
        status = world.wait_synced()
        return status if status["lastSync"]["token"] > token else None

    status = eventually(resynced)
    assert status["lastSync"]["uploaded"] == 0 and status["counts"]["present"] == 1
    assert {k for k in world.bucket.keys() if k.endswith(".car")} == {f"pins/{v0}.car"}


def unfetchable(count: int) -> list[str]:
    """CIDs of content nobody has."""
    return [
        str(CID("base32", 1, "raw", multihash.digest(os.urandom(32), "sha2-256")))
        for _ in range(count)
    ]


def attempts_of(status: dict[str, object], names: list[str]) -> dict[str, int]:
    """Attempts per CID, decoded from the compact ``retries`` the way the operator reads it."""
    listed = [planner.Failure.from_status(f) for f in status.get("failures") or ()]  # type: ignore[attr-defined]
    found = planner.unpack(status.get("retries"), {cids.key(n) or n: n for n in names}, listed)  # type: ignore[arg-type]
    return {f.cid: f.attempts for f in found.values()}


def test_backoff_of_more_than_50_failing_pins_survives_a_restart(world: World) -> None:
    missing = unfetchable(planner.MAX_LISTED + 20)
    world.backend()
    world.pinsets.create(
        "lost", {"cids": missing, "backends": ["minio"], "ipfs": {"pinTimeout": "500ms"}}
    )

    def all_retried() -> dict[str, int] | None:
        attempts = attempts_of(world.status(), missing)
        return attempts if len(attempts) == len(missing) and min(attempts.values()) >= 2 else None

    before = eventually(all_retried, timeout=120, interval=1)
    status = world.status()
    assert len(status["failures"]) == planner.MAX_LISTED
    assert status["counts"]["failed"] == len(missing)
    pinset_before = attempts_of(world.pinsets.get("lost")["status"], missing)
    assert len(pinset_before) == len(missing)

    world.operator.restart()
    started = time.time()
    # The first pass after the restart carries every pin's attempts over: none starts again at 1.
    eventually(
        lambda: (
            world.status()["lastSync"]["finishedAt"]
            >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        ),
        timeout=120,
        interval=1,
    )
    after = attempts_of(world.status(), missing)
    assert after.keys() == before.keys()
    assert all(after[c] >= before[c] for c in missing), "backoff was forgotten by the restart"
    assert world.status()["counts"]["failed"] == len(missing)
    pinset_after = attempts_of(world.pinsets.get("lost")["status"], missing)
    assert all(pinset_after[c] >= pinset_before[c] for c in missing)
    # And the size of what holds them stays small.
    assert len(str(world.status().get("retries"))) < 4096


def test_progress_is_visible_while_a_sync_runs(world: World) -> None:
    cids_ = world.add(300, 512 * 1024)  # long enough for several 2 s progress writes
    world.backend(sync={"concurrency": 1})
    world.pinsets.create("many", {"cids": cids_, "backends": ["minio"]})
    seen: list[int] = []

    def mid_sync() -> bool:
        status = world.status()
        present = (status.get("counts") or {}).get("present", 0)
        if status.get("phase") == "Syncing" and 0 < present < len(cids_):
            seen.append(present)
        return len(set(seen)) >= 2  # moved at least twice while the same pass ran

    eventually(mid_sync, timeout=120, interval=0.2)
    status = world.status()
    assert status["bytesTransferred"] > 0
    # Ready stays False only because pins are missing; the sync itself is not a failure.
    ready = world.backends.condition("minio", "Ready")
    assert ready is not None and ready["reason"] == "Syncing"
    world.wait_synced(present=len(cids_), timeout=300)
    assert world.backends.condition("minio", "Ready")["status"] == "True"  # type: ignore[index]


def test_a_secret_value_that_is_not_text_is_named_never_shown(world: World) -> None:
    value = b"\xff\xfe" + os.urandom(16)
    kubernetes.client.CoreV1Api(world.k8s).create_namespaced_secret(
        world.namespace,
        {
            "metadata": {"name": "binary"},
            "data": {
                "accessKeyId": base64.b64encode(b"minio").decode(),
                "secretAccessKey": base64.b64encode(value).decode(),
            },
        },
    )
    world.backend(credentialsSecretRef={"name": "binary"})
    cond = world.backends.wait_condition("minio", "Stalled", "True", "SecretValueInvalid")
    assert "secretAccessKey" in cond["message"]
    assert base64.b64encode(value).decode() not in json.dumps(world.backends.get("minio"))


def test_a_read_only_backend_missing_pins_is_not_ready(world: World) -> None:
    present, absent = world.add(2, 3000)
    world.backend(name="writer")
    world.pinsets.create("one", {"cids": [present], "backends": ["writer"]})
    world.wait_synced("writer", present=1)
    world.backend(name="mirror", accessMode="ReadOnly")  # same bucket and prefix
    world.pinsets.create("two", {"cids": [present, absent], "backends": ["mirror"]})
    cond = world.backends.wait_condition("mirror", "Ready", "False", "ReadOnlyIncomplete")
    assert "1 of 2 pins are missing" in cond["message"]
    assert f"pins/{absent}.car" not in world.bucket.keys()
    world.pinsets.wait_condition("two", "Ready", "False")


def failure_metric(world: World) -> float:
    scraped = httpx.get(world.operator.metrics_url, timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.name == "pinsync_pin_failures_total"
        and s.labels.get("namespace") == world.namespace
        and s.labels.get("backend") == "minio"
    )


def test_a_backend_kept_dirty_by_failing_pins_is_audited_not_health_checked_each_pass(
    world: World,
) -> None:
    missing = unfetchable(3)
    world.backend(audit={"interval": "3s"})
    world.pinsets.create(
        "lost", {"cids": missing, "backends": ["minio"], "ipfs": {"pinTimeout": "500ms"}}
    )

    def retried() -> bool:
        attempts = attempts_of(world.status(), missing)
        return len(attempts) == 3 and min(attempts.values()) >= 2

    eventually(retried, timeout=120, interval=1)
    first = world.status()
    before = failure_metric(world)
    attempts = sum(attempts_of(world.status(), missing).values())
    after = failure_metric(world)
    assert before <= attempts <= after  # each failed attempt counted once, not once per pass
    # Several passes later: audited and measured again, but its health was not re-checked.
    audited = eventually(
        lambda: (
            (s := world.status())["lastAudit"]["finishedAt"]
            > first.get("lastAudit", {}).get("finishedAt", "")
            and s
        ),
        timeout=60,
    )
    assert audited["dirty"]["dirty"] and audited["lastAudit"]["missing"] == 3
    assert audited["lastHealthCheck"] == first["lastHealthCheck"]
    assert audited["dirty"]["token"] == first["dirty"]["token"]  # known failures are not drift


def test_conditions_agree_with_the_dirty_state_in_every_status_write(world: World) -> None:
    cids_ = world.add(40, 2000)
    world.backend()
    world.pinsets.create("p", {"cids": cids_, "backends": ["minio"]})
    synced = world.wait_synced(present=40)
    since = synced_version(world)
    watch = kubernetes.watch.Watch()
    seen: list[dict[str, Any]] = []
    annotations = {
        "pinsync.io/mark-dirty": "check",
        "pinsync.io/sync-requested-at": "2026-12-01T00:00:00Z",
    }
    world.backends.patch("minio", {"metadata": {"annotations": annotations}})
    for event in watch.stream(
        world.backends.api.list_namespaced_custom_object,
        "pinsync.io",
        "v1alpha1",
        world.namespace,
        "storagebackends",
        resource_version=since,
        timeout_seconds=60,
    ):
        status = event["object"].get("status") or {}
        seen.append(status)
        done = status.get("lastHandledSyncRequest") and not status["dirty"]["dirty"]
        if done and (status.get("lastSync") or {}).get("token", 0) >= status["dirty"]["token"]:
            watch.stop()
    assert any(s["dirty"]["dirty"] for s in seen) and not seen[-1]["dirty"]["dirty"]
    for status in seen:
        conds = {c["type"]: c for c in status["conditions"]}
        # Synced is exactly "not dirty", in the very same write.
        assert (conds["Synced"]["status"] == "True") == (not status["dirty"]["dirty"]), status
        # A verify-only full sync with every pin present never takes Ready away.
        assert conds["Ready"]["status"] == "True", conds["Ready"]
    assert synced["counts"]["present"] == seen[-1]["counts"]["present"] == 40


def synced_version(world: World) -> str:
    return str(world.backends.get("minio")["metadata"]["resourceVersion"])


def test_a_pinset_whose_backend_is_stalled_is_stalled_naming_it(world: World) -> None:
    cid = world.add(1, 1000)[0]
    create_secret(
        world.k8s, world.namespace, "wrong", {"accessKeyId": "nobody", "secretAccessKey": "x"}
    )
    world.backend(name="locked", credentialsSecretRef={"name": "wrong"})
    world.pinsets.create("p", {"cids": [cid], "backends": ["locked"]})
    world.backends.wait_condition("locked", "Stalled", "True", "AuthFailed")
    cond = world.pinsets.wait_condition("p", "Stalled", "True", "BackendStalled")
    assert "StorageBackend locked" in cond["message"] and "AuthFailed" in cond["message"]
    assert world.pinsets.condition("p", "Reconciling")["status"] == "False"  # type: ignore[index]


def test_unfetchable_cids_hold_back_neither_their_pinset_nor_the_others(world: World) -> None:
    """20 CIDs nobody has, among 300 whose blocks are on the node, with a long pinTimeout: the
    300 are pinned within seconds (each unfetchable one used to hold a batch of 32 for the
    whole timeout), and a PinSet sharing the backend stays Ready while those fail."""
    local = [world.ipfs.add(os.urandom(1000), pin=False) for _ in range(300)]
    missing = unfetchable(20)
    [kept] = world.add(1, 2000)
    world.backend()
    world.pinsets.create("kept", {"cids": [kept], "backends": ["minio"]})
    world.pinsets.wait_condition("kept", "Ready", "True")
    spec = {"cids": local + missing, "backends": ["minio"], "ipfs": {"pinTimeout": "5m"}}
    world.pinsets.create("mixed", spec)
    name = f"pinsync/{world.namespace}/mixed"

    def pinned() -> set[str]:
        listed = world.ipfs.ipfs("pin", "ls", "--type=recursive", "--names").decode().split("\n")
        return {line.split()[0] for line in listed if line.endswith(f" {name}")}

    eventually(lambda: pinned() >= set(local), timeout=45, interval=1)
    assert not pinned() & set(missing)
    # The backend has every local pin and keeps failing the unfetchable ones (SyncFailed,
    # retried): the PinSet that has nothing to do with them is Ready again once that sync
    # is reported, and stays so while they are retried.
    world.backends.wait_condition("minio", "Synced", "False", "SyncFailed", timeout=60)
    status = world.status()
    assert status["counts"]["present"] == len(local) + 1
    assert status["counts"]["failed"] == len(missing)
    world.pinsets.wait_condition("kept", "Ready", "True", timeout=30)
    # Still dirty, so not audited again for an hour; usage was measured after the uploads.
    objects = 2 * (len(local) + 1)  # a CAR and a sidecar a pin
    eventually(lambda: world.status()["usage"]["objects"] == objects, timeout=30)
    first = world.status()["lastSync"]["finishedAt"]
    eventually(lambda: world.status()["lastSync"]["finishedAt"] > first, timeout=90)
    assert world.status()["dirty"]["dirty"]  # a retry, failed again
    assert world.pinsets.condition("kept", "Ready")["status"] == "True"  # type: ignore[index]


def test_pins_that_landed_in_a_failed_pass_are_not_sent_again_by_its_retries(
    world: World,
) -> None:
    """A pass that uploads 5 pins and fails 2 leaves the mark set; the passes retrying the 2
    built on a record of what was present before the failed pass and sent the 5 again, each
    retry (up to 5,000 pins per retry)."""
    world.bucket.client.put_bucket_versioning(
        Bucket=world.bucket.name, VersioningConfiguration={"Status": "Enabled"}
    )
    world.backend()
    world.wait_synced()
    good, missing = world.add(5, 2000), unfetchable(2)
    world.pinsets.create(
        "some", {"cids": [*good, *missing], "backends": ["minio"], "ipfs": {"pinTimeout": "500ms"}}
    )
    eventually(
        lambda: min(attempts_of(world.status(), missing).values(), default=0) >= 3,
        timeout=120,
        interval=1,
    )
    pages = world.bucket.client.get_paginator("list_object_versions").paginate(
        Bucket=world.bucket.name
    )
    versions = [v["Key"] for page in pages for v in page.get("Versions", ())]
    cars = [key for key in versions if key.endswith(".car")]
    assert sorted(cars) == sorted(f"pins/{cid}.car" for cid in good)  # each written once
