"""The scale-out's pure model: shard assignment, orders, claims and the fencing of reports."""

from __future__ import annotations

import collections
from typing import Any

from pinsync import shards

KEYS = [f"bafkrei{i:052d}" for i in range(10_000)]
OWNER = {
    "apiVersion": "pinsync.io/v1alpha1",
    "kind": "StorageBackend",
    "metadata": {"name": "minio", "uid": "u-1"},
}
PLAN = shards.Plan(backend="minio", uid="u-1", plan="7.ab", token=7, shard=2, shards=4, pins=2)


def test_shards_are_stable_and_even() -> None:
    assert [shards.shard_of(k, 16) for k in KEYS[:50]] == [
        shards.shard_of(k, 16) for k in KEYS[:50]
    ]
    sizes = collections.Counter(shards.shard_of(k, 16) for k in KEYS)
    assert len(sizes) == 16 and max(sizes.values()) < 1.2 * len(KEYS) / 16
    groups = shards.split(KEYS, 16)
    assert sorted(k for g in groups for k in g) == sorted(KEYS)


def test_shard_count_grows_with_pins_not_below_the_minimum() -> None:
    assert shards.shard_count(0, 8) == 0
    assert shards.shard_count(3, 8) == 3  # never an empty shard by construction
    assert shards.shard_count(1_000, 8) == 8
    assert shards.shard_count(1_000_000, 8) == 1_000_000 // shards.MAX_PINS_PER_SHARD


def test_an_order_round_trips_compactly() -> None:
    pins = tuple(
        shards.Pin(
            key=k,
            name=k if i % 2 else k.upper(),
            pinsets=("ns/media",),
            urls=("http://ipfs-0:5001", "http://ipfs-1:5001"),
            on_node=bool(i % 3),
        )
        for i, k in enumerate(KEYS[:5_000])
    )
    order = shards.Order(pins=pins, check_first=True)
    data = order.encode()
    assert shards.Order.decode(data) == order
    assert len(data) < 200_000  # a ConfigMap holds 1 MiB


def lease(holder: str = "", transitions: int = 0, report: shards.Report | None = None) -> Any:
    body = shards.new_lease("ns", OWNER, PLAN, duration=15)
    body["metadata"]["resourceVersion"] = "41"
    body["spec"].update(holderIdentity=holder or None, leaseTransitions=transitions)
    if report is not None:
        body["metadata"]["annotations"][shards.REPORT_ANNOTATION] = report.encode()
    return body


def test_a_claim_counts_a_transition_and_carries_the_precondition() -> None:
    free = lease()
    report = shards.Report.fresh("w-a", 1, 2)
    claimed = shards.with_claim(free, "w-a", report, duration=15)
    assert shards.holder(claimed) == "w-a" and shards.transitions(claimed) == 1
    assert claimed["metadata"]["resourceVersion"] == "41"  # the compare-and-swap's condition
    assert shards.plan_of(claimed) == PLAN
    assert shards.report_of(claimed) == report
    renewed = shards.with_claim(claimed, "w-a", report, duration=15)
    assert shards.transitions(renewed) == 1  # a renewal is no transition
    released = shards.with_claim(claimed, "", None, duration=15)
    assert shards.holder(released) == "" and shards.report_of(released) is None


def test_a_report_of_another_claim_is_not_the_shards_report() -> None:
    """Fencing: a report counts only for the holder and transition it was written under."""
    stale = shards.Report.fresh("w-a", 1, 2)
    stale.record(0, shards.UPLOADED, None)
    assert shards.report_of(lease("w-b", 2, stale)) is None
    assert shards.report_of(lease("w-a", 2, stale)) is None
    assert shards.report_of(lease("w-a", 1, stale)) == stale


def test_a_report_round_trips_outcomes_and_failures() -> None:
    report = shards.Report.fresh("w-a", 3, 4)
    report.record(0, shards.UPLOADED, None)
    report.record(1, shards.PRESENT, None)
    report.record(2, shards.FAILED, ("Timeout", "pin/add timed out", 30.0))
    report.refused, report.bytes, report.done = ("WritesDisabled", "off"), 1234, True
    again = shards.Report.decode(report.encode())
    assert again == report
    assert [again.outcome(i) for i in range(4)] == ["u", "p", "f", "."]


def test_failures_beyond_the_cap_stay_untried() -> None:
    report = shards.Report.fresh("w-a", 1, shards.MAX_FAILURES_REPORTED + 1)
    for i in range(shards.MAX_FAILURES_REPORTED + 1):
        report.record(i, shards.FAILED, ("Timeout", "slow", 0.0))
    assert report.outcome(shards.MAX_FAILURES_REPORTED) == shards.UNTRIED
    assert len(report.encode()) < 64_000  # a Lease's annotations hold 256 KiB
