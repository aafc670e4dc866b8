"""Pinning a PinSet's CIDs on its node: local content at once, the rest fetched in the background.

A pass pins every CID whose blocks are all on the node, ``PIN_BATCH`` to one offline
``pin/add``, within ``PIN_PASS_BUDGET``; a batch that Kubo refuses is sorted with offline
``dag/stat`` (which fails at once for a block missing anywhere in the DAG, where an offline
``pin/add`` may wait for a missing child), and the complete DAGs of it pinned in one request.
CIDs never tried come before retries, so pins that keep failing cannot starve the others.

A CID the node lacks is restored from a backend when allowed (inline: a backend answers now),
else fetched from the network by ``pin/add``, which may wait up to pinTimeout. Those fetches run
in a small pool per PinSet (:class:`Fetches`, ``FETCH_CONCURRENCY`` at a time) outside the pass:
one unfetchable CID costs one slot for pinTimeout, not the progress of the other 20,000. Each
finished fetch wakes the PinSet, whose next pass collects its result into status; the pool lives
in the operator's memory only, so after a restart the CIDs are simply tried again.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from pinsync import conditions, ipfs, kube, planner, selectors
from pinsync.reconciling import restores, sources
from pinsync.reconciling.context import Context, NodePins

PIN_BATCH = 32
"""CIDs pinned in one offline ``pin/add``."""
PIN_CONCURRENCY = 8
"""Offline checks and restores at a time within a pass."""
PIN_PASS_BUDGET = 5.0
"""Seconds after which a pass starts no further batch."""
FETCH_CONCURRENCY = 16
"""Network fetches (``pin/add`` waiting for bitswap) at a time, per PinSet."""
WAKE_DELAY = 2.0
"""Seconds a finished fetch waits for others before it wakes the PinSet: a pass over 20,000
CIDs per fetch (16 a second with a 1 s pinTimeout) would keep a core busy."""


@dataclasses.dataclass(frozen=True)
class Fetch:
    key: str
    """The pin's identity."""
    spelled: str
    previous: planner.Failure | None


@dataclasses.dataclass
class Fetches:
    """One PinSet's network fetches: queued, running, and finished but not yet collected."""

    kubo: ipfs.Kubo
    name: str
    """The pin name (``pinsync/<namespace>/<pinset>``)."""
    timeout: float
    wake: Callable[[], None]
    queued: collections.deque[Fetch] = dataclasses.field(default_factory=collections.deque)
    waiting: set[str] = dataclasses.field(default_factory=set)
    """The identities in ``queued``."""
    running: set[str] = dataclasses.field(default_factory=set)
    finished: dict[str, planner.Failure | None] = dataclasses.field(default_factory=dict)
    """Identity -> the failure, or None when pinned."""
    workers: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)
    digest: str = ""
    """The PinSet version the queue was built for (:meth:`retain`)."""
    _wake: asyncio.TimerHandle | None = None

    def busy(self, key: str) -> bool:
        return key in self.running or key in self.waiting

    def add(self, fetch: Fetch) -> None:
        self.queued.append(fetch)
        self.waiting.add(fetch.key)
        if sum(not t.done() for t in self.workers) < FETCH_CONCURRENCY:
            task = asyncio.create_task(self._work(), name=f"fetch {self.name}")
            self.workers.add(task)
            task.add_done_callback(self.workers.discard)

    async def _work(self) -> None:
        while self.queued:
            fetch = self.queued.popleft()
            self.waiting.discard(fetch.key)
            self.running.add(fetch.key)
            try:
                await self.kubo.pin_add(fetch.spelled, name=self.name, timeout=self.timeout)
            except ipfs.IpfsError as exc:
                self.finished[fetch.key] = planner.failed(
                    fetch.previous, fetch.spelled, exc.reason, str(exc), now=conditions.utcnow()
                )
            else:
                self.finished[fetch.key] = None
            finally:
                self.running.discard(fetch.key)
            if self._wake is None:
                self._wake = asyncio.get_running_loop().call_later(WAKE_DELAY, self._woken)

    def _woken(self) -> None:
        self._wake = None
        self.wake()

    def collect(self, known: dict[str, planner.Failure], node_pins: NodePins) -> int:
        """Move finished fetches into ``known`` and ``node_pins``; how many were pinned."""
        pinned = []
        for key, failure in self.finished.items():
            if failure is None:
                known.pop(key, None)
                pinned.append(key)
            else:
                known[key] = failure
        self.finished.clear()
        node_pins.record(pinned, self.name)
        return len(pinned)

    def retain(self, source: sources.Source) -> None:
        """Drop queued fetches of CIDs a new version of the PinSet no longer lists (once per
        version: a pass of an unchanged 20,000-CID PinSet must not rebuild the queue)."""
        if source.digest == self.digest:
            return
        self.digest = source.digest
        if self.queued:
            keys = source.listed
            self.queued = collections.deque(f for f in self.queued if f.key in keys)
            self.waiting = {f.key for f in self.queued}

    async def aclose(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
        for task in list(self.workers):
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)


