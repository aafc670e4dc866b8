"""Wake-up signals for the per-object reconcile loops.

Each StorageBackend and PinSet has one long-lived loop (a kopf daemon), which serialises all work
on that object. Watch events of the object itself, of its Secret, and of related objects do not
do work themselves: they only wake the loop, which then re-reads the current state. Several
events before the loop wakes collapse into one reconcile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Hashable, Mapping
from typing import Any


class Wakeups:
    def __init__(self) -> None:
        self._events: dict[Hashable, asyncio.Event] = {}

    def _event(self, key: Hashable) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def wake(self, key: Hashable) -> None:
        self._event(key).set()

    async def sleep(self, key: Hashable, timeout: float) -> bool:
        """Sleep until woken or ``timeout`` seconds pass; True if woken.

        ``asyncio.timeout``, not ``wait_for``: on Python 3.11, ``wait_for`` returns normally when
        it is cancelled in the same loop iteration as the event is set, and the loop it sleeps
        in went on as an orphan of kopf -- a paused replica still syncing, a deleted object
        still reconciled.
        """
        event = self._event(key)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
        woken = event.is_set()
        event.clear()
        return woken

    def forget(self, key: Hashable) -> None:
        self._events.pop(key, None)


class Echoes:
    """Remembers the resourceVersion of each status write, to recognise its own watch event.

    Without this every status write would wake the loop that made it for one more (empty)
    reconcile -- for a PinSet of 20,000 CIDs, seconds of work for nothing.
    """

    KEPT = 16
    """Recent writes remembered per object: a pass writes several times in a second, and the
    watch event of one arrives after the next was made (remembering only the last woke the
    loop for each of those: passes in bursts, an event pair each)."""

    def __init__(self) -> None:
        self._written: dict[Hashable, collections.deque[str]] = {}
        self._seen: dict[Hashable, tuple[Any, ...]] = {}
        """Per object, what else than status its last event showed (spec generation, labels,
        annotations, deletion)."""

    def record(self, key: Hashable, resource_version: str | None) -> None:
        if resource_version:
            kept = self._written.setdefault(key, collections.deque(maxlen=self.KEPT))
            kept.append(resource_version)

    def is_own_write(self, key: Hashable, meta: Mapping[str, Any]) -> bool:
        """Whether the event is of a status write of this operator's: recognised by its
        resourceVersion, or -- when the event is handled before the write's answer was
        recorded -- by a change of nothing but status (only the operator writes status)."""
        seen = _fingerprint(meta)
        status_only = self._seen.get(key) == seen
        self._seen[key] = seen
        return status_only or meta.get("resourceVersion") in self._written.get(key, ())


def _fingerprint(meta: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        meta.get("generation"),
        sorted((meta.get("labels") or {}).items()),
        sorted((meta.get("annotations") or {}).items()),
        meta.get("deletionTimestamp"),
    )
