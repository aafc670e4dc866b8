"""The typed views of status, and the guarded write of a backend's conditions."""

from __future__ import annotations

from typing import Any

from pinsync import conditions, dirty, status
from pinsync.reconciling import marking

FULL = {
    "phase": "Idle",
    "observedGeneration": 3,
    "dirty": {"dirty": True, "reasons": ["PinSet a changed"], "token": 7, "since": "T0"},
    "conditions": [*conditions.ready("Synced", "4 of 4"), conditions.synced(False, "Dirty")],
    "counts": {"desired": 4, "present": 3, "missing": 1, "failed": 1, "pruneFailed": 2},
    "lastSync": {"finishedAt": "2026-12-01T00:00:00Z", "result": "Failed", "token": 7},
    "lastAudit": {"finishedAt": "2026-12-01T01:00:00Z", "missing": 1, "deep": True},
    "lastHealthCheck": {"finishedAt": "2026-12-01T02:00:00Z", "latencyMs": 4.5},
    "learned": {"hostKey": "ssh-ed25519 AAAA"},
    "failures": [{"cid": "bafy1", "reason": "PinFailed"}],
    "retries": "packed",
    "sources": [{"name": "a", "digest": "d1", "pins": 4, "present": 3, "failed": 1}],
    "marked": {"generation": 3, "credentialsVersion": "9", "sources": {"a": "d1", "b": None}},
    "lastHandledMarkDirty": "",
    "lastHandledHealthRequest": "H1",
    "usage": {"bytes": 10, "objects": 2},
    "bytesTransferred": 10,
}


