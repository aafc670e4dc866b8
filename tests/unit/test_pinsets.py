"""What a PinSet reports about its backends, without Kubernetes."""

from __future__ import annotations

import datetime
from typing import Any

from pinsync import conditions, planner
from pinsync.reconciling import pinning, pinsets, sources

_minute = datetime.timedelta(minutes=1)


def backend(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "b", "labels": {"t": "x"}}, "status": status}


def test_progress_writes_do_not_change_what_pinsets_report() -> None:
    before = backend(counts={"present": 1}, phase="Syncing", bytesTransferred=10)
    after = backend(counts={"present": 900}, phase="Syncing", bytesTransferred=9000)
    assert pinsets.reported(before) == pinsets.reported(after)
    finished = backend(counts={"present": 900}, lastSync={"finishedAt": "2026-01-01T00:00:00Z"})
    assert pinsets.reported(finished) != pinsets.reported(after)


def test_a_stalled_backend_is_named_with_its_reason() -> None:
    stalled = backend(conditions=conditions.stalled("HostKeyMismatch", "key changed"))
    message = pinsets.stalled_backend([backend(), stalled])
    assert message is not None and "StorageBackend b" in message and "HostKeyMismatch" in message
    assert pinsets.stalled_backend([backend(conditions=conditions.ready("Synced"))]) is None


def summary_of(**status: Any) -> dict[str, Any]:
    source = sources.Source(name="mine", api_url="http://kubo", pins=("a", "b"))
    entry = {"name": "mine", "digest": source.digest, "present": 2, "failed": 0}
    return pinsets.backend_summary(source, backend(sources=[entry], **status))


def test_another_pinsets_failing_pins_do_not_make_this_one_unready() -> None:
    clean = summary_of(dirty={"dirty": False, "token": 3}, lastSync={"token": 3})
    assert clean["ready"]
    # The last sync answered token 4 and failed on someone else's pins; it is retried.
    failing = summary_of(dirty={"dirty": True, "token": 4}, lastSync={"token": 4})
    assert failing["ready"] and failing["pinned"] == 2
    # Marked since (an audit found objects missing): no entry counts until it is synced.
    marked = summary_of(dirty={"dirty": True, "token": 5}, lastSync={"token": 4})
    assert not marked["ready"]
    assert not summary_of(dirty={"dirty": True, "token": 1})["ready"]


def test_cids_never_tried_come_before_retries_of_failing_ones() -> None:
    now = conditions.utcnow()
    source = sources.Source(name="s", api_url="http://kubo", pins=("a", "b", "c", "d", "e"))
    due_late = planner.Failure(cid="a", reason="PinTimeout", next_retry_at=now)
    due_early = planner.Failure(cid="b", reason="PinTimeout", next_retry_at=now - _minute)
    waiting = planner.Failure(cid="c", reason="PinTimeout", next_retry_at=now + _minute)
    known = {"a": due_late, "b": due_early, "c": waiting}
    fetches = pinning.Fetches(kubo=None, name="n", timeout=1.0, wake=lambda: None)  # type: ignore[arg-type]
    fetches.running.add("e")  # being fetched: not tried twice
    assert pinning.ordered(source, {}, known, fetches) == ["d", "b", "a"]
    assert pinning.ordered(source, {"d": "x"}, known, fetches) == ["b", "a"]


def test_a_new_version_of_the_pinset_drops_queued_fetches_it_no_longer_lists() -> None:
    fetches = pinning.Fetches(kubo=None, name="n", timeout=1.0, wake=lambda: None)  # type: ignore[arg-type]
    before = sources.Source(name="s", api_url="http://kubo", pins=("a", "b"))
    fetches.retain(before)
    fetches.queued.extend(pinning.Fetch(k, k, None) for k in before.pins)
    fetches.waiting.update(before.pins)
    fetches.retain(before)  # the same version: kept as it is
    assert fetches.waiting == {"a", "b"}
    fetches.retain(sources.Source(name="s", api_url="http://kubo", pins=("b", "c")))
    assert [f.key for f in fetches.queued] == ["b"] and fetches.waiting == {"b"}
    assert fetches.busy("b") and not fetches.busy("a")


def test_a_pin_no_backend_holds_is_not_called_a_failed_restore() -> None:
    """Acceptance runs read RestoreFailed/NotOnAnyBackend for a CID never synced as "a restore
    failed": the condition says what happened instead, the network fetch."""
    cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    obj: dict[str, Any] = {"metadata": {}, "spec": {}}
    nowhere = {cid: planner.Failure(cid=cid, reason="NotOnAnyBackend", message="not on minio")}
    reason, message = pinsets.not_pinned(obj, nowhere, {})
    assert reason == "NotOnAnyBackend" and "fetching them from the network" in message
    fetch = {cid: planner.Failure(cid=cid, reason="PinTimeout", message="2m")}
    reason, message = pinsets.not_pinned(obj, nowhere, fetch)
    assert reason == "PinFailed" and "PinTimeout" in message and "no backend holds it" in message
    damaged = {cid: planner.Failure(cid=cid, reason="Damaged", message="sha256 differs")}
    reason, message = pinsets.not_pinned(obj, damaged, fetch)
    assert reason == "RestoreFailed" and "Damaged" in message
