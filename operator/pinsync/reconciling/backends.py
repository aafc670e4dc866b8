"""Reconciling a StorageBackend: validate, mark dirty, check health, sync or audit, report.

One pass of :func:`reconcile` is level-based: it reads the object, its Secret and the PinSets
that target it, and decides from that alone. Marks that must not wait for a running sync (the
``mark-dirty`` and ``sync-requested-at`` annotations) are also applied straight from the watch
handler through :func:`consume_annotations`; both paths use the same precondition-guarded write.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from typing import Any

from pinsync import conditions, dirty, ipfs, kube, metrics, planner, selectors, syncing
from pinsync.backends import base, errors, registry
from pinsync.reconciling import sources
from pinsync.reconciling.context import Context

logger = logging.getLogger(__name__)

MARK_DIRTY = "pinsync.io/mark-dirty"
SYNC_REQUESTED_AT = "pinsync.io/sync-requested-at"
PROGRESS_INTERVAL = 2.0
"""Seconds between status writes while a sync runs."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of validation: conditions to write, and on success what sync needs."""

    conditions: list[conditions.Condition]
    backend_class: type[base.Backend] | None = None
    credentials: base.Credentials | None = None
    credentials_version: str = ""

    @property
    def ok(self) -> bool:
        return self.backend_class is not None


async def validate(ctx: Context, obj: dict[str, Any]) -> Verdict:
    """Check the references and the Secret keys the backend type needs."""
    namespace = obj["metadata"]["namespace"]
    spec = obj.get("spec", {})
    if spec.get("suspend"):
        return Verdict(
            [
                conditions.condition("Ready", False, "Suspended", "spec.suspend is true"),
                conditions.condition("Reconciling", False, "Suspended"),
                conditions.condition("Stalled", False, "Suspended"),
            ]
        )
    try:
        cls = registry.load(spec["type"])
    except (registry.NotImplementedBackend, ImportError) as exc:
        return Verdict(conditions.stalled("NotImplemented", str(exc)))

    secret_name = (spec.get("credentialsSecretRef") or {}).get("name")
    if not secret_name:
        if cls.credential_keys.optional_secret:
            return Verdict([], cls, base.Credentials())
        message = f"type {spec['type']} needs spec.credentialsSecretRef"
        return Verdict(conditions.stalled("SecretRequired", message))
    secret = await ctx.api.read_secret(namespace, secret_name)
    if secret is None:
        message = f"Secret {secret_name!r} not found in namespace {namespace!r}"
        return Verdict(conditions.stalled("SecretNotFound", message))
    missing = cls.credential_keys.missing({k for k, v in secret.data.items() if v})
    if missing is not None:
        message = f"Secret {secret_name!r} lacks key(s): {', '.join(sorted(missing))}"
        return Verdict(conditions.stalled("SecretKeyMissing", message))
    return Verdict([], cls, base.Credentials(data=secret.data), secret.version)


def annotation_marks(obj: dict[str, Any]) -> dict[str, Any] | None:
    """Status fields for new ``mark-dirty`` / ``sync-requested-at`` annotation values, if any."""
    annotations = obj["metadata"].get("annotations") or {}
    status = obj.get("status") or {}
    state = dirty.DirtyState.from_status(status)
    fields: dict[str, Any] = {}
    at = conditions.now()
    mark = annotations.get(MARK_DIRTY)
    if mark is not None and mark != status.get("lastHandledMarkDirty"):
        state = dirty.mark(state, f"requested: {mark}" if mark else "requested", at=at)
        fields["lastHandledMarkDirty"] = mark
    requested = annotations.get(SYNC_REQUESTED_AT)
    if requested is not None and requested != status.get("lastHandledSyncRequest"):
        state = dirty.mark(state, f"full sync requested at {requested}", at=at, full=True)
        fields["lastHandledSyncRequest"] = requested
    return {**fields, "dirty": state.to_status()} if fields else None