def backend(**fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": "b", "namespace": "ns", "generation": 3}, "status": fields}


def test_a_backend_view_reads_every_field_typed() -> None:
    view = status.BackendStatus.of(backend(**FULL))
    assert view.dirty == dirty.DirtyState(
        dirty=True, reasons=("PinSet a changed",), token=7, since="T0"
    )
    assert view.conditions.is_true("Ready") and view.conditions.is_false("Synced")
    assert view.conditions.reason_of("Synced") == "Dirty" and view.conditions.get("Healthy") is None
    assert (view.counts.desired, view.counts.failed, view.counts.prune_failed) == (4, 1, 2)
    assert view.last_sync.result == "Failed" and view.last_sync.token == 7
    assert view.last_audit.deep and view.last_audit.missing == 1
    assert view.last_health_check.latency_ms == 4.5
    assert view.learned == {"hostKey": "ssh-ed25519 AAAA"}
    assert view.failures.retries == "packed" and view.failures.listed[0]["cid"] == "bafy1"
    assert view.source("a") == status.SourceEntry(
        name="a", digest="d1", pins=4, present=3, failed=1
    )
    assert view.source("b") is None
    assert view.marked is not None and view.marked.sources == {"a": "d1", "b": None}
    assert view.handled(status.MARK_DIRTY) == "" and view.handled(status.SYNC_REQUESTED_AT) is None
    assert view.handled(status.HEALTH_REQUESTED_AT) == "H1"
    assert (view.phase, view.observed_generation, view.bytes_transferred) == ("Idle", 3, 10)


def test_an_empty_or_absent_status_reads_as_defaults() -> None:
    for obj in ({"metadata": {}}, backend(), {"metadata": {}, "status": None}, None):
        view = status.BackendStatus.of(obj)
        assert view == status.BackendStatus()
        assert not view.dirty.dirty and view.counts.failed is None and view.marked is None
        assert view.last_sync.token is None and view.last_health_check.finished_at is None
        assert view.current


def test_nulls_written_by_merge_patches_read_as_absent() -> None:
    view = status.BackendStatus.of(
        backend(counts={"desired": 2, "pruneFailed": None}, lastSync=None)
    )
    assert view.counts.prune_failed is None and view.last_sync == status.LastSync()


def test_a_bare_timestamp_health_check_of_an_older_operator_is_read() -> None:
    view = status.BackendStatus.of(backend(lastHealthCheck="2026-01-01T00:00:00Z"))
    assert view.last_health_check == status.HealthCheck(finished_at="2026-01-01T00:00:00Z")


def test_per_pinset_entries_are_current_while_dirty_for_the_mark_the_last_sync_answered() -> None:
    def current(token: int, last: int | None) -> bool:
        raw = backend(dirty={"dirty": True, "token": token}, lastSync={"token": last})
        return status.BackendStatus.of(raw).current

    assert current(7, 7)
    assert not current(8, 7)
    assert not current(1, None)


def test_a_pinset_view_reads_its_failures_counts_and_restore_echo() -> None:
    raw = {
        "metadata": {"name": "p"},
        "status": {
            "counts": {"pins": 5, "syncedBackends": 1, "restored": 2},
            "failures": [{"cid": "bafy2"}],
            "retries": "r1",
            "restoreFailures": [{"cid": "bafy3"}],
            "restoreRetries": "r2",
            "restoreRequestedAt": "R1",
        },
    }
    view = status.PinSetStatus.of(raw)
    assert (view.counts.pins, view.counts.synced_backends, view.counts.restored) == (5, 1, 2)
    assert view.failures == status.Failures(({"cid": "bafy2"},), "r1")
    assert view.restore_failures == status.Failures(({"cid": "bafy3"},), "r2")
    assert view.restore_requested_at == "R1"
    assert status.PinSetStatus.of(None).restore_requested_at is None


def test_a_view_is_read_only() -> None:
    view = status.BackendStatus.of(backend(**FULL))
    try:
        view.phase = "Syncing"  # type: ignore[misc]
    except AttributeError:
        return
    raise AssertionError("a view must not change")


def test_a_synced_true_decided_before_a_mark_is_not_written_over_it() -> None:
    """A pass that began clean settles with Synced True; a mark landed meanwhile. The guarded
    write re-decides on the object as it now is and leaves the mark's Synced False standing."""
    clean = backend(dirty={"dirty": False, "token": 1})
    updates = [*conditions.ready("Synced", "4 of 4"), conditions.synced(True, "Synced", "4 of 4")]
    assert conditions.find(marking.written(clean, updates, {})["conditions"], "Synced")
    marked = backend(**marking.marked(clean, ["PinSet a changed"]))
    patch = marking.written(marked, updates, {"phase": "Idle"})
    synced = conditions.find(patch["conditions"], "Synced")
    assert synced is not None and synced["status"] == "False" and synced["reason"] == "Dirty"
    assert conditions.is_true(patch["conditions"], "Ready") and patch["phase"] == "Idle"


def test_a_synced_false_is_not_written_on_a_clean_backend() -> None:
    clean = backend(dirty={"dirty": False, "token": 2}, conditions=[conditions.synced(True, "S")])
    patch = marking.written(clean, conditions.unsynced("SyncFailed", "1 pin(s) failed"), {})
    assert conditions.is_true(patch["conditions"], "Synced")
    assert conditions.is_true(patch["conditions"], "Reconciling")


def test_a_guarded_write_that_changes_nothing_writes_nothing() -> None:
    obj = backend(**FULL)
    done = {**FULL, **marking.written(obj, conditions.ready("Synced", "4 of 4"), {})}
    assert marking.written(backend(**done), conditions.ready("Synced", "4 of 4"), {}) == {}


def test_unsynced_goes_with_its_trio() -> None:
    failed = conditions.unsynced("SyncFailed", "m")
    assert [(c["type"], c["status"]) for c in failed] == [
        ("Synced", "False"),
        ("Ready", "False"),
        ("Reconciling", "True"),
        ("Stalled", "False"),
    ]
    refused = conditions.unsynced("WritesDisabled", "m", trio=conditions.stalled)
    assert conditions.is_true(refused, "Stalled") and not conditions.is_true(refused, "Synced")
