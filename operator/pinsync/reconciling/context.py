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
import dataclasses
import time
from collections.abc import Callable, Hashable
from typing import Any

from pinsync import cids, conditions, ipfs, kube, metrics, settings
from pinsync.backends import base
from pinsync.wakeups import Echoes, Wakeups

Decide = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclasses.dataclass
class NodePins:
    """One node's recursive pins (identity -> pin name), and when they were read."""

    pins: dict[str, str]
    read_at: float


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

    def __post_init__(self) -> None:
        self.transfers = asyncio.Semaphore(self.settings.global_concurrency)

    def kubo(self, url: str) -> ipfs.Kubo:
        """One client (and connection pool) per Kubo API for the operator's lifetime."""
        if url not in self.kubos:
            self.kubos[url] = ipfs.Kubo(url)
        return self.kubos[url]

    async def node_pins(self, url: str, *, fresh: bool = False) -> dict[str, str]:
        """The node's recursive pins by identity, read at most once per ``node_pins_interval``
        (``fresh``: read now, e.g. for a restore request, which must see pins lost just now).

        Every PinSet and backend of the node shares the one dict; pins the operator adds are
        recorded in it (:meth:`pinned`), so they are seen before the next read.
        """
        lock = self._node_locks.setdefault(url, asyncio.Lock())
        async with lock:
            cached = self._node_pins.get(url)
            age = time.monotonic() - cached.read_at if cached else None
            if fresh or cached is None or age is None or age >= self.settings.node_pins_interval:
                listed = await self.kubo(url).pins()
                pins = {k: name for c, name in listed.items() if (k := cids.key(c)) is not None}
                cached = self._node_pins[url] = NodePins(pins, time.monotonic())
            return cached.pins

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
        if plural == kube.PINSETS and (fetches := self.fetches.pop((namespace, name), None)):
            await fetches.aclose()
        if plural == kube.STORAGEBACKENDS:
            self.reported.pop((namespace, name), None)
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
        self.started.clear()

    async def aclose(self) -> None:
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

        For fields only the object's own loop writes (conditions, counts, progress); the dirty
        state goes through :meth:`transition`.

        Returns the status as it now is, so callers can chain decisions on it.
        """
        meta, status = obj["metadata"], obj.get("status") or {}
        generation = meta.get("generation")
        desired = {
            "observedGeneration": generation,
            "conditions": conditions.merge(
                status.get("conditions"), updates, generation=generation
            ),
            **fields,
        }
        patch = conditions.changes(status, desired)
        if patch:
            written = await self.api.patch_status(plural, meta["namespace"], meta["name"], patch)
            if written is not None:
                key = (plural, meta["namespace"], meta["name"])
                self.echoes.record(key, written["metadata"].get("resourceVersion"))
        return {**status, **patch}