async def consume_annotations(ctx: Context, obj: dict[str, Any]) -> dict[str, Any]:
    return await ctx.transition(kube.STORAGEBACKENDS, obj, annotation_marks)


def level_marks(
    obj: dict[str, Any], verdict: Verdict, found: list[sources.Source], on_start: bool
) -> tuple[list[str], dict[str, Any]]:
    """Reasons to mark dirty, from comparing the world with what ``status.marked`` accounted for.

    Returns the reasons and the new ``marked`` record, to be written in the same transition.
    """
    marked = (obj.get("status") or {}).get("marked")
    generation = obj["metadata"].get("generation")
    digests = {s.name: s.digest for s in found}
    now_marked = {
        "generation": generation,
        "credentialsVersion": verdict.credentials_version,
        "sources": digests,
    }
    if marked is None:
        return ["created"], now_marked
    reasons = []
    if marked.get("generation") != generation:
        reasons.append(f"spec changed (generation {generation})")
    if marked.get("credentialsVersion") != verdict.credentials_version:
        reasons.append("credentials Secret changed")
    recorded = marked.get("sources") or {}
    reasons += [f"PinSet {n} changed" for n, d in digests.items() if recorded.get(n) != d]
    reasons += [f"PinSet {n} no longer targets this backend" for n in recorded if n not in digests]
    if on_start:
        reasons.append("operator started (markDirtyOnStartup)")
    return reasons, now_marked


def health_conditions(error: errors.BackendError | None) -> list[conditions.Condition]:
    if error is None:
        return [conditions.condition("Healthy", True, "Reachable", "health check passed")]
    return [conditions.condition("Healthy", False, error.reason, error.message)]


def failures_of(status: dict[str, Any]) -> dict[str, planner.Failure]:
    return {f["cid"]: planner.Failure.from_status(f) for f in status.get("failures") or ()}


def failures_status(failures: dict[str, planner.Failure]) -> list[dict[str, object]]:
    ordered = sorted(failures.values(), key=lambda f: (-f.attempts, f.cid))
    return [f.to_status() for f in ordered[: planner.MAX_LISTED]]


def progress_fields(progress: syncing.Progress) -> dict[str, Any]:
    return {
        "phase": progress.phase,
        "counts": {
            "desired": progress.desired,
            "present": progress.present,
            "missing": progress.missing,
            "failed": len(progress.failures),
        },
        "bytesTransferred": progress.bytes,
        "failures": failures_status(progress.failures),
    }


def sources_status(found: list[sources.Source], progress: syncing.Progress) -> list[dict[str, Any]]:
    out = []
    for source in found:
        present = sum(1 for c in source.pins if c in progress.present_cids)
        failed = sum(1 for c in source.pins if c in progress.failures)
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


