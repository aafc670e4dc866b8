"""When ``kubectl pinsync ... --wait`` stops, and which objects a command acts on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from pinsync import kube, status
from pinsync.plugin import commands, sessions, waiting
from pinsync.reconciling import backends, marking

SYNC = waiting.Request(
    namespace="ns", name="b", annotation=status.SYNC_REQUESTED_AT, value="T1", token=5
)


def obj(conditions: Sequence[tuple[str, str, str]] = (), **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "b", "namespace": "ns"},
        "status": {
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": f"{r} message"}
                for t, s, r in conditions
            ],
            **status,
        },
    }


def test_a_sync_wait_goes_on_until_the_request_is_echoed() -> None:
    verdict = waiting.sync(obj([("Ready", "True", "Synced")], dirty={"dirty": False}), SYNC)
    assert not verdict.over and "take the request" in verdict.note


def test_a_sync_is_done_when_echoed_clean_and_ready() -> None:
    status = {"lastHandledSyncRequest": "T1", "dirty": {"dirty": False, "token": 6}}
    verdict = waiting.sync(obj([("Ready", "True", "Synced")], **status), SYNC)
    assert verdict.done and verdict.failure is None


def test_a_running_sync_is_not_judged_by_the_previous_passes_result() -> None:
    # lastSync keeps the previous pass (token 5, Failed) until the running one ends.
    status = {
        "lastHandledSyncRequest": "T1",
        "dirty": {"dirty": True, "token": 6},
        "lastSync": {"result": "Failed", "token": 5},
        "phase": "Syncing",
    }
    verdict = waiting.sync(obj([("Ready", "False", "Syncing")], **status), SYNC)
    assert not verdict.over and verdict.note == "Syncing"


def test_a_failed_pass_after_the_request_fails_the_wait_naming_pins() -> None:
    status = {
        "lastHandledSyncRequest": "T1",
        "dirty": {"dirty": True, "token": 6},
        "lastSync": {"result": "Failed", "token": 6},
        "counts": {"failed": 2},
        "failures": [{"cid": "bafy1", "reason": "ContentUnavailable"}],
    }
    verdict = waiting.sync(obj(**status), SYNC)
    assert verdict.failure == "sync failed: 2 pin(s) failed (bafy1: ContentUnavailable)"


def test_a_pass_whose_deletions_failed_fails_the_wait_counting_them() -> None:
    status = {
        "lastHandledSyncRequest": "T1",
        "dirty": {"dirty": True, "token": 6},
        "lastSync": {"result": "Failed", "token": 6},
        "counts": {"failed": 0, "pruneFailed": 1},
        "failures": [{"cid": "bafy9", "reason": "PruneFailed"}],
    }
    verdict = waiting.sync(obj(**status), SYNC)
    assert verdict.failure == "sync failed: 1 pin(s) failed (bafy9: PruneFailed)"


def test_stalled_and_suspended_end_a_sync_wait() -> None:
    stalled = waiting.sync(obj([("Stalled", "True", "SecretNotFound")]), SYNC)
    assert stalled.failure == "Stalled: SecretNotFound: SecretNotFound message"
    suspended = waiting.sync(obj([("Ready", "False", "Suspended")]), SYNC)
    assert suspended.failure is not None and "Suspended" in suspended.failure
    assert waiting.sync(None, SYNC).failure == "deleted"


def test_an_unhealthy_dirty_backend_keeps_the_sync_wait_going() -> None:
    status = {"lastHandledSyncRequest": "T1", "dirty": {"dirty": True, "token": 6}}
    verdict = waiting.sync(obj([("Healthy", "False", "Unreachable")], **status), SYNC)
    assert not verdict.over and "Unreachable" in verdict.note


HEALTH = waiting.Request(namespace="ns", name="b", annotation=status.HEALTH_REQUESTED_AT, value="H")


def test_a_health_wait_reports_the_answered_check() -> None:
    assert not waiting.health(obj([("Healthy", "True", "Reachable")]), HEALTH).over
    healthy = obj([("Healthy", "True", "Reachable")], lastHandledHealthRequest="H")
    assert waiting.health(healthy, HEALTH).done
    unhealthy = obj(
        [("Healthy", "False", "AuthFailed"), ("Stalled", "True", "AuthFailed")],
        lastHandledHealthRequest="H",
    )
    assert waiting.health(unhealthy, HEALTH).failure == "unhealthy: AuthFailed: AuthFailed message"


def test_a_health_wait_behind_a_running_sync_says_so() -> None:
    verdict = waiting.health(obj([("Healthy", "True", "Reachable")], phase="Syncing"), HEALTH)
    assert not verdict.over and "Syncing; the check follows it" in verdict.note


def test_a_health_wait_ends_on_a_stall_no_check_will_answer() -> None:
    # Stalled by its last check: the next pass checks again, and answers.
    by_check = obj([("Healthy", "False", "AuthFailed"), ("Stalled", "True", "AuthFailed")])
    assert not waiting.health(by_check, HEALTH).over
    # Stalled before any check (its Secret is missing): no pass will check.
    by_validation = obj([("Stalled", "True", "SecretNotFound")])
    assert waiting.health(by_validation, HEALTH).failure is not None
    suspended = obj([("Ready", "False", "Suspended"), ("Stalled", "False", "Suspended")])
    assert waiting.health(suspended, HEALTH).failure == "Suspended: spec.suspend is true"


RESTORE = waiting.Request(
    namespace="ns", name="p", annotation=status.RESTORE_REQUESTED_AT, value="R"
)


def test_a_restore_wait_ends_when_the_pinset_echoes_the_finished_request() -> None:
    working = obj(
        [
            (
                "Reconciling",
                "True",
                "Syncing",
            )
        ],
        counts={"restored": 1},
    )
    verdict = waiting.restore(working, RESTORE)
    assert not verdict.over and verdict.note == "Syncing message"
    done = waiting.restore(obj(restoreRequestedAt="R", counts={"restored": 2}), RESTORE)
    assert done.done and done.note == "2 pin(s) restored so far"
    failed = obj(
        [("Reconciling", "True", "RestoreFailed")],
        restoreRequestedAt="R",
        counts={"restored": 1, "restoreFailed": 1},
        restoreFailures=[{"cid": "bafy1", "reason": "NotOnAnyBackend"}],
    )
    assert waiting.restore(failed, RESTORE).failure == (
        "restore failed: 1 pin(s) (bafy1: NotOnAnyBackend)"
    )


def scope(**kwargs: Any) -> sessions.Scope:
    given = {"namespace": "ns", "all_namespaces": False, "names": [], "selector": None}
    given |= {"everything": False, "required": True} | kwargs
    return sessions.Scope.of(**given)


def test_commands_that_change_things_need_names_all_or_a_selector() -> None:
    with pytest.raises(sessions.UsageError, match="--all or -l"):
        scope()
    assert scope(required=False) == sessions.Scope(namespace="ns")
    assert scope(names=["a", "b", "a"]).names == ("a", "b")
    assert scope(everything=True, all_namespaces=True).namespace is None
    with pytest.raises(sessions.UsageError, match="not both"):
        scope(names=["a"], selector="x=y")
    with pytest.raises(sessions.UsageError, match="across all namespaces"):
        scope(names=["a"], all_namespaces=True)


def test_a_repeated_reason_gets_the_time_added_so_the_operator_sees_a_new_value() -> None:
    assert commands.mark_value("disks", None) == "disks"
    assert commands.mark_value("disks", "other") == "disks"
    repeated = commands.mark_value("disks", "disks")
    assert repeated.startswith("disks (") and repeated != "disks"


def test_a_health_request_is_pending_until_echoed() -> None:
    def backend(annotation: str | None, handled: str | None) -> dict[str, Any]:
        annotations = {status.HEALTH_REQUESTED_AT: annotation} if annotation else {}
        return {
            "metadata": {"annotations": annotations},
            "status": {"lastHandledHealthRequest": handled} if handled else {},
        }

    assert marking.health_request(backend(None, None)) is None
    assert marking.health_request(backend("T1", None)) == "T1"
    assert marking.health_request(backend("T1", "T1")) is None
    assert marking.health_request(backend("T2", "T1")) == "T2"


def test_a_health_check_records_latency_and_answers_the_request() -> None:
    fields = backends.health_check(0.01234, "T1")
    assert fields["lastHealthCheck"]["latencyMs"] == 12.3
    assert fields["lastHandledHealthRequest"] == "T1"
    # Unknown latency is written as null: a merge patch would otherwise keep the old one.
    unknown = backends.health_check(None, None)
    assert unknown["lastHealthCheck"]["latencyMs"] is None
    assert "lastHandledHealthRequest" not in unknown


def test_api_errors_show_the_servers_message_and_a_hint_for_a_missing_crd() -> None:
    denied = kube.ApiError(status=403, reason="Forbidden")
    denied.body = '{"message": "storagebackends.pinsync.io is forbidden: User \\"u\\" cannot list"}'
    assert commands.api_error(denied) == (
        'the API server answered 403: storagebackends.pinsync.io is forbidden: User "u" cannot list'
    )
    missing = kube.ApiError(status=404, reason="Not Found")
    assert commands.api_error(missing).endswith(
        "Not Found (are pinsync's CRDs installed? kubectl apply -f crds/)"
    )


def test_json_records_say_what_was_written_and_how_it_ended() -> None:
    assert commands.outcome(SYNC, None) == {
        "namespace": "ns",
        "name": "b",
        "annotation": "pinsync.io/sync-requested-at",
        "value": "T1",
    }
    failed = commands.outcome(SYNC, waiting.Verdict(failure="Stalled: X: y"))
    assert failed["result"] == "Failed" and failed["message"] == "Stalled: X: y"
    assert commands.outcome(SYNC, waiting.Verdict(note="Syncing"))["result"] == "TimedOut"
    assert commands.outcome(SYNC, waiting.Verdict(done=True))["result"] == "Done"
