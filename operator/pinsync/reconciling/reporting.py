"""What a backend pass writes into status and metrics: counts, failures, per-PinSet shares.

Failures are kept twice: the first ``planner.MAX_LISTED`` in full (``status.failures``, for
people) and every one of them compactly (``status.retries``, for the backoff), so that backoff
holds for any number of failing pins, across passes and operator restarts. Failed deletions of
a Prune pass (``PruneFailed``) are kept with them, and counted apart (``counts.pruneFailed``,
written only by passes that prune).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pinsync import conditions, metrics, planner, status, syncing
from pinsync.reconciling import sources


def failures_status(failures: Mapping[str, planner.Failure]) -> dict[str, Any]:
    """``failures`` (the first MAX_LISTED, most attempts first) and ``retries`` (all)."""
    ordered = sorted(failures.values(), key=lambda f: (-f.attempts, f.cid))
    return {
        "failures": [f.to_status() for f in ordered[: planner.MAX_LISTED]],
        "retries": planner.pack(failures, now=conditions.utcnow()),
    }


def failures_of(recorded: status.Failures, names: Mapping[str, str]) -> dict[str, planner.Failure]:
    """The failures ``recorded`` in a status for the pins in ``names`` (identity -> spelling)."""
    listed = [planner.Failure.from_status(f) for f in recorded.listed]
    return planner.unpack(recorded.retries, names, listed)


def progress_fields(progress: syncing.Progress) -> dict[str, Any]:
    counts = {
        "desired": progress.desired,
        "present": progress.present,
        "missing": progress.missing,
        "failed": len(progress.failures),
    }
    if progress.pruning:
        counts["pruneFailed"] = len(progress.prune_failures)
    return {
        "phase": progress.phase,
        "counts": counts,
        "bytesTransferred": progress.bytes,
        **failures_status({**progress.failures, **progress.prune_failures}),
    }


def sources_status(found: list[sources.Source], progress: syncing.Progress) -> list[dict[str, Any]]:
    out = []
    for source in found:
        present = source.pins.count_in(progress.present_cids)
        failed = sum(1 for c in progress.failures if c in source.pins)
        out.append(
            {
                "name": source.name,
                "digest": source.digest,
                "pins": len(source.pins),
                "present": present,
                "failed": failed,
            }
        )
    return out


def record_metrics(key: tuple[str, str], progress: syncing.Progress, ok: bool) -> None:
    """Counters for one finished pass; failures count the attempts made in it, once each."""
    labels = {"namespace": key[0], "backend": key[1]}
    metrics.BYTES_UPLOADED.labels(**labels).inc(progress.bytes)
    metrics.PINS_UPLOADED.labels(**labels).inc(progress.uploaded)
    for reason, count in progress.new_failures.items():
        metrics.PIN_FAILURES.labels(**labels, reason=reason).inc(count)
    metrics.SYNCS.labels(**labels, result="Succeeded" if ok else "Failed").inc()
    metrics.MISSING.labels(**labels).set(progress.missing)
