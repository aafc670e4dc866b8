"""Reconciling a PinSet: pin its CIDs on the node, resolve its backends, summarise progress.

Pinning on Kubo happens here, in bounded batches per pass, so that a PinSet of thousands of
CIDs that the network cannot provide never blocks its loop for long: every pass pins at most
``PIN_BATCH`` CIDs, records failures with a backoff, and comes back soon for the rest.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pinsync import conditions, ipfs, kube, planner, selectors
from pinsync.reconciling import sources
from pinsync.reconciling.context import Context

MAX_LISTED = 10
"""How many offending CIDs or names a condition message quotes before summarising."""
PIN_BATCH = 32
"""CIDs a pass tries to pin on the node; the rest wait for the next pass."""
PIN_CONCURRENCY = 8


def quoted(items: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else f"{shown} and {len(items) - MAX_LISTED} more"


async def pin_missing(
    ctx: Context, obj: dict[str, Any], source: sources.Source, node_pins: dict[str, str]
) -> tuple[int, dict[str, planner.Failure], bool]:
    """Pin a batch of the PinSet's CIDs not yet on the node; (pinned now, failures, more to do)."""
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    known = ctx.pin_failures.setdefault(key, {})
    wanted = set(source.pins)
    for cid in list(known):
        if cid not in wanted or cid in node_pins:
            del known[cid]
    now = conditions.utcnow()
    todo = [
        c
        for c in source.pins
        if c not in node_pins and (c not in known or (known[c].next_retry_at or now) <= now)
    ]
    batch = todo[:PIN_BATCH]
    spec_ipfs = (obj.get("spec") or {}).get("ipfs") or {}
    timeout = selectors.duration(spec_ipfs.get("pinTimeout"), 120.0)
    name = f"pinsync/{key[0]}/{key[1]}"
    kubo = ctx.kubo(source.api_url)
    limit = asyncio.Semaphore(PIN_CONCURRENCY)
    pinned = 0

    async def pin(cid: str) -> None:
        nonlocal pinned
        async with limit:
            try:
                await kubo.pin_add(cid, name=name, timeout=timeout)
            except ipfs.IpfsError as exc:
                known[cid] = planner.failed(
                    known.get(cid), cid, exc.reason, str(exc), now=conditions.utcnow()
                )
                return
            known.pop(cid, None)
            node_pins[cid] = name
            pinned += 1

    await asyncio.gather(*(pin(c) for c in batch))
    return pinned, known, len(todo) > len(batch)


def backend_summary(source: sources.Source, backend: dict[str, Any]) -> dict[str, Any]:
    status = backend.get("status") or {}
    entry = next((s for s in status.get("sources") or () if s["name"] == source.name), None)
    summary: dict[str, Any] = {"name": backend["metadata"]["name"]}
    if entry is None or entry.get("digest") != source.digest:
        # The backend has not synced this version of the PinSet yet.
        return summary | {"pinned": 0, "missing": len(source.pins), "failed": 0, "ready": False}
    synced = conditions.is_true(status.get("conditions"), "Synced")
    missing = len(source.pins) - entry["present"] - entry["failed"]
    summary |= {"pinned": entry["present"], "missing": missing, "failed": entry["failed"]}
    summary["ready"] = synced and entry["present"] == len(source.pins)
    if (status.get("lastSync") or {}).get("finishedAt"):
        summary["lastSyncFinishedAt"] = status["lastSync"]["finishedAt"]
    return summary


def known_failures(ctx: Context, obj: dict[str, Any]) -> dict[str, planner.Failure]:
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    return ctx.pin_failures.get(key, {})


async def write_report(
    ctx: Context,
    obj: dict[str, Any],
    source: sources.Source,
    targeted: list[dict[str, Any]],
    missing_backends: list[str],
    node_pins: dict[str, str],
    failures: dict[str, planner.Failure],
) -> dict[str, Any]:
    """Conditions, counts and per-backend summaries from what this pass knows."""
    unpinned = sum(1 for c in source.pins if c not in node_pins)
    summaries = [backend_summary(source, b) for b in targeted]
    ready_backends = sum(1 for s in summaries if s["ready"])
    counts = {
        "pins": len(source.pins),
        "backends": len(targeted),
        "syncedBackends": ready_backends,
        "failed": len(failures),
    }
    if source.invalid:
        updates = conditions.stalled("InvalidCID", f"not a CID: {quoted(source.invalid)}")
    elif missing_backends:
        message = f"StorageBackend(s) not found: {quoted(missing_backends)}"
        updates = conditions.stalled("BackendNotFound", message)
    elif not targeted:
        updates = conditions.stalled("NoBackends", "spec.backendSelector matches no StorageBackend")
    elif failures:
        first = min(failures.values(), key=lambda f: f.cid)
        message = (
            f"{len(failures)} CID(s) could not be pinned on the node, "
            f"e.g. {first.cid}: {first.reason}"
        )
        updates = conditions.reconciling("PinFailed", message)
    elif ready_backends < len(targeted) or unpinned:
        message = (
            f"{ready_backends} of {len(targeted)} backend(s) have all {len(source.pins)} pin(s)"
        )
        updates = conditions.reconciling("Syncing", message)
    else:
        message = f"{len(source.pins)} pin(s) on {len(targeted)} backend(s)"
        updates = conditions.ready("Synced", message)
    failure_list = sorted(failures.values(), key=lambda f: f.cid)[: planner.MAX_LISTED]
    return await ctx.write_status(
        kube.PINSETS,
        obj,
        updates,
        counts=counts,
        synced=f"{ready_backends}/{len(targeted)}",
        backends=summaries,
        failures=[{"cid": f.cid, "reason": f.reason, "message": f.message} for f in failure_list],
    )


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    obj = await ctx.api.get(kube.PINSETS, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    spec = obj.get("spec") or {}
    url = sources.api_url(ctx, obj)
    try:
        node_pins = await ctx.kubo(url).pins()
    except ipfs.IpfsError as exc:
        message = f"IPFS node {url}: {exc}"
        await ctx.write_status(kube.PINSETS, obj, conditions.reconciling(exc.reason, message))
        return ctx.settings.retry_interval
    source = sources.resolve(ctx, obj, node_pins)
    all_backends = await ctx.api.list(kube.STORAGEBACKENDS, namespace)
    targeted = [b for b in all_backends if sources.targets(obj, b)]
    existing = {b["metadata"]["name"] for b in all_backends}
    missing_backends = [n for n in spec.get("backends") or () if n not in existing]

    async def report() -> None:
        obj["status"] = await write_report(
            ctx, obj, source, targeted, missing_backends, node_pins, known_failures(ctx, obj)
        )

    await report()  # before pinning, which may take up to pinTimeout
    pinned, failures, more = await pin_missing(ctx, obj, source, node_pins)
    if pinned:
        for backend in targeted:  # new content on the node: their desired sets grew
            ctx.wakeups.wake((kube.STORAGEBACKENDS, namespace, backend["metadata"]["name"]))
    await report()
    if more:
        return 0.0
    retry_times = [f.next_retry_at for f in failures.values() if f.next_retry_at]
    if retry_times:
        return max(1.0, (min(retry_times) - conditions.utcnow()).total_seconds())
    return None