class Pass:
    """One reconcile pass over one backend (holds what the steps share)."""

    def __init__(self, ctx: Context, obj: dict[str, Any], verdict: Verdict) -> None:
        self.ctx, self.obj, self.verdict = ctx, obj, verdict
        self.spec: dict[str, Any] = obj.get("spec") or {}
        self.key = (obj["metadata"]["namespace"], obj["metadata"]["name"])

    @property
    def status(self) -> dict[str, Any]:
        return self.obj.get("status") or {}

    async def write(self, updates: list[conditions.Condition], **fields: Any) -> None:
        self.obj["status"] = await self.ctx.write_status(
            kube.STORAGEBACKENDS, self.obj, updates, **fields
        )
        is_dirty = dirty.DirtyState.from_status(self.obj["status"]).dirty
        metrics.DIRTY.labels(namespace=self.key[0], backend=self.key[1]).set(int(is_dirty))

    async def event(self, type_: str, reason: str, message: str) -> None:
        log = logger.warning if type_ == "Warning" else logger.info
        log("%s/%s: %s: %s", *self.key, reason, message)
        await self.ctx.api.post_event(self.obj, type_=type_, reason=reason, message=message)

    def interval(self, block: str, default: float) -> float:
        return selectors.duration((self.spec.get(block) or {}).get("interval"), default)

    def due(self, field: str, every: float) -> bool:
        last = self.status.get(field)
        if isinstance(last, dict):
            last = last.get("finishedAt")
        if not last:
            return True
        age = conditions.utcnow() - datetime.datetime.fromisoformat(
            str(last).replace("Z", "+00:00")
        )
        return age.total_seconds() >= every

    async def run(self) -> float:
        ctx, verdict = self.ctx, self.verdict
        cache: dict[str, dict[str, str]] = {}
        found = await sources.for_backend(ctx, self.obj, cache)
        on_start = ctx.settings.mark_dirty_on_startup and self.key not in ctx.started
        ctx.started.add(self.key)

        def decide(obj: dict[str, Any]) -> dict[str, Any] | None:
            reasons, marked = level_marks(obj, verdict, found, on_start)
            if not reasons:
                return None
            state = dirty.DirtyState.from_status(obj.get("status"))
            for reason in reversed(reasons):
                state = dirty.mark(state, reason, at=conditions.now())
            return {"dirty": state.to_status(), "marked": marked}

        self.obj = await ctx.transition(kube.STORAGEBACKENDS, self.obj, decide)

        assert verdict.backend_class is not None and verdict.credentials is not None
        learned = self.status.get("learned") or {}
        config = {**learned, **(self.spec.get(registry.config_block(self.spec["type"])) or {})}
        async with verdict.backend_class(config, verdict.credentials) as backend:
            health_every = self.interval("healthCheck", 300.0)
            state = dirty.DirtyState.from_status(self.status)
            healthy = conditions.is_true(self.status.get("conditions"), "Healthy")
            if state.dirty or not healthy or self.due("lastHealthCheck", health_every):
                error = await self.check_health(backend)
                if error is not None:
                    retry = ctx.settings.retry_interval
                    updates = health_conditions(error) + [
                        conditions.condition("Synced", False, "Unhealthy", error.message),
                        *(
                            conditions.reconciling(error.reason, error.message)
                            if error.retryable
                            else conditions.stalled(error.reason, error.message)
                        ),
                    ]
                    await self.write(updates, phase="Error", lastHealthCheck=conditions.now())
                    return min(health_every, retry) if error.retryable else health_every
                facts = {**learned, **backend.learned()}
                extra = {"learned": facts} if facts != learned else {}
                await self.write(health_conditions(None), lastHealthCheck=conditions.now(), **extra)

            state = dirty.DirtyState.from_status(self.status)
            readonly = self.spec.get("accessMode") == "ReadOnly"
            audit_every = self.interval("audit", 3600.0)
            if state.dirty and not readonly:
                return await self.sync(backend, found, cache, state, self.idle_delay())
            if self.due("lastAudit", audit_every):
                await self.audit(backend, found)
                if dirty.DirtyState.from_status(self.status).dirty and not readonly:
                    return 0.0
            await self.settle(found, readonly)
            return self.idle_delay()

    def idle_delay(self) -> float:
        """Seconds until the next health check, audit or resync, whichever comes first."""
        return min(
            self.interval("healthCheck", 300.0),
            self.interval("audit", 3600.0),
            self.ctx.settings.resync_interval,
        )

    async def check_health(self, backend: base.Backend) -> errors.BackendError | None:
        try:
            await backend.health()
        except errors.BackendError as exc:
            if conditions.is_true(self.status.get("conditions"), "Healthy"):
                await self.event("Warning", "Unhealthy", exc.message)
            return exc
        return None

    async def settle(self, found: list[sources.Source], readonly: bool) -> None:
        """Clean (or read-only): report Synced/Ready from the recorded counts."""
        counts = self.status.get("counts") or {}
        message = f"{counts.get('present', 0)} of {counts.get('desired', 0)} pins present"
        if readonly:
            updates = [conditions.condition("Synced", False, "ReadOnly", "accessMode is ReadOnly")]
            updates += conditions.ready("ReadOnly", message)
        else:
            updates = [conditions.condition("Synced", True, "Synced", message)]
            updates += conditions.ready("Synced", message)
        await self.write(updates, phase="Idle")

    async def sync(
        self,
        backend: base.Backend,
        found: list[sources.Source],
        cache: dict[str, dict[str, str]],
        state: dirty.DirtyState,
        idle_delay: float,
    ) -> float:
        ctx = self.ctx
        started_token, started_at = state.token, conditions.now()
        desired: dict[str, tuple[str, ...]] = {}
        url_of: dict[str, str] = {}
        for source in found:
            for cid in source.pins:
                attribution = f"{self.key[0]}/{source.name}"
                desired[cid] = (*desired.get(cid, ()), attribution)
                url_of.setdefault(cid, source.api_url)
        urls = set(url_of.values()) or {ctx.settings.ipfs_api_url}
        node_pins: dict[str, str] = {}
        for url in urls:
            node_pins.update(await sources.node_pins(ctx, url, cache))
        syncing_msg = f"syncing: {'; '.join(state.reasons[:3])}"
        await self.write(
            [conditions.condition("Synced", False, "Syncing", syncing_msg)]
            + conditions.reconciling("Syncing", syncing_msg),
            phase="Planning",
            lastSync={**(self.status.get("lastSync") or {}), "startedAt": started_at},
        )
        await self.event("Normal", "SyncStarted", syncing_msg)
        last_report = 0.0

        async def report(progress: syncing.Progress) -> None:
            nonlocal last_report
            if time.monotonic() - last_report >= PROGRESS_INTERVAL:
                last_report = time.monotonic()
                await self.write([], **progress_fields(progress))

        default_url = ctx.settings.ipfs_api_url
        progress = await syncing.run(
            backend=backend,
            kubo_for=lambda cid: ctx.kubo(url_of.get(cid, default_url)),
            desired=desired,
            node_pins=node_pins,
            failures=failures_of(self.status),
            full=state.full,
            deep=state.deep,
            prune=(self.spec.get("sync") or {}).get("deletionPolicy") == "Prune",
            concurrency=int((self.spec.get("sync") or {}).get("concurrency") or 4),
            global_limit=ctx.transfers,
            report=report,
            now=conditions.utcnow,
        )
        ok = not progress.failures
        self.record_metrics(progress, ok)
        last_sync = {
            "startedAt": started_at,
            "finishedAt": conditions.now(),
            "result": "Succeeded" if ok else "Failed",
            "uploaded": progress.uploaded,
            "bytes": progress.bytes,
            "token": started_token,
        }
        fields = {
            **progress_fields(progress),
            "lastSync": last_sync,
            "sources": sources_status(found, progress),
        }
        if ok:

            def clear(obj: dict[str, Any]) -> dict[str, Any]:
                current = dirty.DirtyState.from_status(obj.get("status"))
                return {"dirty": dirty.clear(current, started_token).to_status()}

            self.obj = await ctx.transition(kube.STORAGEBACKENDS, self.obj, clear)
            still = dirty.DirtyState.from_status(self.status)
            message = f"{progress.present} of {progress.desired} pins present"
            if still.dirty:
                updates = [
                    conditions.condition(
                        "Synced", False, "Dirty", f"marked again: {still.reasons[0]}"
                    )
                ]
                updates += conditions.reconciling("Dirty", still.reasons[0])
            else:
                updates = [conditions.condition("Synced", True, "Synced", message)]
                updates += conditions.ready("Synced", message)
            await self.write(updates, **fields)
            await self.event(
                "Normal",
                "Synced",
                f"uploaded {progress.uploaded} pin(s), {progress.bytes} bytes; {message}",
            )
            return 0.0 if still.dirty else idle_delay
        first = next(iter(progress.failures.values()))
        message = f"{len(progress.failures)} pin(s) failed, e.g. {first.cid}: {first.reason}"
        updates = [conditions.condition("Synced", False, "SyncFailed", message)]
        updates += conditions.reconciling("SyncFailed", message)
        await self.write(updates, **fields)
        await self.event("Warning", "SyncFailed", message)
        retry_at = min(
            (f.next_retry_at for f in progress.failures.values() if f.next_retry_at), default=None
        )
        if retry_at is None:
            return ctx.settings.retry_interval
        return max(1.0, (retry_at - conditions.utcnow()).total_seconds())

    def record_metrics(self, progress: syncing.Progress, ok: bool) -> None:
        labels = {"namespace": self.key[0], "backend": self.key[1]}
        metrics.BYTES_UPLOADED.labels(**labels).inc(progress.bytes)
        metrics.PINS_UPLOADED.labels(**labels).inc(progress.uploaded)
        for failure in progress.failures.values():
            metrics.PIN_FAILURES.labels(**labels, reason=failure.reason).inc()
        metrics.SYNCS.labels(**labels, result="Succeeded" if ok else "Failed").inc()
        metrics.MISSING.labels(**labels).set(progress.missing)

    async def audit(self, backend: base.Backend, found: list[sources.Source]) -> None:
        """Re-list (and with ``audit.deep`` re-hash) the backend; mark dirty on drift."""
        deep = bool((self.spec.get("audit") or {}).get("deep"))
        await self.write([], phase="Auditing")
        present = {info.cid async for info in backend.list_pins()}
        desired = {cid for s in found for cid in s.pins}
        missing = desired - present
        damaged = []
        if deep:
            for cid in sorted(desired & present):
                try:
                    await backend.verify_pin(cid, deep=True)
                except errors.BackendError:
                    damaged.append(cid)
        usage = await backend.usage()
        fields: dict[str, Any] = {"usage": {"bytes": usage.bytes, "objects": usage.objects}}
        if usage.free is not None:
            fields["usage"]["freeBytes"] = usage.free
        last = {
            "finishedAt": conditions.now(),
            "missing": len(missing),
            "damaged": len(damaged),
            "deep": deep,
        }
        if missing or damaged:
            reason = f"audit: {len(missing)} missing, {len(damaged)} damaged"
            await self.event("Warning", "DriftDetected", reason)

            def decide(obj: dict[str, Any]) -> dict[str, Any]:
                state = dirty.DirtyState.from_status(obj.get("status"))
                state = dirty.mark(
                    state, reason, at=conditions.now(), full=bool(damaged), deep=deep
                )
                return {"dirty": state.to_status(), "lastAudit": last, **fields}

            self.obj = await self.ctx.transition(kube.STORAGEBACKENDS, self.obj, decide)
        else:
            await self.write([], lastAudit=last, phase="Idle", **fields)


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    """One pass; returns seconds until the next one is due (None: the default resync)."""
    obj = await ctx.api.get(kube.STORAGEBACKENDS, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    verdict = await validate(ctx, obj)
    if not verdict.ok:
        await ctx.write_status(kube.STORAGEBACKENDS, obj, verdict.conditions)
        return None
    obj = await consume_annotations(ctx, obj)
    try:
        return await Pass(ctx, obj, verdict).run()
    except ipfs.IpfsError as exc:
        # Without the node there is neither a desired set nor content; retry, visibly.
        message = f"IPFS node: {exc}"
        updates = [conditions.condition("Synced", False, exc.reason, message)]
        updates += conditions.reconciling(exc.reason, message)
        fresh = await ctx.api.get(kube.STORAGEBACKENDS, namespace, name)
        if fresh is not None:
            await ctx.write_status(kube.STORAGEBACKENDS, fresh, updates, phase="Error")
        return ctx.settings.retry_interval
