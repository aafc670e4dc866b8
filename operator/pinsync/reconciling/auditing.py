"""Auditing a StorageBackend: re-list (deep: re-read and re-hash) it, measure usage, mark drift.

Drift is what the backend lacks that the operator believed it had: desired pins missing that
are not already known failures (those are being retried on their own backoff, and marking them
again every audit would only raise the token), and damaged objects. A ReadOnly backend, which
is never synced, answers its marks with an audit: it clears the mark it started from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pinsync import conditions, dirty, syncing
from pinsync.backends import base, errors
from pinsync.reconciling import marking, reporting, sources

if TYPE_CHECKING:
    from pinsync.reconciling.backends import Pass


async def usage_of(backend: base.Backend) -> dict[str, int]:
    """``status.usage`` as the backend measures it now."""
    usage = await backend.usage()
    measured = {"bytes": usage.bytes, "objects": usage.objects}
    return measured if usage.free is None else measured | {"freeBytes": usage.free}


async def audit(
    run: Pass,
    backend: base.Backend,
    found: list[sources.Source],
    *,
    clears: dirty.DirtyState | None = None,
) -> None:
    deep = bool((run.spec.get("audit") or {}).get("deep"))
    await run.write([], phase="Auditing")
    stored = await syncing.listing(backend)
    desired = sources.Desired.of(run.key[0], found)
    missing = desired.keys.minus(stored.keys)
    known = reporting.failures_of(run.view.failures, desired.spellings(missing))
    damaged = []
    if deep:
        for cid in desired.keys.common(stored.keys):
            try:
                await backend.verify_pin(stored.name_of(cid), deep=True)
            except errors.BackendError:
                damaged.append(cid)
    fields: dict[str, Any] = {
        "usage": await usage_of(backend),
        "lastAudit": {
            "finishedAt": conditions.now(),
            "missing": len(missing),
            "damaged": len(damaged),
            "deep": deep,
        },
        "counts": {
            "desired": len(desired.keys),
            "present": len(desired.keys) - len(missing),
            "missing": len(missing),
            "failed": len(known),
        },
        "phase": "Idle",
    }
    drift = len(missing) - len(known)
    if drift or damaged:
        reason = f"audit: {drift} missing, {len(damaged)} damaged"
        await run.event("Warning", "DriftDetected", reason)

    def decide(obj: dict[str, Any]) -> dict[str, Any]:
        if drift or damaged:
            marks = marking.marked(obj, [reason], full=bool(damaged), deep=deep)
            return {**fields, **marks}
        if clears is not None:
            after = dirty.clear(marking.state_of(obj), clears.token)
            return {**fields, **marking.dirty_fields(obj, after, "audited (ReadOnly)")}
        return fields

    await run.transition(decide)
