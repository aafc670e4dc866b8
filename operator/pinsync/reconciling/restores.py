"""A PinSet pass's restores: the backends to read from, the record of what failed, metrics.

The decisions are :mod:`pinsync.restoreplanner`'s and the streaming :mod:`pinsync.restoring`'s;
this module binds them to the objects of one pass. Restore failures are kept apart from the
node's pin failures (``status.failures``): a pin can fail to be restored (no backend has it)
and still be fetched from the network, and the two have their own backoff. Like pin failures,
they are kept twice: the first ``planner.MAX_LISTED`` in full (``status.restoreFailures``) and
every one compactly (``status.restoreRetries``), so backoff survives restarts for any number.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Container, Mapping
from typing import Any

from pinsync import (
    conditions,
    ipfs,
    metrics,
    planner,
    reasons,
    restoreplanner,
    restoring,
    selectors,
)
from pinsync.backends import base
from pinsync.reconciling import reporting, sources
from pinsync.reconciling.context import Context
from pinsync.reconciling.validation import client_for, validate
from pinsync.status import PinSetStatus

logger = logging.getLogger(__name__)


def failures_of(
    view: PinSetStatus, source: sources.Source, node_pins: Container[str]
) -> dict[str, planner.Failure]:
    """Recorded restore failures of the PinSet's pins that the node still lacks."""
    unpinned = {c: s for c, s in source.listed.items() if c not in node_pins}
    return reporting.failures_of(view.restore_failures, unpinned)


@dataclasses.dataclass(kw_only=True)
class Restorer:
    """The restores of one PinSet pass (backend clients are built on the first restore)."""

    ctx: Context
    namespace: str
    source: sources.Source
    targeted: list[dict[str, Any]]
    """The backends to restore from (those the PinSet targets, and a ``fromBackend`` source)."""
    first: str | None = None
    """A backend tried before the others (a ``fromBackend`` source)."""
    failures: dict[str, planner.Failure]
    """Restore failures by pin identity, updated in place."""
    pin_timeout: float
    previous: int = 0
    """``counts.restored`` before this pass (the count is cumulative)."""
    restored: int = 0
    bytes: int = 0
    by_backend: dict[str, int] = dataclasses.field(default_factory=dict)
    new_failures: int = 0
    _clients: list[tuple[str, base.Backend]] | None = None
    _building: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @classmethod
    def of(
        cls,
        ctx: Context,
        obj: dict[str, Any],
        view: PinSetStatus,
        source: sources.Source,
        targeted: list[dict[str, Any]],
        node_pins: Container[str],
        *,
        first: str | None = None,
    ) -> Restorer:
        spec_ipfs = (obj.get("spec") or {}).get("ipfs") or {}
        return cls(
            ctx=ctx,
            namespace=obj["metadata"]["namespace"],
            source=source,
            targeted=targeted,
            first=first,
            failures=failures_of(view, source, node_pins),
            pin_timeout=selectors.duration(spec_ipfs.get("pinTimeout"), 120.0),
            previous=view.counts.restored,
        )

    @property
    def total(self) -> int:
        return self.previous + self.restored

    def wants(self, cid: str) -> bool:
        return restoreplanner.due(self.failures.get(cid), conditions.utcnow())

    async def clients(self) -> list[tuple[str, base.Backend]]:
        """The usable backends' clients, in restore order (validated as their loops do)."""
        async with self._building:  # the pass restores several pins at once
            if self._clients is None:
                self._clients = await self._build()
        return self._clients

    async def _build(self) -> list[tuple[str, base.Backend]]:
        source = self.source
        order = restoreplanner.ranked(
            self.targeted, source.name, source.digest, len(source.pins), first=self.first
        )
        by_name = {b["metadata"]["name"]: b for b in self.targeted}
        built = []
        for candidate in order:
            obj = by_name[candidate.name]
            verdict = await validate(self.ctx, obj)
            if verdict.ok:
                built.append((candidate.name, await client_for(self.ctx, obj, verdict)))
        return built

    async def restore(self, kubo: ipfs.Kubo, cid: str, *, name: str) -> bool:
        """Restore one pin (identity ``cid``) onto the node, pinned as ``name``; recorded."""
        clients = await self.clients()
        async with self.ctx.transfers:  # restores share the operator's bound on transfers
            outcome = await restoring.restore(
                kubo,
                restoreplanner.spellings(self.source.spelling(cid)),
                clients,
                name=name,
                pin_timeout=self.pin_timeout,
            )
        if outcome.backend is not None:
            self.failures.pop(cid, None)
            self.restored += 1
            self.bytes += outcome.bytes
            self.by_backend[outcome.backend] = self.by_backend.get(outcome.backend, 0) + 1
            labels = {"namespace": self.namespace, "backend": outcome.backend}
            metrics.PINS_RESTORED.labels(**labels).inc()
            metrics.BYTES_RESTORED.labels(**labels).inc(outcome.bytes)
            return True
        reason, message = outcome.failure()
        spelled = self.source.spelling(cid)
        self.failures[cid] = planner.failed(
            self.failures.get(cid), spelled, reason, message, now=conditions.utcnow()
        )
        metrics.RESTORE_FAILURES.labels(namespace=self.namespace, reason=reason).inc()
        self.new_failures += 1
        return False

    async def announce(self, obj: dict[str, Any]) -> None:
        """Events for this pass's restores: ``Restored``, ``RestoreFailed``."""

        async def event(type_: str, name: str, message: str) -> None:
            log = logger.warning if type_ == "Warning" else logger.info
            log("PinSet %s/%s: %s: %s", self.namespace, self.source.name, name, message)
            await self.ctx.api.post_event(obj, type_=type_, reason=name, message=message)

        if self.restored:
            sources_ = ", ".join(f"{n}: {c}" for n, c in sorted(self.by_backend.items()))
            message = f"restored {self.restored} pin(s), {self.bytes} bytes (from {sources_})"
            await event("Normal", "Restored", message)
        if self.new_failures:
            first = min(self.failures.values(), key=lambda f: f.cid)
            message = (
                f"{self.new_failures} lost pin(s) could not be restored, "
                f"e.g. {first.cid}: {first.reason}: {first.message}"
            )
            await event("Warning", reasons.RESTORE_FAILED.name, message)


def failures_fields(failures: Mapping[str, planner.Failure]) -> dict[str, Any]:
    """``restoreFailures`` (the first MAX_LISTED) and ``restoreRetries`` (all, compactly)."""
    kept = reporting.failures_status(failures)
    return {"restoreFailures": kept["failures"], "restoreRetries": kept["retries"]}
