"""What every reconciler needs, built once at operator start-up.

Durable state lives in the objects' status and is read back on every pass; what is kept here is
only a cache of things that are expensive to rebuild and cheap to invalidate: Kubo clients and
pin lists, parsed PinSet CIDs (per generation), backend clients (per configuration).

With two replicas (:mod:`pinsync.peering`) a standby keeps its context while paused, and the
other replica changes the world meanwhile; what it cached is dropped when it pauses, not trusted
when it resumes: per-object caches when each loop ends (:meth:`Context.forget`), the shared ones
in :meth:`Context.paused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Container, Hashable, Iterable, Mapping
from typing import Any

import numpy as np

from pinsync import cids, conditions, ipfs, kube, metrics, pinlists, reasons, settings
from pinsync.backends import base
from pinsync.wakeups import Echoes, Wakeups

logger = logging.getLogger(__name__)

QUICK_POLL = 2.0
"""Seconds before a pin source that just changed is read again."""

Decide = Callable[[dict[str, Any]], dict[str, Any] | None]


_versions = itertools.count(1)

OWN_PIN_PREFIX = "pinsync/"
"""Pins the operator makes on Kubo are named ``pinsync/<namespace>/<pinset>``."""


class NodePins:
    """One node's recursive pins: the last listing read from Kubo, plus the pins the operator
    made since (so they are seen before the next read).

    ``version`` changes whenever the pins do, and only then: everything derived from them (a
    ``fromNode`` PinSet's selection, its digest, a backend's desired set) is cached by version,
    so a pass over an unchanged node of a million pins parses and plans nothing.
    """

    def __init__(self, listing: ipfs.PinListing, read_at: float) -> None:
        self.listing, self.read_at = listing, read_at
        self.added: dict[str, str] = {}
        """Identity -> name, pinned by the operator since the listing was read."""
        self.version = next(_versions)
        self._selected: dict[tuple[str, str], tuple[int, pinlists.Keys]] = {}

    @classmethod
    def of(cls, pins: Mapping[str, str]) -> NodePins:
        """From CID -> name (as Kubo lists them): for tests and tools."""
        builder = pinlists.Builder()
        for cid, name in pins.items():
            if (identity := cids.key(cid)) is not None:
                builder.add(identity, name)
        keys, names = builder.build_with()
        return cls(ipfs.PinListing(digest=b"", keys=keys, names=names), time.monotonic())

    def __contains__(self, key: object) -> bool:
        return key in self.added or key in self.listing.keys

    def __len__(self) -> int:
        return len(self.listing.keys) + sum(k not in self.listing.keys for k in self.added)

    def record(self, keys: Iterable[str], name: str) -> None:
        """The operator pinned ``keys`` under ``name``."""
        before = len(self.added)
        self.added.update(dict.fromkeys(keys, name))
        if len(self.added) != before:
            self.version = next(_versions)

    def select(self, prefix: str, namespace: str) -> pinlists.Keys:
        """The pins a ``fromNode`` PinSet in ``namespace`` takes: those whose name starts with
        ``prefix``; without one, all but the pins pinsync made for other namespaces."""
        cached = self._selected.get((prefix, namespace))
        if cached is not None and cached[0] == self.version:
            return cached[1]

        def taken(names: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            if prefix:
                return pinlists.starting_with(names, prefix)
            own = f"{OWN_PIN_PREFIX}{namespace}/"
            theirs = pinlists.starting_with(names, OWN_PIN_PREFIX)
            mine: np.ndarray[Any, Any] = ~theirs | pinlists.starting_with(names, own)
            return mine

        selected = self.listing.keys.select(taken(self.listing.names))
        if self.added:
            added = list(self.added)
            names = np.array([self.added[k].encode() for k in added], dtype=bytes)
            extra = [k for k, keep in zip(added, taken(names).tolist(), strict=True) if keep]
            selected = selected.union(pinlists.Keys.of(extra))
        self._selected[(prefix, namespace)] = (self.version, selected)
        return selected


class OnAnyNode:
    """Membership in the pins of any of several nodes."""

    def __init__(self, nodes: Iterable[Container[str]]) -> None:
        self.nodes = list(nodes)

    def __contains__(self, key: object) -> bool:
        return any(key in node for node in self.nodes)


@dataclasses.dataclass(kw_only=True)
class Context:
    api: kube.Api
    settings: settings.Settings
    wakeups: Wakeups = dataclasses.field(default_factory=Wakeups)
    echoes: Echoes = dataclasses.field(default_factory=Echoes)
    kubos: dict[str, ipfs.Kubo] = dataclasses.field(default_factory=dict)
    transfers: asyncio.Semaphore = dataclasses.field(init=False)
    started: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    """Backends seen since start-up (for ``mark_dirty_on_startup``)."""
    parsed: dict[Hashable, tuple[Hashable, Any]] = dataclasses.field(default_factory=dict)
    """Per PinSet: (uid, generation) -> its parsed explicit CIDs."""
    reported: dict[Hashable, str] = dataclasses.field(default_factory=dict)
    """Per backend: a digest of what PinSets report about it (to wake them only on change)."""
    backends: dict[Hashable, tuple[Hashable, base.Backend]] = dataclasses.field(
        default_factory=dict
    )
    fetches: dict[Hashable, Any] = dataclasses.field(default_factory=dict)
    """Per PinSet: its pool of network fetches (:class:`pinsync.reconciling.pinning.Fetches`)."""
    _node_pins: dict[str, NodePins] = dataclasses.field(default_factory=dict)
    _node_locks: dict[str, asyncio.Lock] = dataclasses.field(default_factory=dict)
    _watchers: dict[str, set[tuple[str, str, str]]] = dataclasses.field(default_factory=dict)
    _pollers: dict[str, asyncio.Task[None]] = dataclasses.field(default_factory=dict)
    _changes: dict[str, int] = dataclasses.field(default_factory=dict)
    sources: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Other pin sources by identity (:mod:`pinsync.reconciling.clustersource`)."""
    source_locks: dict[str, asyncio.Lock] = dataclasses.field(default_factory=dict)
    resolved: dict[Hashable, tuple[Hashable, Any]] = dataclasses.field(default_factory=dict)
    """Per PinSet: (uid, generation, node version) -> its resolved source."""
    synced: dict[Hashable, tuple[int, pinlists.Keys]] = dataclasses.field(default_factory=dict)
    """Per backend: the desired pins its last sync found all present, and the token it cleared
    (or the token of a mark that changed nothing but its sources: an incremental sync)."""

    def __post_init__(self) -> None:
        self.transfers = asyncio.Semaphore(self.settings.global_concurrency)

    def kubo(self, url: str) -> ipfs.Kubo:
        """One client (and connection pool) per Kubo API for the operator's lifetime."""
        if url not in self.kubos:
            self.kubos[url] = ipfs.Kubo(url)
        return self.kubos[url]

    async def node_pins(self, url: str, *, fresh: bool = False) -> NodePins:
        """The node's recursive pins, read at most once per ``node_pins_interval`` (``fresh``:
        read now, e.g. for a restore request, which must see pins lost just now).

        Every PinSet and backend of the node shares one :class:`NodePins`. A re-read first
        compares a digest of Kubo's answer with the last one's and parses only if it differs;
        when the pins changed, the loops watching the node (:meth:`watch_node`) are woken.
        """
        lock = self._node_locks.setdefault(url, asyncio.Lock())
        async with lock:
            cached = self._node_pins.get(url)
            age = time.monotonic() - cached.read_at if cached else None
            if not fresh and cached is not None and age is not None:
                if age < self.settings.node_pins_interval:
                    return cached
            kubo = self.kubo(url)
            if cached is not None and not cached.added:
                if await kubo.pins_digest() == cached.listing.digest:
                    cached.read_at = time.monotonic()
                    return cached
            before = set(cached.added) if cached is not None else set()
            listing = await kubo.pin_listing()
            if cached is not None and listing.digest == cached.listing.digest and not cached.added:
                cached.read_at = time.monotonic()
                return cached
            # The listing replaces the overlay of pins the operator made before it was asked for:
            # the user may have removed them since (unpinned again, they are lost, not present).
            pins = self._node_pins[url] = NodePins(listing, time.monotonic())
            if cached is not None:
                later = {k: n for k, n in cached.added.items() if k not in before}
                for key, name in later.items():
                    pins.record([key], name)
                gone = sum(k not in listing.keys for k in before)
                changed = (
                    gone
                    + len(listing.keys.minus(cached.listing.keys))
                    + len(cached.listing.keys.minus(listing.keys))
                )
                logger.info(
                    "node %s: %d pins, %d changed", ipfs.redact_url(url), len(pins), changed
                )
                self.changed(url)
            return pins

    def watch_node(self, url: str, key: tuple[str, str, str]) -> None:
        """Wake loop ``key`` whenever the node's pins change."""
        self.watch(url, key, lambda fresh: self.node_pins(url, fresh=fresh))

    def watch(
        self,
        source: str,
        key: tuple[str, str, str],
        read: Callable[[bool], Awaitable[object]],
    ) -> None:
        """Wake loop ``key`` whenever ``source`` (a node, a cluster) changes: while anyone
        watches it, ``read`` re-reads it every ``node_pins_interval`` and calls
        :meth:`changed` when what it read differs."""
        self._watchers.setdefault(source, set()).add(key)
        poller = self._pollers.get(source)
        if poller is None or poller.done():
            self._pollers[source] = asyncio.create_task(
                self._poll(source, read), name=f"pins {source}"
            )

    def changed(self, source: str) -> None:
        self._changes[source] = self._changes.get(source, 0) + 1
        for key in self._watchers.get(source, ()):
            self.wakeups.wake(key)

    async def _poll(self, source: str, read: Callable[[bool], Awaitable[object]]) -> None:
        """Re-read ``source`` at the interval; right after a change, again within QUICK_POLL
        (pins come in batches: a read in the middle of one sees only its start)."""
        quick = False
        while self._watchers.get(source):
            await asyncio.sleep(QUICK_POLL if quick else self.settings.node_pins_interval)
            before = self._changes.get(source, 0)
            try:
                await read(quick)
            except reasons.ReasonedError as exc:  # the loops reading it report it
                logger.debug("pins of %s: %s", source, exc)
            quick = self._changes.get(source, 0) != before

    def unwatch(self, key: tuple[str, str, str]) -> None:
        for watchers in self._watchers.values():
            watchers.discard(key)

    async def _stop_polling(self) -> None:
        pollers = list(self._pollers.values())
        self._pollers.clear()
        for task in pollers:
            task.cancel()
        for task in pollers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def backend(
        self, key: Hashable, config: Hashable, build: Callable[[], base.Backend]
    ) -> tuple[base.Backend, base.Backend | None]:
        """The backend client for ``key``, kept as long as its ``config`` stays the same.

        Returns (client, replaced client to close, if the configuration changed).
        """
        cached = self.backends.get(key)
        if cached is not None and cached[0] == config:
            return cached[1], None
        client = build()
        self.backends[key] = (config, client)
        return client, cached[1] if cached else None

    async def forget(self, key: tuple[str, str, str]) -> None:
        """Drop what is cached for an object whose loop ended (deleted, or shutting down)."""
        plural, namespace, name = key
        self.parsed.pop((namespace, name), None)
        self.resolved.pop((namespace, name), None)
        self.unwatch(key)
        if plural == kube.PINSETS and (fetches := self.fetches.pop((namespace, name), None)):
            await fetches.aclose()
        if plural == kube.STORAGEBACKENDS:
            self.reported.pop((namespace, name), None)
            self.synced.pop((namespace, name), None)
            # A gauge outliving its loop would be a standby (or a deleted backend) still
            # reporting the last values it saw, summed with what the working replica reports.
            metrics.forget_backend(namespace, name)
            cached = self.backends.pop((namespace, name), None)
            if cached is not None:
                await cached[1].aclose()

    def paused(self) -> None:
        """This replica paused for another (kopf peering); its loops have ended or are ending.

        The other replica pins, unpins and syncs meanwhile, so the node pin lists are dropped
        rather than trusted for up to ``node_pins_interval`` after resuming; and ``started`` is
        emptied, so that ``mark_dirty_on_startup`` applies whenever a replica takes over, the
        moment its own view of the backends starts.
        """
        self._node_pins.clear()
        self.sources.clear()
        self.started.clear()
        self.synced.clear()
        for task in self._pollers.values():
            task.cancel()
        self._pollers.clear()

    async def aclose(self) -> None:
        await self._stop_polling()
        for fetches in self.fetches.values():
            await fetches.aclose()
        for _, client in self.backends.values():
            await client.aclose()
        for kubo in self.kubos.values():
            await kubo.aclose()

    async def transition(self, plural: str, obj: dict[str, Any], decide: Decide) -> dict[str, Any]:
        """Read-modify-write of status under a resourceVersion precondition.

        ``decide`` maps the current object to the status fields to write (or None for no
        write); on a conflict the object is re-read and ``decide`` asked again, so concurrent
        writers (a watch handler marking dirty while a sync finishes) never overwrite each other.
        """
        meta = obj["metadata"]
        while True:
            fields = decide(obj)
            if not fields:
                return obj
            try:
                written = await self.api.patch_status(
                    plural,
                    meta["namespace"],
                    meta["name"],
                    fields,
                    resource_version=obj["metadata"]["resourceVersion"],
                )
            except kube.Conflict:
                fresh = await self.api.get(plural, meta["namespace"], meta["name"])
                if fresh is None:
                    return obj
                obj = fresh
                continue
            if written is None:
                return obj
            self.echoes.record(
                (plural, meta["namespace"], meta["name"]),
                written["metadata"].get("resourceVersion"),
            )
            return written

    async def write_status(
        self,
        plural: str,
        obj: dict[str, Any],
        updates: list[conditions.Condition],
        **fields: Any,
    ) -> dict[str, Any]:
        """Merge condition updates and fields into the status, writing only what changed.

        Unguarded (a plain merge patch), so only for objects nobody else writes: PinSets. A
        StorageBackend's status, whose ``Synced`` condition a mark may change at any moment,
        is written through :meth:`transition` (:func:`pinsync.reconciling.marking.write`).

        Returns the status as it now is, so callers can chain decisions on it.
        """
        assert plural != kube.STORAGEBACKENDS, "StorageBackend status goes through transition"
        meta, status = obj["metadata"], obj.get("status") or {}
        patch = conditions.patch(status, updates, generation=meta.get("generation"), fields=fields)
        if patch:
            written = await self.api.patch_status(plural, meta["namespace"], meta["name"], patch)
            if written is not None:
                key = (plural, meta["namespace"], meta["name"])
                self.echoes.record(key, written["metadata"].get("resourceVersion"))
        return {**status, **patch}
