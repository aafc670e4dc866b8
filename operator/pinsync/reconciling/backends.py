"""Reconciling a StorageBackend: validate, mark dirty, check health, sync or audit, settle.

One pass of :func:`reconcile` is level-based: it reads the object, its Secret and the PinSets
that target it, and decides from that alone. The steps live in their own modules --
:mod:`validation`, :mod:`marking`, :mod:`auditing`, :mod:`reporting` -- and this one orders
them. Durable state (dirty marks, failures and their backoff) is read back from status on every
pass; the context only caches what is expensive to rebuild (the backend's client, parsed CIDs,
the node's pin list).

When the steps run:

* health: at its interval, while unhealthy, and right after a sync that hit backend errors --
  not on every pass of a dirty backend;
* sync: while dirty (never for ReadOnly backends, which are audited instead);
* audit: at its interval, also while the backend stays dirty (one unfetchable pin must not stop
  audits and usage measurements).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pinsync import (
    clusterpins,
    conditions,
    dirty,
    ipfs,
    kube,
    metrics,
    reasons,
    selectors,
    syncing,
)
from pinsync.backends import base, errors
from pinsync.reconciling import auditing, distributed, marking, reporting, sources
from pinsync.reconciling.context import Context, Decide, OnAnyNode
from pinsync.reconciling.validation import Verdict, client_for, validate
from pinsync.status import BackendStatus, parse_time

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 2.0
"""Seconds between status writes while a sync runs."""
INCREMENTAL_LIMIT = 5_000
"""New pins an incremental sync uploads without listing the backend first (or a tenth of what
it holds, if more): beyond that, a listing is cheaper than re-uploading pins it may hold."""


def health_check(latency: float | None, requested: str | None) -> dict[str, Any]:
    """Status fields recording a health check that took ``latency`` seconds (None: unknown).

    ``latencyMs`` is written as null when unknown: the status is merge-patched, and an absent
    key would leave the previous check's latency beside this check's time.
    """
    fields: dict[str, Any] = {
        "lastHealthCheck": {
            "finishedAt": conditions.now(),
            "latencyMs": None if latency is None else round(latency * 1000, 1),
        }
    }
    if requested is not None:
        fields["lastHandledHealthRequest"] = requested
    return fields


def health_conditions(error: errors.BackendError | None) -> list[conditions.Condition]:
    if error is None:
        return [
            conditions.condition("Healthy", True, reasons.REACHABLE.name, "health check passed")
        ]
    return [conditions.condition("Healthy", False, error.reason, error.message)]


def unhealthy_delay(error: errors.BackendError, *, every: float, retry_interval: float) -> float:
    """Seconds until the pass after a failed health check: soon if retrying may help, at the
    health interval if not; never sooner than a server asked (a 429's Retry-After)."""
    if not error.retryable:
        return every
    return max(min(every, retry_interval), getattr(error, "retry_after", 0.0))


class Pass:
    """One reconcile pass over one backend (holds what the steps share)."""

    view: BackendStatus
    """The status of :attr:`obj`, read again whenever the object is (after each write)."""

    def __init__(self, ctx: Context, obj: dict[str, Any], verdict: Verdict) -> None:
        self.ctx, self.obj, self.verdict = ctx, obj, verdict
        self.spec: dict[str, Any] = obj.get("spec") or {}
        self.key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.readonly = self.spec.get("accessMode") == "ReadOnly"
        self.found: list[sources.Source] = []
        """The targeting PinSets, resolved once at the start of the pass."""

    @property
    def obj(self) -> dict[str, Any]:
        return self._obj

    @obj.setter
    def obj(self, obj: dict[str, Any]) -> None:
        """The object as last read or written, and :attr:`view`, its status, read from it."""
        self._obj = obj
        self.view = BackendStatus.of(obj)

    @property
    def state(self) -> dirty.DirtyState:
        """The dirty state as of the object's latest write (marks may land mid-pass)."""
        return self.view.dirty

    async def write(self, updates: list[conditions.Condition], **fields: Any) -> None:
        self.obj = await marking.write(self.ctx, self.obj, updates, **fields)
        self.gauge()

    def gauge(self) -> None:
        is_dirty = self.state.dirty
        metrics.DIRTY.labels(namespace=self.key[0], backend=self.key[1]).set(int(is_dirty))

    async def transition(self, decide: Decide) -> None:
        self.obj = await self.ctx.transition(kube.STORAGEBACKENDS, self.obj, decide)
        self.gauge()

    async def event(self, type_: str, reason: str, message: str) -> None:
        log = logger.warning if type_ == "Warning" else logger.info
        log("%s/%s: %s: %s", *self.key, reason, message)
        await self.ctx.api.post_event(self.obj, type_=type_, reason=reason, message=message)

    def interval(self, block: str, default: float) -> float:
        return selectors.duration((self.spec.get(block) or {}).get("interval"), default)

    def due(self, last: str | None, every: float) -> bool:
        """Whether a step last finished at ``last`` (None: never) is due again."""
        finished = parse_time(last)
        if finished is None:
            return True
        return (conditions.utcnow() - finished).total_seconds() >= every

    def idle_delay(self) -> float:
        """Seconds until the next health check, audit or resync, whichever comes first."""
        return min(
            self.interval("healthCheck", 300.0),
            self.interval("audit", 3600.0),
            self.ctx.settings.resync_interval,
        )

    async def client(self) -> base.Backend:
        return await client_for(self.ctx, self.obj, self.verdict)

    async def run(self) -> float:
        ctx = self.ctx
        self.found = found = await sources.for_backend(ctx, self.obj)
        on_start = ctx.settings.mark_dirty_on_startup and self.key not in ctx.started
        ctx.started.add(self.key)
        before = self.state
        self.obj = await marking.mark_from_level(
            ctx, self.obj, self.verdict.credentials_version, found, on_start
        )
        self.remember_marks(before, self.state)
        self.gauge()
        backend = await self.client()
        health_every = self.interval("healthCheck", 300.0)
        healthy = self.view.conditions.is_true("Healthy")
        requested = marking.health_request(self.obj)
        checked_at = self.view.last_health_check.finished_at
        if requested is not None or not healthy or self.due(checked_at, health_every):
            delay = await self.health(backend, health_every, requested=requested)
            if delay is not None:
                return delay

        try:
            return await self.work(backend, health_every)
        except errors.BackendError as error:
            # The storage failed outside a per-pin operation (its listing, its usage): that is
            # what a health check would have found, so report it as one.
            return await self.unhealthy(error, health_every)

    async def work(self, backend: base.Backend, health_every: float) -> float:
        """Sync, audit or settle; returns the delay until the next pass."""
        audit_every = self.interval("audit", 3600.0)
        state = self.state
        if state.dirty and not self.readonly:
            delay, progress = await self.sync(backend, self.found, state)
            if progress.backend_errors:
                # The storage itself failed some writes: say so now, not at the next interval.
                unhealthy = await self.health(backend, health_every)
                if unhealthy is not None:
                    return unhealthy
            token = self.state.token
            if self.state.dirty and self.due(self.view.last_audit.finished_at, audit_every):
                # Still dirty (a pin that keeps failing): audit and measure anyway. A clean
                # backend is audited by the next pass, so usage includes what was just synced.
                await auditing.audit(self, backend, self.found)
            elif self.state.dirty and progress.uploaded:
                # Kept dirty by pins that keep failing, but 20,000 others just landed: usage
                # must not show the bucket as it was before them until the next audit.
                await self.write([], usage=await auditing.usage_of(backend))
            return 0.0 if self.state.token != token else delay
        if state.dirty or self.due(self.view.last_audit.finished_at, audit_every):
            # ReadOnly backends answer their marks with an audit: nothing can be uploaded.
            clears = state if self.readonly else None
            await auditing.audit(self, backend, self.found, clears=clears)
            if self.state.dirty and not self.readonly:
                return 0.0
        await self.settle()
        return self.idle_delay()

    async def health(
        self, backend: base.Backend, every: float, *, requested: str | None = None
    ) -> float | None:
        """Check health and record it (answering a ``health-requested-at`` value, if given);
        the delay until the next pass if unhealthy, else None."""
        started = time.monotonic()
        try:
            await backend.health()
        except errors.BackendError as error:
            checked = health_check(time.monotonic() - started, requested)
            return await self.unhealthy(error, every, checked=checked)
        checked = health_check(time.monotonic() - started, requested)
        learned = self.view.learned
        facts = {**learned, **backend.learned()}
        extra = {"learned": facts} if facts != learned else {}
        await self.write(health_conditions(None), **checked, **extra)
        return None

    async def unhealthy(
        self, error: errors.BackendError, every: float, *, checked: dict[str, Any] | None = None
    ) -> float:
        """Record a failed health check (``checked``: its fields; without, the storage failed
        outside a check, whose latency is then unknown); the delay until the next pass."""
        if self.view.conditions.is_true("Healthy"):
            await self.event("Warning", "Unhealthy", error.message)
        trio = conditions.reconciling if error.retryable else conditions.stalled
        updates = health_conditions(error) + trio(error.reason, error.message)
        await self.write(updates, phase="Error", **(checked or health_check(None, None)))
        return unhealthy_delay(error, every=every, retry_interval=self.ctx.settings.retry_interval)

    async def settle(self) -> None:
        """Nothing to sync: report readiness from the recorded counts."""
        desired, missing = self.view.counts.desired, self.view.counts.missing
        if self.readonly and missing:
            message = f"accessMode is ReadOnly and {missing} of {desired} pins are missing"
            updates = conditions.stalled(reasons.READ_ONLY_INCOMPLETE.name, message)
        else:
            updates = conditions.readiness(0 if not self.readonly else missing, desired)
        if not self.state.dirty:
            updates.append(conditions.synced(True, reasons.SYNCED.name, updates[0]["message"]))
        await self.write(updates, phase="Idle")

    def incremental(
        self, desired: sources.Desired, state: dirty.DirtyState
    ) -> syncing.Listing | None:
        """What the backend holds without listing it, when this replica knows: its last sync
        found every pin of a set present, and nothing but its PinSets' pins changed since (the
        marks since then were all level marks of sources, :meth:`remember_marks`). Then only
        the new pins are candidates: at a million pins, one new pin costs one upload, not a
        listing of two million objects. Anything else -- a requested or audit mark, a full
        sync, an operator restart -- lists the backend."""
        known = self.ctx.synced.get(self.key)
        if known is None or known[0] != state.token or state.full:
            return None
        _, held = known
        if len(desired.keys.minus(held)) > max(INCREMENTAL_LIMIT, len(held) // 10):
            return None  # many new pins: some may well be there already; list once
        return syncing.Listing(keys=held)

    def remember_marks(self, before: dirty.DirtyState, after: dirty.DirtyState) -> None:
        """Keep the incremental path open across level marks that only changed sources."""
        known = self.ctx.synced.get(self.key)
        if known is None or after.token == before.token:
            return
        added = after.token - before.token
        sourced = all(r.startswith("PinSet ") for r in after.reasons[:added])
        if known[0] == before.token and sourced and added <= len(after.reasons):
            self.ctx.synced[self.key] = (after.token, known[1])
        else:
            self.ctx.synced.pop(self.key, None)

    async def sync(
        self, backend: base.Backend, found: list[sources.Source], state: dirty.DirtyState
    ) -> tuple[float, syncing.Progress]:
        ctx = self.ctx
        started_token, started_at = state.token, conditions.now()
        desired = sources.Desired.of(self.key[0], found)
        default_url = ctx.settings.ipfs_api_url
        urls = {s.api_url for s in found} or {default_url}
        node_pins = OnAnyNode([await ctx.node_pins(url) for url in sorted(urls)])
        held = self.incremental(desired, state)
        syncing_msg = f"syncing: {'; '.join(state.reasons[:3])}"
        await self.write(
            [conditions.synced(False, reasons.SYNCING.name, syncing_msg)],
            phase="Planning",
            lastSync={"startedAt": started_at},  # merge-patched into the last sync's record
        )
        await self.event("Normal", "SyncStarted", syncing_msg)
        last_report, last_phase = 0.0, "Planning"

        async def report(progress: syncing.Progress) -> None:
            nonlocal last_report, last_phase
            moved = progress.phase != last_phase
            if moved or time.monotonic() - last_report >= PROGRESS_INTERVAL:
                last_report, last_phase = time.monotonic(), progress.phase
                updates = conditions.readiness(progress.missing, progress.desired)
                await self.write(updates, **reporting.progress_fields(progress))

        sync_spec = self.spec.get("sync") or {}
        mover = None
        if ctx.settings.workers:
            mover = distributed.Distributed(
                ctx,
                self.obj,
                started_token,
                urls_of=lambda cid: desired.api_urls(cid, default_url),
                announce=self.event,
            )
        progress = await syncing.run(
            backend=backend,
            kubo_for=lambda cid: ctx.kubo(desired.api_urls(cid, default_url)[0]),
            desired=syncing.Wanted(desired.keys, desired.pinsets_of, desired.spelling),
            node_pins=node_pins,
            failures=lambda missing: reporting.failures_of(
                self.view.failures, desired.spellings(missing)
            ),
            full=state.full,
            deep=state.deep,
            prune=sync_spec.get("deletionPolicy") == "Prune",
            concurrency=int(sync_spec.get("concurrency") or 4),
            global_limit=ctx.transfers,
            report=report,
            now=conditions.utcnow,
            held=held,
            mover=mover,
        )
        ok = (
            not progress.failures
            and not progress.prune_failures
            and not progress.stopped
            and progress.refused is None
        )
        reporting.record_metrics(self.key, progress, ok)
        fields = {
            **reporting.progress_fields(progress),
            "lastSync": {
                "startedAt": started_at,
                "finishedAt": conditions.now(),
                "result": "Succeeded" if ok else "Failed",
                "uploaded": progress.uploaded,
                "bytes": progress.bytes,
                "token": started_token,
            },
            "sources": reporting.sources_status(found, progress),
        }
        if not progress.pruning and self.view.counts.prune_failed is not None:
            fields["counts"]["pruneFailed"] = None  # no longer pruning: merge-patched away
        message = f"{progress.present} of {progress.desired} pins present"
        if ok:
            readiness = conditions.readiness(progress.missing, progress.desired)
            await self.transition(
                lambda current: marking.cleared(
                    current, started_token, message, updates=readiness, fields=fields
                )
            )
            if not self.state.dirty:  # every desired pin is there: the next sync may build on it
                ctx.synced[self.key] = (self.state.token, desired.keys)
            await self.event(
                "Normal",
                "Synced",
                f"uploaded {progress.uploaded} pin(s), {progress.bytes} bytes; {message}",
            )
            return (0.0 if self.state.dirty else self.idle_delay()), progress
        if self.state.token == started_token and not state.full and not progress.pruning:
            # What this pass left present is known, failed pins or not: the next pass (these
            # pins' retry) transfers what is still missing, not again what just landed. (Not
            # when pruning: the unwanted pins left, whose deletion failed, are not in it.)
            ctx.synced[self.key] = (started_token, progress.present_cids)
        if progress.refused is not None:
            return await self.writes_refused(progress.refused, fields), progress
        message = failed_message(progress)
        await self.write(conditions.unsynced(reasons.SYNC_FAILED.name, message), **fields)
        await self.event("Warning", "SyncFailed", message)
        failed = [*progress.failures.values(), *progress.prune_failures.values()]
        retry_at = min((f.next_retry_at for f in failed if f.next_retry_at), default=None)
        if retry_at is None:
            return ctx.settings.retry_interval, progress
        return max(1.0, (retry_at - conditions.utcnow()).total_seconds()), progress

    async def writes_refused(self, refused: errors.WritesDisabled, fields: dict[str, Any]) -> float:
        """The service takes no writes: Stalled (nothing the operator does changes that), but
        still Healthy, listed, audited and restored from. The next pass tries one write again,
        at the idle interval rather than each failed pin's backoff: no retry storm."""
        message = f"{refused.message}; reads and restores still work"
        updates = conditions.unsynced(refused.reason, message, trio=conditions.stalled)
        await self.write(updates, **fields)
        await self.event("Warning", refused.reason, message)
        return self.idle_delay()


def failed_message(progress: syncing.Progress) -> str:
    """What went wrong in a pass that did not succeed: failed pins, failed deletions."""
    parts = []
    if progress.failures:
        first = next(iter(progress.failures.values()))
        parts.append(f"{len(progress.failures)} pin(s) failed, e.g. {first.cid}: {first.reason}")
    if progress.prune_failures:
        first = next(iter(progress.prune_failures.values()))
        count = len(progress.prune_failures)
        parts.append(f"{count} pin(s) could not be pruned, e.g. {first.cid}: {first.message}")
    if progress.stopped and not parts:
        parts.append("stopped after storage errors in a row")
    return "; ".join(parts)


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    """One pass; returns seconds until the next one is due (None: the default resync)."""
    obj = await ctx.api.get(kube.STORAGEBACKENDS, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    verdict = await validate(ctx, obj)
    if not verdict.ok:
        await marking.write(ctx, obj, verdict.conditions)
        return None
    obj = await marking.consume_annotations(ctx, obj)
    try:
        return await Pass(ctx, obj, verdict).run()
    except (ipfs.IpfsError, clusterpins.ClusterError) as exc:
        # Without the node (or the cluster) there is neither a desired set nor content; retry,
        # visibly.
        what = "IPFS Cluster" if isinstance(exc, clusterpins.ClusterError) else "IPFS node"
        message = f"{what}: {exc}"
        fresh = await ctx.api.get(kube.STORAGEBACKENDS, namespace, name)
        if fresh is not None:
            updates = conditions.reconciling(exc.reason, message)
            await marking.write(ctx, fresh, updates, phase="Error")
        return ctx.settings.retry_interval
