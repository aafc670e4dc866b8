"""Restore decisions over plain objects: policy, request handshake, backend order, verdicts."""

from __future__ import annotations

import datetime
from typing import Any

from pinsync import planner, reasons, restoreplanner
from pinsync.restoreplanner import Attempt

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
CIDV0 = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"
CIDV1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def pinset(
    restore: str | None = None, annotation: str | None = None, handled: str | None = None
) -> dict[str, Any]:
    annotations = {} if annotation is None else {restoreplanner.REQUESTED_AT: annotation}
    status = {} if handled is None else {"restoreRequestedAt": handled}
    spec = {} if restore is None else {"restore": restore}
    return {"metadata": {"annotations": annotations}, "spec": spec, "status": status}


def backend(
    name: str,
    *,
    priority: int | None = None,
    healthy: bool | None = True,
    stalled: bool = False,
    suspend: bool = False,
    present: int | None = None,
    digest: str = "d1",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "s3", "suspend": suspend}
    if priority is not None:
        spec["restorePriority"] = priority
    conds = [{"type": "Stalled", "status": "True" if stalled else "False"}]
    if healthy is not None:
        conds.append({"type": "Healthy", "status": "True" if healthy else "False"})
    status: dict[str, Any] = {"conditions": conds}
    if present is not None:
        status["sources"] = [{"name": "p", "digest": digest, "present": present}]
    return {"metadata": {"name": name}, "spec": spec, "status": status}


def order(*backends: dict[str, Any]) -> list[str]:
    return [c.name for c in restoreplanner.ranked(backends, "p", "d1", 2)]


def test_auto_is_the_default_and_restores_without_being_asked() -> None:
    assert restoreplanner.policy(pinset()) == "Auto"
    assert restoreplanner.allowed(pinset())


def test_manual_restores_only_while_a_new_request_is_unhandled() -> None:
    assert not restoreplanner.allowed(pinset("Manual"))
    asked = pinset("Manual", annotation="2026-12-02T03:00:00Z")
    assert restoreplanner.request(asked) == "2026-12-02T03:00:00Z"
    assert restoreplanner.allowed(asked)
    handled = pinset("Manual", annotation="2026-12-02T03:00:00Z", handled="2026-12-02T03:00:00Z")
    assert restoreplanner.request(handled) is None
    assert not restoreplanner.allowed(handled)


def test_any_new_annotation_value_is_a_new_request() -> None:
    again = pinset("Manual", annotation="again", handled="2026-12-02T03:00:00Z")
    assert restoreplanner.request(again) == "again"


def test_backends_are_tried_by_priority_lowest_first_the_default_being_100() -> None:
    assert order(backend("ftp", priority=200), backend("s3", priority=5), backend("sftp")) == [
        "s3",
        "sftp",
        "ftp",
    ]


def test_among_equal_priorities_a_complete_then_a_healthy_backend_goes_first() -> None:
    got = order(
        backend("a-unhealthy", healthy=False, present=2),
        backend("b-partial", present=1),
        backend("c-complete", present=2),
        backend("d-stale", present=2, digest="old"),
    )
    assert got == ["c-complete", "a-unhealthy", "b-partial", "d-stale"]


def test_an_unhealthy_backend_is_kept_last_but_suspended_and_stalled_ones_are_never_used() -> None:
    got = order(
        backend("full", healthy=False),
        backend("unknown", healthy=None),
        backend("stalled", stalled=True),
        backend("paused", suspend=True),
    )
    assert got == ["unknown", "full"]


def test_a_backend_stalled_only_because_its_service_takes_no_writes_is_still_restored_from() -> (
    None
):
    writes_off = backend("writes-off", stalled=True)
    writes_off["status"]["conditions"][0]["reason"] = "WritesDisabled"
    auth = backend("auth", stalled=True)
    auth["status"]["conditions"][0]["reason"] = "AuthFailed"
    assert order(writes_off, auth) == ["writes-off"]


def test_a_backend_its_health_check_found_unreachable_is_not_asked() -> None:
    gone = backend("gone", healthy=False)
    gone["status"]["conditions"][1]["reason"] = "Unreachable"
    assert order(gone, backend("up")) == ["up"]


def test_nothing_found_anywhere_is_not_on_any_backend() -> None:
    reason, message = restoreplanner.verdict(
        [Attempt(backend="a", reason="PinNotFound"), Attempt(backend="b", reason="PinNotFound")]
    )
    assert reason == reasons.NOT_ON_ANY_BACKEND.name and message == "not on a, b"
    reason, message = restoreplanner.verdict([])
    assert reason == reasons.NOT_ON_ANY_BACKEND.name and "no usable backend" in message


def test_the_first_backend_that_had_the_pin_but_failed_names_the_reason() -> None:
    reason, message = restoreplanner.verdict(
        [
            Attempt(backend="a", reason="PinNotFound"),
            Attempt(backend="b", reason="CarInvalid", message="block x does not match its hash"),
            Attempt(backend="c", reason="Unreachable", message="refused"),
        ]
    )
    assert reason == "CarInvalid"
    assert message == (
        "a: PinNotFound; b: CarInvalid (block x does not match its hash); c: Unreachable (refused)"
    )


def test_a_failed_restore_waits_for_its_backoff_unless_forgiven_by_a_request() -> None:
    failure = planner.failed(None, "c", "NotOnAnyBackend", "", now=NOW)
    assert failure.next_retry_at is not None
    assert not restoreplanner.due(failure, NOW)
    assert restoreplanner.due(failure, failure.next_retry_at)
    assert restoreplanner.due(None, NOW)
    forgiven = restoreplanner.forgiven({"c": failure})["c"]
    assert restoreplanner.due(forgiven, NOW) and forgiven.attempts == failure.attempts


def test_a_pin_is_looked_for_under_every_name_a_backend_may_store_it_by() -> None:
    assert restoreplanner.spellings(CIDV0) == [CIDV0, CIDV1]
    assert restoreplanner.spellings(CIDV1) == [CIDV1, CIDV0]
    raw = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert restoreplanner.spellings(raw) == [raw]  # raw leaves have no CIDv0 form


def test_a_from_backend_source_is_tried_before_any_other() -> None:
    """It holds every pin of the PinSet; the targets, mid-migration, hold few."""
    backends = (backend("s3", priority=5, present=2), backend("old", priority=200))
    ranked = restoreplanner.ranked(backends, "p", "d1", 2, first="old")
    assert [c.name for c in ranked] == ["old", "s3"]
    assert order(*backends) == ["s3", "old"]
