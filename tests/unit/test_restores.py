"""A PinSet's restore record, without Kubernetes: what one pass writes, the next reads back."""

from __future__ import annotations

import datetime

from pinsync import planner
from pinsync.reconciling import restores, sources
from pinsync.status import PinSetStatus

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def source(count: int) -> sources.Source:
    pins = tuple(sorted(f"bafk{i:04d}" for i in range(count)))
    return sources.Source(name="p", api_url="http://kubo", pins=pins)


def test_restore_failures_survive_the_status_round_trip_for_pins_still_missing() -> None:
    found = source(planner.MAX_LISTED + 10)
    failures = {
        cid: planner.failed(None, cid, "NotOnAnyBackend", "not on minio", now=NOW)
        for cid in found.pins
    }
    status = restores.failures_fields(failures)
    assert len(status["restoreFailures"]) == planner.MAX_LISTED  # the CRD's maxItems
    back = restores.failures_of(PinSetStatus.of({"status": status}), found, node_pins={})
    assert back.keys() == failures.keys()
    assert {f.reason for f in back.values()} == {"NotOnAnyBackend"}
    assert all(back[c].attempts == 1 and back[c].next_retry_at for c in found.pins)


def test_a_pin_the_node_has_again_has_no_restore_failure() -> None:
    found = source(2)
    failures = {c: planner.failed(None, c, "CarInvalid", "", now=NOW) for c in found.pins}
    status = restores.failures_fields(failures)
    back = restores.failures_of(
        PinSetStatus.of({"status": status}), found, node_pins={found.pins[0]: "pinsync/ns/p"}
    )
    assert list(back) == [found.pins[1]]
