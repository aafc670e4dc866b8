"""Reconciling a PinSet: pin its CIDs on the node, resolve its backends, summarise progress.

Pinning itself is :mod:`pinning`'s (local content in batches within a time budget per pass,
restores inline, network fetches in a pool outside the pass); this module reads the PinSet and
its backends, orders the pinning and writes the report.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Container, Mapping
from typing import Any

from pinsync import cids, clusterpins, conditions, ipfs, kube, planner, reasons, restoreplanner
from pinsync.reconciling import backendsource, clustersource, pinning, reporting, restores, sources
from pinsync.reconciling.context import Context
from pinsync.status import BackendStatus, PinSetStatus

MAX_LISTED = 10
"""How many offending CIDs or names a condition message quotes before summarising."""


def quoted(items: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else f"{shown} and {len(items) - MAX_LISTED} more"


def failures_of(
    view: PinSetStatus, source: sources.Source, node_pins: Container[str]
) -> dict[str, planner.Failure]:
    """Recorded pin failures of the PinSet's CIDs that the node still lacks (from status)."""
    unpinned = {c: s for c, s in source.listed.items() if c not in node_pins}
    return reporting.failures_of(view.failures, unpinned)


REPORTED_CONDITIONS = ("Synced", "Stalled")


def reported(backend: Mapping[str, Any]) -> str:
    """A digest of everything about a backend that a PinSet's report depends on.

    The backend's watch handler wakes PinSets only when this changes: a sync's progress writes
    (counts, bytes, phase) change nothing a PinSet reports, and must not wake 20,000-pin PinSets.
    """
    view = BackendStatus.of(backend)
    conds = [
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in view.conditions.items
        if c.get("type") in REPORTED_CONDITIONS
    ]
    digest = [
        backend["metadata"].get("labels") or {},
        [dataclasses.asdict(s) for s in view.sources],
        conds,
        view.last_sync.finished_at,
    ]
    return json.dumps(digest, sort_keys=True, default=str)


def backend_summary(source: sources.Source, backend: dict[str, Any]) -> dict[str, Any]:
    view = BackendStatus.of(backend)
    entry = view.source(source.name)
    summary: dict[str, Any] = {"name": backend["metadata"]["name"]}
    if entry is None or entry.digest != source.digest:
        # The backend has not synced this version of the PinSet yet.
        return summary | {"pinned": 0, "missing": len(source.pins), "failed": 0, "ready": False}
    missing = len(source.pins) - entry.present - entry.failed
    summary |= {"pinned": entry.present, "missing": missing, "failed": entry.failed}
    summary["ready"] = view.current and entry.present == len(source.pins)
    if view.last_sync.finished_at:
        summary["lastSyncFinishedAt"] = view.last_sync.finished_at
    return summary


def stalled_backend(targeted: list[dict[str, Any]]) -> str | None:
    """A message naming the first targeted backend that is Stalled, and why."""
    for backend in targeted:
        conds = BackendStatus.of(backend).conditions
        if conds.is_true("Stalled"):
            cond, name = conds.get("Stalled") or {}, backend["metadata"]["name"]
            return f"StorageBackend {name} is stalled: {cond.get('reason')}: {cond.get('message')}"
    return None


def not_pinned(
    obj: dict[str, Any],
    lost: Mapping[str, planner.Failure],
    failures: Mapping[str, planner.Failure],
) -> tuple[str, str]:
    """(reason, message) for pins the node lacks and could not get. A backend that had one and
    failed to give it back (damaged, unreachable) is a failed restore and says the most; a pin
    no backend holds (never synced there, or lost from every one) is not a restore that failed
    but a CID only the network may have: what the network fetch did is what happened."""
    nowhere = reasons.NOT_ON_ANY_BACKEND.name
    held = {k: f for k, f in lost.items() if f.reason != nowhere}
    if held:
        first = min(held.values(), key=lambda f: f.cid)
        what = "pin(s) the node lacks could not be restored"
        return reasons.RESTORE_FAILED.name, f"{len(held)} {what}, e.g. {first.cid}: {first.reason}"
    if not failures:
        first = min(lost.values(), key=lambda f: f.cid)
        return nowhere, (
            f"{len(lost)} pin(s) the node lacks are on no backend (never synced there, or lost "
            f"from every one), e.g. {first.cid}: fetching them from the network"
        )
    first = min(failures.values(), key=lambda f: f.cid)
    message = f"{len(failures)} CID(s) could not be pinned on the node, e.g. {first.cid}: "
    message += f"{first.reason}"
    if first.cid in lost or cids.key(first.cid) in lost:
        message += " (no backend holds it: never synced there, or lost from every one)"
    elif not restoreplanner.allowed(obj):
        message += f" (spec.restore is Manual: set {restoreplanner.REQUESTED_AT} to restore)"
    return reasons.PIN_FAILED.name, message


