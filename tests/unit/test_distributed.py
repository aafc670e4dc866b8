"""The operator's roll-up of shard reports (the parts that need no API server)."""

from __future__ import annotations

from pinsync import shards
from pinsync.reconciling import distributed


def test_running_counts_read_from_a_report_with_and_without_a_filter() -> None:
    report = shards.Report.fresh("w-a", 1, 4)
    for index, outcome in enumerate((shards.UPLOADED, shards.PRESENT, shards.FAILED)):
        report.record(index, outcome, ("Timeout", "slow", 0.0))
    keys = ["a", "b", "c", "d"]
    assert distributed.counted(report, keys, distributed.Everything()) == (2, 1)
    assert distributed.counted(report, keys, {"b", "c", "d"}) == (1, 0)
