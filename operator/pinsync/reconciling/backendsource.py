"""``spec.fromBackend``: the pins a StorageBackend holds as a PinSet's pins (leaving a service).

A user moving off a hosted service (Storacha with its writes switched off, a pinning service)
declares one PinSet whose pins are what that backend holds and whose targets are where they
should go. Its pins are then handled like explicit CIDs: pinned on the node -- restored from the
source backend first, which holds them all -- and replicated to the targets from there.

Listing a backend costs what it holds (a bucket of a million pins is two million objects), so
the listing is read at most once per the source backend's audit interval (``spec.audit.
interval``, default 1 h) or when its spec changes, not per pass; a PinSet pass uses the cached
one. A listing that differs from the last wakes the loops that read it, like a node's pins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Mapping
from typing import Any

from pinsync import kube, pinlists, reasons, selectors, syncing
from pinsync.backends import errors
from pinsync.reconciling.context import Context
from pinsync.reconciling.validation import client_for, validate

_versions = itertools.count(1)

DEFAULT_INTERVAL = 3600.0
"""Seconds between listings when the source backend sets no ``spec.audit.interval``."""


class SourceError(reasons.ReasonedError):
    """The source backend cannot be listed (absent, suspended, invalid, or its listing failed)."""


@dataclasses.dataclass(kw_only=True)
class BackendList:
    """The pins one backend held when listed."""

    keys: pinlists.Keys
    stamp: tuple[Any, ...]
    """(uid, generation) of the backend listed: a changed spec is listed again at once."""
    read_at: float
    version: int = dataclasses.field(default_factory=lambda: next(_versions))


def name_of(pinset: Mapping[str, Any]) -> str:
    return str(((pinset.get("spec") or {}).get("fromBackend") or {}).get("name") or "")


def source_id(pinset: Mapping[str, Any]) -> str:
    return f"backend:{pinset['metadata']['namespace']}/{name_of(pinset)}"


def needs_backend(pinset: Mapping[str, Any]) -> bool:
    return (pinset.get("spec") or {}).get("fromBackend") is not None


async def read(ctx: Context, pinset: Mapping[str, Any]) -> BackendList:
    """What the source backend holds, listed at most once per its audit interval."""
    namespace, name = pinset["metadata"]["namespace"], name_of(pinset)
    key = source_id(pinset)
    lock = ctx.source_locks.setdefault(key, asyncio.Lock())
    async with lock:
        obj = await ctx.api.get(kube.STORAGEBACKENDS, namespace, name)
        if obj is None:
            raise SourceError(
                f"fromBackend: no StorageBackend {name!r} in namespace {namespace}",
                reason=reasons.SOURCE_BACKEND_NOT_FOUND,
            )
        meta, spec = obj["metadata"], obj.get("spec") or {}
        stamp = (meta.get("uid"), meta.get("generation"))
        every = selectors.duration((spec.get("audit") or {}).get("interval"), DEFAULT_INTERVAL)
        cached: BackendList | None = ctx.sources.get(key)
        if cached is not None and cached.stamp == stamp:
            if time.monotonic() - cached.read_at < every:
                return cached
        verdict = await validate(ctx, obj)
        if not verdict.ok:
            why = next((c["message"] for c in verdict.conditions if c.get("message")), "")
            raise SourceError(
                f"fromBackend {name}: cannot be read: {why}",
                reason=reasons.SOURCE_BACKEND_UNUSABLE,
            )
        client = await client_for(ctx, obj, verdict)
        try:
            listing = await syncing.listing(client)
        except errors.BackendError as exc:
            raise SourceError(f"fromBackend {name}: {exc}", reason=exc.reason) from None
        found = BackendList(keys=listing.keys, stamp=stamp, read_at=time.monotonic())
        if cached is not None and cached.keys == found.keys:
            cached.stamp, cached.read_at = stamp, found.read_at
            return cached
        ctx.sources[key] = found
        if cached is not None:
            ctx.changed(key)
        return found


def watch(ctx: Context, pinset: Mapping[str, Any], key: tuple[str, str, str]) -> None:
    # A quick re-read after a change (the poller's ``fresh``) is for nodes whose pins come in
    # batches; a backend's listing is cached by its own interval whatever the poller asks.
    ctx.watch(source_id(pinset), key, lambda _fresh: read(ctx, pinset))
