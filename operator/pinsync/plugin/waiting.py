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
from pinsync.status import BackendStatus, Echoed, PinSetStatus

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


def _echoed(view: Echoed, request: Request) -> bool:
    return view.handled(request.annotation) == request.value


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
    view = BackendStatus.of(obj)
    if not _echoed(view, request):
        return Verdict(note="waiting for the operator to take the request")
    last = view.last_sync
    if (last.token or 0) > request.token and last.result == "Failed":
        failures = view.failures.listed
        named = ", ".join(f"{f.get('cid')}: {f.get('reason')}" for f in failures[:3])
        count = (len(failures) if view.counts.failed is None else view.counts.failed) + (
            view.counts.prune_failed or 0
        )
        return Verdict(failure=f"sync failed: {count} pin(s) failed ({named})")
    if view.dirty.dirty:
        healthy = views.condition(obj, "Healthy")
        if healthy.get("status") == "False":
            return Verdict(note=f"unhealthy, retrying: {healthy.get('reason')}")
        phase = view.phase
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
    view = BackendStatus.of(obj)
    if _echoed(view, request):
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
    phase = view.phase
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
    view = PinSetStatus.of(obj)
    if not _echoed(view, request):
        working = views.condition(obj, "Reconciling")
        note = working.get("message") if working.get("status") == "True" else None
        return Verdict(note=note or "waiting for the operator to take the request")
    failures = view.restore_failures.listed
    failed = view.counts.restore_failed or len(failures)
    if failed:
        named = ", ".join(f"{f.get('cid')}: {f.get('reason')}" for f in failures[:3])
        return Verdict(failure=f"restore failed: {failed} pin(s) ({named})")
    return Verdict(done=True, note=f"{view.counts.restored} pin(s) restored so far")