async def fetches_for(ctx: Context, obj: dict[str, Any], source: sources.Source) -> Fetches:
    """The PinSet's fetch pool, kept in the context (rebuilt when its node or timeout change)."""
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    spec_ipfs = (obj.get("spec") or {}).get("ipfs") or {}
    timeout = selectors.duration(spec_ipfs.get("pinTimeout"), 120.0)
    kubo = ctx.kubo(source.api_url)
    current = ctx.fetches.get((namespace, name))
    if isinstance(current, Fetches) and current.kubo is kubo and current.timeout == timeout:
        return current
    wake_key = (kube.PINSETS, namespace, name)
    fetches = Fetches(
        kubo=kubo,
        name=f"{sources.OWN_PIN_PREFIX}{namespace}/{name}",
        timeout=timeout,
        wake=lambda: ctx.wakeups.wake(wake_key),
    )
    if isinstance(current, Fetches):
        fetches.finished = current.finished  # its results still count; its queue is redone
        await current.aclose()
    ctx.fetches[(namespace, name)] = fetches
    return fetches


def ordered(
    source: sources.Source,
    node_pins: NodePins,
    known: dict[str, planner.Failure],
    fetches: Fetches,
) -> list[str]:
    """The CIDs to try now: never tried first (in the PinSet's order), then retries by due time."""
    now = conditions.utcnow()
    fresh, retries = [], []
    for key in source.listed:
        if key in node_pins or fetches.busy(key):
            continue
        failure = known.get(key)
        if failure is None:
            fresh.append(key)
        elif (failure.next_retry_at or now) <= now:
            retries.append(key)
    retries.sort(key=lambda k: known[k].next_retry_at or now)
    return fresh + retries


async def complete(kubo: ipfs.Kubo, spelled: Sequence[str]) -> list[bool]:
    """Whether each DAG is wholly on the node (offline ``dag/stat``)."""
    limit = asyncio.Semaphore(PIN_CONCURRENCY)

    async def check(cid: str) -> bool:
        async with limit:
            try:
                await kubo.dag_stat(cid, offline=True)
            except ipfs.IpfsError:
                return False
            return True

    return list(await asyncio.gather(*(check(c) for c in spelled)))


async def pin_missing(
    ctx: Context,
    obj: dict[str, Any],
    source: sources.Source,
    node_pins: NodePins,
    known: dict[str, planner.Failure],
    restorer: restores.Restorer | None = None,
) -> tuple[int, bool]:
    """Pin what the node has, restore or queue the rest; (pinned now, more to do this way).

    ``known`` (failures by identity, read from status) and ``node_pins`` are updated in place
    with this pass's results and the background fetches finished since the last pass.
    """
    fetches = await fetches_for(ctx, obj, source)
    fetches.retain(source)
    pinned = fetches.collect(known, node_pins)
    kubo, name = fetches.kubo, fetches.name
    todo = ordered(source, node_pins, known, fetches)
    limit = asyncio.Semaphore(PIN_CONCURRENCY)

    def done(keys: Sequence[str]) -> None:
        nonlocal pinned
        for key in keys:
            known.pop(key, None)
        node_pins.record(keys, name)
        pinned += len(keys)

    async def elsewhere(key: str) -> None:
        """Restore ``key`` from a backend if allowed, else queue it for the network."""
        if restorer is not None and restorer.wants(key):
            async with limit:
                if await restorer.restore(kubo, key, name=name):
                    return done([key])
        fetches.add(Fetch(key, source.spelling(key), known.get(key)))

    deadline, start = time.monotonic() + PIN_PASS_BUDGET, 0
    while start < len(todo) and time.monotonic() < deadline:
        batch, start = todo[start : start + PIN_BATCH], start + PIN_BATCH
        spelled = [source.spelling(k) for k in batch]
        if not any(k in known for k in batch):  # a retry may hang an offline pin/add
            try:
                await kubo.pin_local(spelled, name=name)
            except ipfs.IpfsError:
                pass
            else:
                done(batch)
                continue
        local = await complete(kubo, spelled)
        here = [k for k, ok in zip(batch, local, strict=True) if ok]
        lacking = [k for k, ok in zip(batch, local, strict=True) if not ok]
        if here:
            try:
                await kubo.pin_local([source.spelling(k) for k in here], name=name)
            except ipfs.IpfsError:
                lacking += here  # changed under us: pin/add reports it
            else:
                done(here)
        await asyncio.gather(*(elsewhere(k) for k in lacking))
    return pinned, start < len(todo)
