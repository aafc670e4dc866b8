from __future__ import annotations

import dataclasses
import datetime
import json
import random

import pytest

from pinsync import planner

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_only_missing_pins_are_transferred() -> None:
    plan = planner.plan(desired={"a", "b", "c"}, present={"b", "x"}, failures={}, now=NOW)
    assert plan.transfer == ("a", "c") and plan.waiting == () and not plan.prune
    assert not plan.verify


def test_nothing_is_deleted_without_the_prune_policy() -> None:
    plan = planner.plan(desired={"a"}, present={"a", "x"}, failures={}, now=NOW)
    assert not plan.prune
    pruning = planner.plan(desired={"a"}, present={"a", "x"}, failures={}, now=NOW, prune=True)
    assert list(pruning.prune) == ["x"]


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
    assert list(plan.verify) == ["a"] and plan.transfer == ("b",)


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
    packed = planner.pack(failures, now=NOW)
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
    back = planner.unpack(planner.pack({"k": failure}, now=NOW), {"k": "cid"}, [failure])
    assert back["k"].message == "connection refused"


def test_the_compact_form_of_20000_failures_is_small() -> None:
    failures = {}
    for i in range(20_000):
        previous = None
        for _ in range(i % 7 + 1):
            previous = planner.failed(previous, f"c{i}", "PinTimeout", "", now=NOW)
        assert previous is not None
        failures[f"bafy{i:054d}"] = previous
    size = len(json.dumps(planner.pack(failures, now=NOW)))
    assert size < 128 * 1024, size


# -- the compact form's bounds, for retry times spread as they are in a real pass ----------------

PINS = 20_000
BOUND = 125 * 1024
"""planner's documented bound for 20,000 failing pins, whatever their spread (was 128 KiB)."""


def failing(i: int, attempts: int, at: datetime.datetime) -> planner.Failure:
    return planner.Failure(cid=f"cid{i}", reason="PinTimeout", attempts=attempts, next_retry_at=at)


def packed_within_bounds(failures: dict[str, planner.Failure]) -> int:
    """Pack at NOW; assert the size bound and, pin by pin, the documented rounding: the retry
    is never earlier, later by at most max(1 s, ceiling / 4, wait left / 2), attempts kept."""
    packed = planner.pack(failures, now=NOW)
    size = len(json.dumps(packed))
    assert size < BOUND, size
    assert len(packed) <= planner.MAX_GROUPS
    back = planner.unpack(packed, {key: f.cid for key, f in failures.items()})
    assert back.keys() == failures.keys()
    for key, original in failures.items():
        found = back[key]
        assert found.cid == original.cid and found.reason == original.reason
        assert found.attempts == original.attempts
        assert found.next_retry_at is not None and original.next_retry_at is not None
        wait = (original.next_retry_at - NOW).total_seconds()
        extra = (found.next_retry_at - original.next_retry_at).total_seconds()
        most = max(1.0, planner.ceiling(original.attempts) / 4, wait / 2)
        assert 0 <= extra < most, (original, found)
    # Packing what was unpacked changes nothing: rounding twice is rounding once (no drift).
    assert planner.pack(back, now=NOW) == packed
    return size


def test_the_compact_form_is_bounded_for_retries_spread_evenly_over_ten_minutes() -> None:
    # One grid per (reason, attempts) wrote 276 KiB in 1,793 groups.
    spread = datetime.timedelta(minutes=10) / PINS
    failures = {f"k{i}": failing(i, i % 8 + 1, NOW + spread * i) for i in range(PINS)}
    packed_within_bounds(failures)


@pytest.mark.parametrize("mixed", [False, True], ids=["first-failures", "attempts-1-8"])
def test_the_compact_form_is_bounded_for_batches_of_32_failing_7_s_apart(mixed: bool) -> None:
    # Status written when the first batch failed, so that every retry is still ahead; one grid
    # per (reason, attempts) wrote 405 KiB (first failures) and 790 KiB (attempts 1..8).
    rng = random.Random(7)
    failures = {}
    for i in range(PINS):
        attempts = i % 8 + 1 if mixed else 1
        failed_at = NOW + datetime.timedelta(seconds=7 * (i // 32))
        delay = datetime.timedelta(seconds=planner.backoff(attempts, rng=rng))
        failures[f"k{i}"] = failing(i, attempts, failed_at + delay)
    packed_within_bounds(failures)


def test_the_compact_form_is_bounded_for_random_retries_over_an_hour() -> None:
    # One grid per (reason, attempts) wrote 612 KiB in 5,432 groups.
    rng = random.Random(3)
    failures = {}
    for i in range(PINS):
        attempts = rng.randint(1, 12)
        at = NOW + datetime.timedelta(seconds=rng.uniform(0, 3600))
        failures[f"k{i}"] = failing(i, attempts, at)
    packed_within_bounds(failures)


def test_the_compact_form_stays_bounded_past_its_delay_bound_never_retrying_earlier() -> None:
    # Pathological: 20 reasons, attempts up to 300 and retries anywhere in the next day.
    rng = random.Random(5)
    failures = {}
    for i in range(PINS):
        at = NOW + datetime.timedelta(seconds=rng.uniform(0, 86_400))
        failures[f"k{i}"] = dataclasses.replace(
            failing(i, rng.randint(1, 300), at), reason=f"Reason{i % 20}"
        )
    packed = planner.pack(failures, now=NOW)
    assert len(packed) <= planner.MAX_GROUPS and len(json.dumps(packed)) < BOUND
    back = planner.unpack(packed, {key: f.cid for key, f in failures.items()})
    for key, original in failures.items():
        found = back[key]
        assert found.reason == original.reason and found.attempts >= original.attempts
        assert found.next_retry_at is not None and original.next_retry_at is not None
        assert found.next_retry_at >= original.next_retry_at


def test_a_retry_already_due_is_written_as_now_and_stays_due() -> None:
    failures = {
        f"k{i}": failing(i, 3, NOW - datetime.timedelta(seconds=i * 13)) for i in range(1, 500)
    }
    packed = planner.pack(failures, now=NOW)
    assert len(packed) == 1 and packed[0]["nextRetryAt"] == "2026-01-01T00:00:00Z"
    back = planner.unpack(packed, {key: f.cid for key, f in failures.items()})
    later = NOW + datetime.timedelta(seconds=1)
    plan = planner.plan(
        desired=[f.cid for f in back.values()],
        present=set(),
        failures={f.cid: f for f in back.values()},
        now=later,
    )
    assert len(plan.transfer) == 499 and plan.waiting == ()


def test_status_written_by_the_previous_compact_form_still_unpacks() -> None:
    # What the former pack wrote (a 180 s grid past the backoff cap) for pin "ka" due at 00:02:50.
    old = [
        {
            "reason": "PinTimeout",
            "attempts": 11,
            "nextRetryAt": "2026-01-01T00:03:00Z",
            "pins": "9rjVuwg=",
        }
    ]
    back = planner.unpack(old, {"ka": "a", "kb": "b", "kc": "c"})
    assert {key: (f.cid, f.attempts) for key, f in back.items()} == {"ka": ("a", 11)}
    assert back["ka"].next_retry_at == NOW + datetime.timedelta(minutes=3)
