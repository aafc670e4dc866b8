"""Marking a StorageBackend dirty, and clearing it: the only writers of ``status.dirty``.

Three kinds of marks: annotations (``mark-dirty``, ``sync-requested-at``, applied straight from
the watch handler so they never wait for a running sync), level marks (the world compared with
what ``status.marked`` accounted for), and audit findings. Each goes through
:meth:`Context.transition` (a resourceVersion-guarded write), and each writes the ``Synced``
condition in the same write as the mark: ``dirty.dirty`` and ``Synced`` never disagree.

Every other write of a backend's status goes through :func:`write`, also a transition, which
leaves out a ``Synced`` decided from an older read: a pass that began clean cannot write
``Synced`` True over a mark made while it ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pinsync import conditions, dirty, kube, reasons
from pinsync.reconciling import sources
from pinsync.reconciling.context import Context
from pinsync.status import HEALTH_REQUESTED_AT, MARK_DIRTY, SYNC_REQUESTED_AT, BackendStatus

# A health request (HEALTH_REQUESTED_AT) is not a mark: the backend's own loop answers it.


def state_of(obj: Mapping[str, Any]) -> dirty.DirtyState:
    return dirty.DirtyState.from_status(obj.get("status"))


def dirty_fields(
    obj: dict[str, Any],
    state: dirty.DirtyState,
    message: str = "",
    updates: Sequence[conditions.Condition] = (),
) -> dict[str, Any]:
    """``status.dirty`` and the ``Synced`` condition that goes with it (plus ``updates``),
    for one write."""
    if state.dirty:
        synced = conditions.synced(False, reasons.DIRTY.name, f"marked: {state.reasons[0]}")
    else:
        synced = conditions.synced(True, reasons.SYNCED.name, message)
    merged = conditions.merge(
        BackendStatus.of(obj).conditions.items,
        [*updates, synced],
        generation=obj["metadata"].get("generation"),
    )
    return {"dirty": state.to_status(), "conditions": merged}


def written(
    obj: dict[str, Any], updates: Sequence[conditions.Condition], fields: Mapping[str, Any]
) -> dict[str, Any]:
    """The status write of condition ``updates`` and ``fields`` onto ``obj`` as it is now.

    A ``Synced`` update that disagrees with the current dirty state is left out: it was decided
    from an older read, and the mark (or the clear) since then wrote the ``Synced`` that holds.
    """
    is_dirty = state_of(obj).dirty
    kept = [u for u in updates if u["type"] != "Synced" or (u["status"] == "True") != is_dirty]
    status = obj.get("status") or {}
    return conditions.patch(
        status, kept, generation=obj["metadata"].get("generation"), fields=fields
    )


async def write(
    ctx: Context, obj: dict[str, Any], updates: Sequence[conditions.Condition], **fields: Any
) -> dict[str, Any]:
    """Write a backend's conditions and fields under the resourceVersion guard (see
    :func:`written`); returns the object as written."""
    return await ctx.transition(
        kube.STORAGEBACKENDS, obj, lambda current: written(current, updates, fields)
    )


def marked(
    obj: dict[str, Any], reasons: Sequence[str], *, full: bool = False, deep: bool = False
) -> dict[str, Any]:
    """The fields that mark ``obj`` dirty for ``reasons`` (the first one newest)."""
    state = state_of(obj)
    at = conditions.now()
    for reason in reversed(reasons):
        state = dirty.mark(state, reason, at=at, full=full, deep=deep)
    return dirty_fields(obj, state)


def annotation_marks(obj: dict[str, Any]) -> dict[str, Any] | None:
    """Status fields for new ``mark-dirty`` / ``sync-requested-at`` annotation values, if any."""
    annotations = obj["metadata"].get("annotations") or {}
    view = BackendStatus.of(obj)
    fields: dict[str, Any] = {}
    mark = annotations.get(MARK_DIRTY)
    if mark is not None and mark != view.handled(MARK_DIRTY):
        fields = marked(obj, [f"requested: {mark}" if mark else "requested"])
        fields["lastHandledMarkDirty"] = mark
    requested = annotations.get(SYNC_REQUESTED_AT)
    if requested is not None and requested != view.handled(SYNC_REQUESTED_AT):
        base = {**obj, "status": {**(obj.get("status") or {}), **fields}}
        fields |= marked(base, [f"full sync requested at {requested}"], full=True)
        fields["lastHandledSyncRequest"] = requested
    return fields or None


def health_request(obj: dict[str, Any]) -> str | None:
    """The ``health-requested-at`` value not yet answered, if any."""
    requested = (obj["metadata"].get("annotations") or {}).get(HEALTH_REQUESTED_AT)
    handled = BackendStatus.of(obj).handled(HEALTH_REQUESTED_AT)
    return requested if requested is not None and requested != handled else None


async def consume_annotations(ctx: Context, obj: dict[str, Any]) -> dict[str, Any]:
    return await ctx.transition(kube.STORAGEBACKENDS, obj, annotation_marks)


def level_marks(
    obj: dict[str, Any], credentials_version: str, found: list[sources.Source], on_start: bool
) -> tuple[list[str], dict[str, Any]]:
    """Reasons to mark dirty, from comparing the world with what ``status.marked`` accounted for.

    Returns the reasons and the new ``marked`` record, to be written in the same transition.
    The record is merge-patched, so PinSets that are gone are written as null: a merge patch
    never removes a key that is merely absent.
    """
    record = BackendStatus.of(obj).marked
    generation = obj["metadata"].get("generation")
    digests: dict[str, str | None] = {s.name: s.digest for s in found}
    recorded = record.sources if record is not None else {}
    gone = [n for n in recorded if n not in digests]
    now_marked = {
        "generation": generation,
        "credentialsVersion": credentials_version,
        "sources": {**dict.fromkeys(gone), **digests},
    }
    if record is None:
        return ["created"], now_marked
    reasons = []
    if record.generation != generation:
        reasons.append(f"spec changed (generation {generation})")
    if record.credentials_version != credentials_version:
        reasons.append("credentials Secret changed")
    reasons += [f"PinSet {n} changed" for n, d in digests.items() if recorded.get(n) != d]
    reasons += [f"PinSet {n} no longer targets this backend" for n in gone]
    if on_start:
        reasons.append("operator started (markDirtyOnStartup)")
    return reasons, now_marked


async def mark_from_level(
    ctx: Context,
    obj: dict[str, Any],
    credentials_version: str,
    found: list[sources.Source],
    on_start: bool,
) -> dict[str, Any]:
    def decide(current: dict[str, Any]) -> dict[str, Any] | None:
        reasons, record = level_marks(current, credentials_version, found, on_start)
        return {**marked(current, reasons), "marked": record} if reasons else None

    return await ctx.transition(kube.STORAGEBACKENDS, obj, decide)


def cleared(
    obj: dict[str, Any],
    token: int,
    message: str,
    *,
    updates: Sequence[conditions.Condition] = (),
    fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The write that ends a successful sync: clear the mark it started from (unless a newer
    mark came in meanwhile) together with its results (``fields``, condition ``updates``), so
    no reader ever sees the backend clean beside the previous sync's ``lastSync``."""
    after = dirty.clear(state_of(obj), token)
    return {**(fields or {}), **dirty_fields(obj, after, message, updates)}
