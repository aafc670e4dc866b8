"""What every reconciler needs, built once at operator start-up."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from pinsync import conditions, ipfs, kube, planner, settings
from pinsync.wakeups import Echoes, Wakeups

Decide = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclasses.dataclass(kw_only=True)
class Context:
    api: kube.Api
    settings: settings.Settings
    wakeups: Wakeups = dataclasses.field(default_factory=Wakeups)
    echoes: Echoes = dataclasses.field(default_factory=Echoes)
    kubos: dict[str, ipfs.Kubo] = dataclasses.field(default_factory=dict)
    transfers: asyncio.Semaphore = dataclasses.field(init=False)
    pin_failures: dict[tuple[str, str], dict[str, planner.Failure]] = dataclasses.field(
        default_factory=dict
    )
    """Per PinSet, CIDs the node could not pin, with their backoff (the first 50 are in status)."""
    started: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    """Backends seen since start-up (for ``mark_dirty_on_startup``)."""

    def __post_init__(self) -> None:
        self.transfers = asyncio.Semaphore(self.settings.global_concurrency)

    def kubo(self, url: str) -> ipfs.Kubo:
        """One client (and connection pool) per Kubo API for the operator's lifetime."""
        if url not in self.kubos:
            self.kubos[url] = ipfs.Kubo(url)
        return self.kubos[url]

    async def aclose(self) -> None:
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
