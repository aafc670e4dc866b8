"""What ``kubectl pinsync`` shows: summaries of StorageBackends and PinSets, and their cells.

Pure code over the objects as the API server returns them. A summary is what ``-o json|yaml``
prints (a stable, documented shape, smaller than the object); the cells are what the tables
print, worded for a person (ages like kubectl's, sizes in binary units).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from pinsync.status import BackendStatus, Conditions, parse_time

Summary = dict[str, Any]
Row = list[str]

BACKEND_COLUMNS = ["NAME", "TYPE", "READY", "HEALTH", "DIRTY", "PINS", "LAST SYNC", "USAGE"]
PINSET_COLUMNS = ["PINSET", "PINS", "SYNCED", "FAILED", "READY", "FAILURES"]
DIRTY_COLUMNS = ["NAME", "SINCE", "TOKEN", "FULL", "REASONS"]
HEALTH_COLUMNS = ["NAME", "HEALTHY", "REASON", "LATENCY", "CHECKED", "MESSAGE"]


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    """The condition of ``type_`` (empty if absent)."""
    return dict(Conditions.of(obj.get("status") or {}).get(type_) or {})


def is_true(obj: Mapping[str, Any], type_: str) -> bool:
    return condition(obj, type_).get("status") == "True"


def age(text: str | None, now: datetime.datetime) -> str:
    """``text`` (RFC 3339) as kubectl writes ages: 45s, 3m12s, 5h4m, 2d3h; ``-`` if absent."""
    at = parse_time(text)
    if at is None:
        return "-"
    seconds = max(0, int((now - at).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 10:
        return f"{minutes}m{seconds}s" if seconds else f"{minutes}m"
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def size(count: int | float | None) -> str:
    """Bytes in binary units (``1.5 MiB``); ``-`` if unknown."""
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def latency(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.0f}ms" if ms >= 10 else f"{ms:.1f}ms"


def backend_summary(obj: Mapping[str, Any]) -> Summary:
    """One StorageBackend: type, health, dirty state, pins, last sync, usage (``-o json``)."""
    meta, view = obj["metadata"], BackendStatus.of(obj)
    healthy, ready, stalled = (condition(obj, t) for t in ("Healthy", "Ready", "Stalled"))
    check, dirty, counts, last = view.last_health_check, view.dirty, view.counts, view.last_sync
    return {
        "namespace": meta.get("namespace"),
        "name": meta["name"],
        "type": (obj.get("spec") or {}).get("type"),
        "phase": view.phase,
        "ready": {"status": ready.get("status"), "reason": ready.get("reason")},
        "stalled": {"reason": stalled.get("reason"), "message": stalled.get("message")}
        if stalled.get("status") == "True"
        else None,
        "health": {
            "healthy": None if not healthy else healthy.get("status") == "True",
            "reason": healthy.get("reason"),
            "message": healthy.get("message"),
            "checkedAt": check.finished_at,
            "latencyMs": check.latency_ms,
        },
        "dirty": {
            "dirty": dirty.dirty,
            "reasons": list(dirty.reasons),
            "since": dirty.since,
            "token": dirty.token,
            "full": dirty.full,
        },
        "pins": {
            "present": counts.present,
            "desired": counts.desired,
            "missing": counts.missing,
            "failed": counts.failed or 0,
            # Only backends that prune count failed deletions.
            **({"pruneFailed": counts.prune_failed} if counts.prune_failed is not None else {}),
        },
        "bytesTransferred": view.bytes_transferred,
        "lastSync": {
            "result": last.result,
            "finishedAt": last.finished_at,
            "uploaded": last.uploaded,
            "bytes": last.bytes,
        },
        "usage": dict(view.usage),
    }


def pinset_summary(obj: Mapping[str, Any]) -> Summary:
    """One PinSet: pins, backends holding all of them (``synced``), failures (``-o json``)."""
    meta, status = obj["metadata"], obj.get("status") or {}
    counts = status.get("counts") or {}
    ready = condition(obj, "Ready")
    return {
        "namespace": meta.get("namespace"),
        "name": meta["name"],
        "pins": counts.get("pins", 0),
        "backends": counts.get("backends", 0),
        "syncedBackends": counts.get("syncedBackends", 0),
        "synced": status.get("synced") or f"0/{counts.get('backends', 0)}",
        "failed": counts.get("failed", 0),
        "restored": counts.get("restored"),
        "restoreFailed": counts.get("restoreFailed"),
        "restoreRequestedAt": status.get("restoreRequestedAt"),
        "ready": {"status": ready.get("status"), "reason": ready.get("reason")},
        "perBackend": [dict(b) for b in status.get("backends") or ()],
        "failures": _failures(status.get("failures")),
        "restoreFailures": _failures(status.get("restoreFailures")),
    }


def _failures(listed: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    return [{k: f.get(k) for k in ("cid", "reason", "message")} for f in listed or ()]


def targets_backend(pinset: Summary, backend: str) -> bool:
    return any(b.get("name") == backend for b in pinset["perBackend"])


def _ready(summary: Summary) -> str:
    ready = summary["ready"]
    if not ready["status"]:
        return "-"
    return ready["status"] if ready["status"] == "True" else f"{ready['status']} {ready['reason']}"


def health_cell(summary: Summary, now: datetime.datetime) -> str:
    health = summary["health"]
    if health["healthy"] is None:
        return "-"
    parts = [health["reason"] or ("Healthy" if health["healthy"] else "Unhealthy")]
    if health["latencyMs"] is not None:
        parts.append(latency(health["latencyMs"]))
    parts.append(f"{age(health['checkedAt'], now)} ago")
    return " ".join(parts)


def dirty_cell(summary: Summary, now: datetime.datetime) -> str:
    dirty = summary["dirty"]
    if not dirty["dirty"]:
        return "no"
    reasons = dirty["reasons"]
    more = f" (+{len(reasons) - 1})" if len(reasons) > 1 else ""
    return f"{age(dirty['since'], now)}: {reasons[0] if reasons else '?'}{more}"


def pins_cell(summary: Summary) -> str:
    pins = summary["pins"]
    cell = f"{pins['present']}/{pins['desired']}"
    notes = [f"{pins['failed']} failed"] if pins["failed"] else []
    if pins.get("pruneFailed"):
        notes.append(f"{pins['pruneFailed']} not pruned")
    return f"{cell} ({', '.join(notes)})" if notes else cell


def last_sync_cell(summary: Summary, now: datetime.datetime) -> str:
    last = summary["lastSync"]
    if not last["result"]:
        return "-"
    return f"{last['result']} {age(last['finishedAt'], now)} ago, {size(last['bytes'])}"


def usage_cell(summary: Summary) -> str:
    usage = summary["usage"]
    if not usage:
        return "-"
    cell = f"{size(usage.get('bytes'))} in {usage.get('objects', 0)} objects"
    if usage.get("freeBytes") is not None:
        cell += f", {size(usage['freeBytes'])} free"
    return cell


def backend_row(summary: Summary, now: datetime.datetime) -> Row:
    return [
        summary["name"],
        summary["type"] or "-",
        _ready(summary),
        health_cell(summary, now),
        dirty_cell(summary, now),
        pins_cell(summary),
        last_sync_cell(summary, now),
        usage_cell(summary),
    ]


def pinset_row(summary: Summary) -> Row:
    failures = summary["failures"]
    shown = ", ".join(f"{f['cid']}: {f['reason']}" for f in failures[:2])
    if len(failures) > 2:
        shown += f" (+{len(failures) - 2})"
    return [
        summary["name"],
        str(summary["pins"]),
        summary["synced"],
        str(summary["failed"]),
        _ready(summary),
        shown or "-",
    ]


def dirty_row(summary: Summary, now: datetime.datetime) -> Row:
    dirty = summary["dirty"]
    return [
        summary["name"],
        age(dirty["since"], now),
        str(dirty["token"]),
        "yes" if dirty["full"] else "no",
        "; ".join(dirty["reasons"]) or "-",
    ]


def health_row(summary: Summary, now: datetime.datetime) -> Row:
    health = summary["health"]
    healthy = {None: "-", True: "True", False: "False"}[health["healthy"]]
    return [
        summary["name"],
        healthy,
        health["reason"] or "-",
        latency(health["latencyMs"]),
        f"{age(health['checkedAt'], now)} ago" if health["checkedAt"] else "-",
        health["message"] or "",
    ]


def with_namespace(
    columns: Sequence[str], rows: Sequence[Row], summaries: Sequence[Summary]
) -> tuple[list[str], list[Row]]:
    """kubectl's ``-A`` layout: a NAMESPACE column first."""
    return ["NAMESPACE", *columns], [
        [s["namespace"] or "", *r] for s, r in zip(summaries, rows, strict=True)
    ]
