"""What ``kubectl pinsync`` prints, from objects as the API server returns them."""

from __future__ import annotations

import datetime
from typing import Any

from pinsync.plugin import render, views

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)


def backend(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "minio", "namespace": "media"},
        "spec": {"type": "s3"},
        "status": status,
    }


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


SYNCED = backend(
    conditions=[cond("Ready", "True", "Synced"), cond("Healthy", "True", "Reachable", "ok")],
    lastHealthCheck={"finishedAt": "2026-12-01T11:59:30Z", "latencyMs": 12.4},
    dirty={"dirty": False, "reasons": [], "token": 4},
    counts={"desired": 3, "present": 3, "missing": 0, "failed": 0},
    lastSync={"result": "Succeeded", "finishedAt": "2026-12-01T11:55:00Z", "bytes": 3 << 20},
    usage={"bytes": 1536, "objects": 6},
)


def test_ages_read_like_kubectl() -> None:
    assert views.age("2026-12-01T11:59:15Z", NOW) == "45s"
    assert views.age("2026-12-01T11:56:48Z", NOW) == "3m12s"
    assert views.age("2026-12-01T11:30:00Z", NOW) == "30m"
    assert views.age("2026-12-01T06:56:00Z", NOW) == "5h4m"
    assert views.age("2026-11-29T09:00:00Z", NOW) == "2d3h"
    assert views.age(None, NOW) == "-"
    assert views.age("not a time", NOW) == "-"


def test_sizes_are_binary_units() -> None:
    assert views.size(None) == "-"
    assert views.size(512) == "512 B"
    assert views.size(1536) == "1.5 KiB"
    assert views.size(3 << 30) == "3.0 GiB"


def test_a_synced_backend_row_shows_health_with_latency_pins_last_sync_and_usage() -> None:
    row = views.backend_row(views.backend_summary(SYNCED), NOW)
    assert row == [
        "minio",
        "s3",
        "True",
        "Reachable 12ms 30s ago",
        "no",
        "3/3",
        "Succeeded 5m ago, 3.0 MiB",
        "1.5 KiB in 6 objects",
    ]


def test_a_dirty_backend_shows_its_newest_reason_and_how_many_more() -> None:
    obj = backend(
        conditions=[cond("Ready", "False", "SyncFailed")],
        dirty={
            "dirty": True,
            "reasons": ["requested: disks", "created"],
            "since": "2026-12-01T11:58:00Z",
            "token": 2,
            "full": True,
        },
        counts={"desired": 4, "present": 1, "failed": 2},
    )
    summary = views.backend_summary(obj)
    row = views.backend_row(summary, NOW)
    assert row[2] == "False SyncFailed"
    assert row[3] == "-"  # never checked
    assert row[4] == "2m: requested: disks (+1)"
    assert row[5] == "1/4 (2 failed)"
    assert views.dirty_row(summary, NOW) == ["minio", "2m", "2", "yes", "requested: disks; created"]


def test_failed_deletions_show_beside_failed_pins_only_where_counted() -> None:
    pruning = views.backend_summary(backend(counts={"desired": 4, "present": 4, "pruneFailed": 2}))
    assert pruning["pins"]["pruneFailed"] == 2
    assert views.pins_cell(pruning) == "4/4 (2 not pruned)"
    both = views.backend_summary(backend(counts={"desired": 4, "failed": 1, "pruneFailed": 2}))
    assert views.pins_cell(both) == "0/4 (1 failed, 2 not pruned)"
    assert "pruneFailed" not in views.backend_summary(SYNCED)["pins"]


def test_a_bare_timestamp_health_check_is_read_without_latency() -> None:
    # Objects written before lastHealthCheck gained its latency hold only the time.
    summary = views.backend_summary(
        backend(
            conditions=[cond("Healthy", "False", "AuthFailed", "denied")],
            lastHealthCheck="2026-12-01T11:00:00Z",
        )
    )
    assert summary["health"] == {
        "healthy": False,
        "reason": "AuthFailed",
        "message": "denied",
        "checkedAt": "2026-12-01T11:00:00Z",
        "latencyMs": None,
    }
    assert views.health_row(summary, NOW) == [
        "minio",
        "False",
        "AuthFailed",
        "-",
        "1h ago",
        "denied",
    ]


def test_a_pinset_row_shows_synced_backends_and_its_first_failures() -> None:
    obj = {
        "metadata": {"name": "media", "namespace": "media"},
        "status": {
            "counts": {"pins": 5, "backends": 2, "syncedBackends": 1, "failed": 3},
            "synced": "1/2",
            "conditions": [cond("Ready", "False", "Syncing")],
            "backends": [{"name": "minio", "pinned": 5}, {"name": "sftp", "pinned": 2}],
            "failures": [
                {"cid": "bafy1", "reason": "ContentUnavailable"},
                {"cid": "bafy2", "reason": "PinTimeout"},
                {"cid": "bafy3", "reason": "PinTimeout"},
            ],
        },
    }
    summary = views.pinset_summary(obj)
    assert views.targets_backend(summary, "sftp") and not views.targets_backend(summary, "s3")
    assert views.pinset_row(summary) == [
        "media",
        "5",
        "1/2",
        "3",
        "False Syncing",
        "bafy1: ContentUnavailable, bafy2: PinTimeout (+1)",
    ]


def test_all_namespaces_puts_the_namespace_first() -> None:
    summary = views.backend_summary(SYNCED)
    columns, rows = views.with_namespace(["NAME"], [["minio"]], [summary])
    assert columns == ["NAMESPACE", "NAME"] and rows == [["media", "minio"]]


def test_plain_tables_align_columns_like_kubectl() -> None:
    text = render.plain(["NAME", "PINS"], [["minio", "3/3"], ["a", "10/12"]])
    assert text.splitlines() == ["NAME    PINS", "minio   3/3", "a       10/12"]


def test_structured_output_is_json_or_yaml() -> None:
    assert render.structured({"a": [1]}, "json") == '{\n  "a": [\n    1\n  ]\n}'
    assert render.structured({"a": [1]}, "yaml") == "a:\n- 1"
