"""When a request made by ``kubectl pinsync`` is answered: pure verdicts over an object.

A request is an annotation value the operator echoes into status once handled (the handshake
Flux uses for ``sync-requested-at``). The echo alone says the request was *seen*; what comes
after it decides the outcome:

* sync: the mark rides in the same status write as its echo, and only a sync (or audit) that
  started from that mark's token may clear it, so "echoed and clean" means a pass that began
  after the request finished well. A finished pass started after the request is recognised by
  ``lastSync.token`` above the token the object had when the request was written (``lastSync``
  keeps the previous pass's token and result until the running one ends).
* health: the echo is written together with the check's result.
* restore: the PinSet echoes the request, then works until it is no longer Reconciling.

``Stalled`` ends any wait: the operator will not progress without a change by someone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pinsync.plugin import views
from pinsync.reconciling import marking

RESTORE_REQUESTED_AT = "pinsync.io/restore-requested-at"
"""On a PinSet: any new value asks for a restore now (implemented in the restore work)."""

ECHOES = {
    marking.MARK_DIRTY: "lastHandledMarkDirty",
    marking.SYNC_REQUESTED_AT: "lastHandledSyncRequest",
    marking.HEALTH_REQUESTED_AT: "lastHandledHealthRequest",
    RESTORE_REQUESTED_AT: "restoreRequestedAt",
}
"""The status field echoing each annotation's value once the operator handled it."""
BUSY = ("Planning", "Verifying", "Syncing", "Auditing")
"""Phases of a running pass (``status.phase``)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Request:
    """An annotation value written to one object, and what the object looked like then."""

    namespace: str
    name: str
    annotation: str
    value: str
    token: int = 0
    """``status.dirty.token`` in the write's response: passes started later have a higher one."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Verdict:
    done: bool = False
    failure: str | None = None
    """Why the request failed (the wait then ends too)."""
    note: str = ""
    """What is happening, for progress output."""

    @property
    def over(self) -> bool:
        return self.done or self.failure is not None


def _stalled(obj: Mapping[str, Any]) -> str | None:
    stalled = views.condition(obj, "Stalled")
    if stalled.get("status") == "True":
        return f"Stalled: {stalled.get('reason')}: {stalled.get('message', '')}"
    return None


def _echoed(obj: Mapping[str, Any], request: Request) -> bool:
    echo = ECHOES[request.annotation]
    return bool((obj.get("status") or {}).get(echo) == request.value)


def _suspended(obj: Mapping[str, Any]) -> str | None:
    """A suspended backend answers no request until resumed."""
    if views.condition(obj, "Ready").get("reason") == "Suspended":
        return "Suspended: spec.suspend is true"
    return None


def sync(obj: Mapping[str, Any] | None, request: Request) -> Verdict:
    if obj is None:
        return Verdict(failure="deleted")
    if blocked := _stalled(obj) or _suspended(obj):
        return Verdict(failure=blocked)
    ready = views.condition(obj, "Ready")
    status = obj.get("status") or {}
    if not _echoed(obj, request):
        return Verdict(note="waiting for the operator to take the request")
    last = status.get("lastSync") or {}
    if int(last.get("token") or 0) > request.token and last.get("result") == "Failed":
        failures = status.get("failures") or ()
        named = ", ".join(f"{f.get('cid')}: {f.get('reason')}" for f in failures[:3])
        counts = status.get("counts") or {}
        count = counts.get("failed", len(failures)) + counts.get("pruneFailed", 0)
        return Verdict(failure=f"sync failed: {count} pin(s) failed ({named})")
    if (status.get("dirty") or {}).get("dirty"):
        healthy = views.condition(obj, "Healthy")
        if healthy.get("status") == "False":
            return Verdict(note=f"unhealthy, retrying: {healthy.get('reason')}")
        phase = status.get("phase")
        return Verdict(note=phase if phase in BUSY else "marked; the sync pass starts next")
    if ready.get("status") == "True":
        return Verdict(done=True, note=ready.get("message", ""))
    return Verdict(
        failure=f"Ready={ready.get('status')} {ready.get('reason')}: {ready.get('message', '')}"
    )


def health(obj: Mapping[str, Any] | None, request: Request) -> Verdict:
    if obj is None:
        return Verdict(failure="deleted")
    healthy = views.condition(obj, "Healthy")
    if _echoed(obj, request):
        if healthy.get("status") == "True":
            return Verdict(done=True, note=healthy.get("reason", ""))
        return Verdict(failure=f"unhealthy: {healthy.get('reason')}: {healthy.get('message', '')}")
    if suspended := _suspended(obj):
        return Verdict(failure=suspended)
    stalled = views.condition(obj, "Stalled")
    # A Stalled backend whose last check failed is still checked on every pass (and answers);
    # one stalled before any check (its Secret is missing, its spec invalid) never will.
    if stalled.get("status") == "True" and stalled.get("reason") != healthy.get("reason"):
        return Verdict(failure=_stalled(obj))
    phase = (obj.get("status") or {}).get("phase")
    if phase in BUSY:
        # One loop per backend: the check is the next pass's first step, after this one.
        return Verdict(note=f"waiting: the backend's pass is {phase}; the check follows it")
    return Verdict(note="waiting for the operator to check")


def restore(obj: Mapping[str, Any] | None, request: Request) -> Verdict:
    """The PinSet echoes the request once its restore finished: every lost pin restored, or
    its failure recorded (``counts.restoreFailed``, ``restoreFailures``)."""
    if obj is None:
        return Verdict(failure="deleted")
    if stalled := _stalled(obj):
        return Verdict(failure=stalled)
    status = obj.get("status") or {}
    if not _echoed(obj, request):
        working = views.condition(obj, "Reconciling")
        note = working.get("message") if working.get("status") == "True" else None
        return Verdict(note=note or "waiting for the operator to take the request")
    counts = status.get("counts") or {}
    failures = status.get("restoreFailures") or ()
    failed = int(counts.get("restoreFailed") or len(failures))
    if failed:
        named = ", ".join(f"{f.get('cid')}: {f.get('reason')}" for f in failures[:3])
        return Verdict(failure=f"restore failed: {failed} pin(s) ({named})")
    return Verdict(done=True, note=f"{counts.get('restored', 0)} pin(s) restored so far")
