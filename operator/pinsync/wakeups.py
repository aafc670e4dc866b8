"""Wake-up signals for the per-object reconcile loops.

Each StorageBackend and PinSet has one long-lived loop (a kopf daemon), which serialises all work
on that object. Watch events of the object itself, of its Secret, and of related objects do not
do work themselves: they only wake the loop, which then re-reads the current state. Several
events before the loop wakes collapse into one reconcile.
"""

from __future__ import annotations

import asyncio
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

    def __init__(self) -> None:
        self._written: dict[Hashable, str] = {}

    def record(self, key: Hashable, resource_version: str | None) -> None:
        if resource_version:
            self._written[key] = resource_version

    def is_own_write(self, key: Hashable, meta: Mapping[str, Any]) -> bool:
        return self._written.get(key) == meta.get("resourceVersion")
