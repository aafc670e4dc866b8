from __future__ import annotations

import datetime
import json
import random

from pinsync import planner

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_only_missing_pins_are_transferred() -> None:
    plan = planner.plan(desired={"a", "b", "c"}, present={"b", "x"}, failures={}, now=NOW)
    assert plan.transfer == ("a", "c") and plan.waiting == () and plan.prune == ()
    assert plan.verify == ()


def test_nothing_is_deleted_without_the_prune_policy() -> None:
    plan = planner.plan(desired={"a"}, present={"a", "x"}, failures={}, now=NOW)
    assert plan.prune == ()
    pruning = planner.plan(desired={"a"}, present={"a", "x"}, failures={}, now=NOW, prune=True)
    assert pruning.prune == ("x",)


def test_failed_pins_wait_for_their_retry_time() -> None:
    later = NOW + datetime.timedelta(minutes=5)
    failures = {
        "a": planner.Failure(cid="a", reason="R", next_retry_at=later),
        "b": planner.Failure(cid="b", reason="R", next_retry_at=NOW - datetime.timedelta(1)),
    }
    plan = planner.plan(desired={"a", "b"}, present=set(), failures=failures, now=NOW)
    assert plan.transfer == ("b",) and plan.waiting == ("a",)
    assert plan.next_retry_at == later and plan.missing == 2


def test_a_full_sync_verifies_present_desired_pins() -> None:
    plan = planner.plan(desired={"a", "b"}, present={"a", "z"}, failures={}, now=NOW, full=True)
    assert plan.verify == ("a",) and plan.transfer == ("b",)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    delays = [planner.backoff(n, rng=rng) for n in range(1, 15)]
    assert planner.BACKOFF_BASE / 2 <= delays[0] <= planner.BACKOFF_BASE
    assert delays[3] > planner.BACKOFF_BASE * 2
    assert max(delays) <= planner.BACKOFF_CAP


def test_failure_counts_attempts_and_round_trips_through_status() -> None:
    first = planner.failed(None, "a", "Unreachable", "down", now=NOW)
    second = planner.failed(first, "a", "Unreachable", "down", now=NOW)
    assert second.attempts == 2
    assert second.next_retry_at is not None and second.next_retry_at > NOW
    restored = planner.Failure.from_status(second.to_status())
    assert restored.attempts == 2 and restored.reason == "Unreachable"
    assert restored.next_retry_at == second.next_retry_at.replace(microsecond=0)


def test_a_wait_the_server_asked_for_is_never_undercut_by_the_backoff() -> None:
    asked = planner.failed(None, "a", "RateLimited", "429", now=NOW, at_least=900.0)
    assert asked.next_retry_at == NOW + datetime.timedelta(seconds=900)
    # A backoff already longer than the server's wait stays as it is.
    late = planner.Failure(cid="a", reason="R", attempts=20)
    longer = planner.failed(late, "a", "RateLimited", "429", now=NOW, at_least=1.0)
    assert longer.next_retry_at is not None
    assert longer.next_retry_at >= NOW + datetime.timedelta(seconds=planner.BACKOFF_CAP / 2)


def test_every_failure_survives_the_compact_form_with_its_backoff() -> None:
    failures = {
        f"k{i}": planner.failed(None, f"cid{i}", "ContentUnavailable", "gone", now=NOW)
        for i in range(5000)
    }
    packed = planner.pack(failures)
    names = {f"k{i}": f"cid{i}" for i in range(6000)}  # 1,000 more pins that never failed
    back = planner.unpack(packed, names)
    assert back.keys() == failures.keys()
    for key, failure in back.items():
        original = failures[key]
        assert failure.cid == original.cid and failure.attempts == 1
        assert failure.reason == "ContentUnavailable"
        assert original.next_retry_at is not None and failure.next_retry_at is not None
        # Rounded up, never earlier, by at most 5 % of the backoff ceiling.
        slack = (failure.next_retry_at - original.next_retry_at).total_seconds()
        assert 0 <= slack <= planner.ceiling(1) / planner.RETRY_RESOLUTION + 1


def test_listed_failures_keep_their_messages_over_the_compact_form() -> None:
    failure = planner.failed(None, "cid", "Unreachable", "connection refused", now=NOW)
    back = planner.unpack(planner.pack({"k": failure}), {"k": "cid"}, [failure])
    assert back["k"].message == "connection refused"


def test_the_compact_form_of_20000_failures_is_small() -> None:
    failures = {}
    for i in range(20_000):
        previous = None
        for _ in range(i % 7 + 1):
            previous = planner.failed(previous, f"c{i}", "PinTimeout", "", now=NOW)
        assert previous is not None
        failures[f"bafy{i:054d}"] = previous
    size = len(json.dumps(planner.pack(failures)))
    assert size < 128 * 1024, size