async def write_report(
    ctx: Context,
    obj: dict[str, Any],
    source: sources.Source,
    targeted: list[dict[str, Any]],
    missing_backends: list[str],
    node_pins: Container[str],
    failures: Mapping[str, planner.Failure],
    restorer: restores.Restorer,
    **fields: Any,
) -> dict[str, Any]:
    """Conditions, counts and per-backend summaries from what this pass knows."""
    unpinned = sum(1 for c in source.listed if c not in node_pins)
    summaries = [backend_summary(source, b) for b in targeted]
    ready_backends = sum(1 for s in summaries if s["ready"])
    lost = {k: f for k, f in restorer.failures.items() if k not in node_pins}
    counts = {
        "pins": len(source.pins),
        "backends": len(targeted),
        "syncedBackends": ready_backends,
        "failed": len(failures),
        "restored": restorer.total,
        "restoreFailed": len(lost),
    }
    stalled = stalled_backend(targeted)
    if source.invalid:
        updates = conditions.stalled(
            reasons.INVALID_CID.name, f"not a CID: {quoted(source.invalid)}"
        )
    elif missing_backends:
        message = f"StorageBackend(s) not found: {quoted(missing_backends)}"
        updates = conditions.stalled(reasons.BACKEND_NOT_FOUND.name, message)
    elif not targeted:
        updates = conditions.stalled(
            reasons.NO_BACKENDS.name, "spec.backendSelector matches no StorageBackend"
        )
    elif stalled is not None:
        updates = conditions.stalled(reasons.BACKEND_STALLED.name, stalled)
    elif lost or failures:
        updates = conditions.reconciling(*not_pinned(obj, lost, failures))
    elif ready_backends < len(targeted) or unpinned:
        message = (
            f"{ready_backends} of {len(targeted)} backend(s) have all {len(source.pins)} pin(s)"
        )
        updates = conditions.reconciling(reasons.SYNCING.name, message)
    else:
        message = f"{len(source.pins)} pin(s) on {len(targeted)} backend(s)"
        updates = conditions.ready(reasons.SYNCED.name, message)
    listed = sorted(failures.values(), key=lambda f: f.cid)[: planner.MAX_LISTED]
    return await ctx.write_status(
        kube.PINSETS,
        obj,
        updates,
        counts=counts,
        synced=f"{ready_backends}/{len(targeted)}",
        backends=summaries,
        failures=[f.to_status() for f in listed],
        retries=planner.pack(failures, now=conditions.utcnow()),
        **restores.failures_fields(lost),
        **fields,
    )


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    obj = await ctx.api.get(kube.PINSETS, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    spec = obj.get("spec") or {}
    url = sources.api_url(ctx, obj)
    asked = restoreplanner.request(obj)
    read = sources.Read()
    try:
        # A restore request looks at the node as it is now, not as it was listed a while ago.
        node_pins = await ctx.node_pins(url, fresh=asked is not None)
        ctx.watch_node(url, (kube.PINSETS, namespace, name))
        if clustersource.needs_cluster(obj) or backendsource.needs_backend(obj):
            read = await sources.read_sources(ctx, obj, (kube.PINSETS, namespace, name))
    except (ipfs.IpfsError, clusterpins.ClusterError, backendsource.SourceError) as exc:
        where = {clusterpins.ClusterError: "IPFS Cluster: ", backendsource.SourceError: ""}
        message = f"{where.get(type(exc), f'IPFS node {url}: ')}{exc}"
        trio = conditions.stalled if not exc.retryable else conditions.reconciling
        await ctx.write_status(kube.PINSETS, obj, trio(exc.reason, message))
        return ctx.settings.retry_interval
    source = sources.resolve(ctx, obj, node_pins, read.cluster, read.held)
    all_backends = await ctx.api.list(kube.STORAGEBACKENDS, namespace)
    targeted = [b for b in all_backends if sources.targets(obj, b)]
    existing = {b["metadata"]["name"] for b in all_backends}
    missing_backends = [n for n in spec.get("backends") or () if n not in existing]
    view = PinSetStatus.of(obj)  # as the pass found it: its reports write only what it decides
    failures = failures_of(view, source, node_pins)
    # A fromBackend PinSet restores from its source backend first: it holds every such pin.
    origin = backendsource.name_of(obj) if backendsource.needs_backend(obj) else None
    restore_from = [*targeted, *(b for b in all_backends if b["metadata"]["name"] == origin)]
    restorer = restores.Restorer.of(ctx, obj, view, source, restore_from, node_pins, first=origin)
    if asked is not None:  # asked to restore now: no backoff holds
        failures = restoreplanner.forgiven(failures)
        restorer.failures = restoreplanner.forgiven(restorer.failures)

    async def report(**fields: Any) -> None:
        obj["status"] = await write_report(
            ctx, obj, source, targeted, missing_backends, node_pins, failures, restorer, **fields
        )

    await report()  # before pinning, which may take up to pinTimeout
    allowed = restorer if restoreplanner.allowed(obj) else None
    pinned, more = await pinning.pin_missing(ctx, obj, source, node_pins, failures, allowed)
    while more and asked is not None:  # a request is answered once all of it is done
        await report()
        again, more = await pinning.pin_missing(ctx, obj, source, node_pins, failures, allowed)
        pinned += again
    if pinned:
        for backend in targeted:  # new content on the node: their desired sets grew
            ctx.wakeups.wake((kube.STORAGEBACKENDS, namespace, backend["metadata"]["name"]))
    await restorer.announce(obj)
    await report(**({"restoreRequestedAt": asked} if asked is not None else {}))
    if more:
        return 0.0
    retry_times = [
        f.next_retry_at
        for f in (*failures.values(), *restorer.failures.values())
        if f.next_retry_at
    ]
    if retry_times:
        return max(1.0, (min(retry_times) - conditions.utcnow()).total_seconds())
    return None
