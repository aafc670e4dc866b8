"""One sync pass of one backend: transfer missing pins as CARs from Kubo, verify, report.

The pass is given everything it needs (backend, Kubo client, desired pins, failure history) and
returns what happened; it never touches Kubernetes. Status writes happen through the ``report``
callback, which the reconciler throttles, so progress is visible while a long pass runs.

Content flows ``Kubo dag/export -> CarChecker -> backend.put_pin`` as a stream: nothing holds a
whole CAR in memory (S3 multipart holds one part), and a CAR that Kubo truncated mid-stream
fails the checker, which aborts the upload before anything becomes visible.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Container,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

import numpy as np

from pinsync import car, cids, ipfs, pinlists, planner, reasons
from pinsync.backends import base, errors

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass(kw_only=True)
class Progress:
    """Counters of a running pass; the reconciler copies them into status."""

    desired: int = 0
    present: int = 0
    failed: int = 0
    uploaded: int = 0
    bytes: int = 0
    verified: int = 0
    pruned: int = 0
    phase: str = "Planning"
    failures: dict[str, planner.Failure] = dataclasses.field(default_factory=dict)
    """By pin identity; the ones carried over from earlier passes too."""
    pruning: bool = False
    """The pass deletes present pins no PinSet wants (``deletionPolicy: Prune``)."""
    prune_failures: dict[str, planner.Failure] = dataclasses.field(default_factory=dict)
    """Unwanted pins whose deletion failed (reason ``PruneFailed``), by identity, carried
    over like ``failures``: retried with the same backoff."""
    new_failures: dict[str, int] = dataclasses.field(default_factory=dict)
    """Failed attempts made in this pass, by reason (for metrics)."""
    present_cids: pinlists.Keys = dataclasses.field(default_factory=pinlists.Keys.empty)
    """Identities of desired pins present on the backend (as of the end of the pass)."""
    backend_errors: int = 0
    """Transfers the storage itself refused or dropped (not the content stream)."""
    stopped: bool = False
    """The pass stopped starting transfers after STOP_AFTER_STORAGE_ERRORS storage errors in a
    row, or at the first refusal of every write; the pins it did not try are still missing (and
    not failures)."""
    refused: errors.WritesDisabled | None = None
    """The service refuses every write (:class:`errors.WritesDisabled`): the first refusal."""

    @property
    def missing(self) -> int:
        return max(0, self.desired - self.present)


Report = Callable[[Progress], Awaitable[None]]

STOP_AFTER_STORAGE_ERRORS = 16
"""Storage errors in a row after which a pass stops: with the server gone, the other 20,000
pins would each wait out a connect timeout and be marked failed, for nothing."""


def error_of(exc: BaseException) -> tuple[str, str]:
    """(reason, message) of a per-pin failure; our error vocabulary carries no secrets."""
    if isinstance(exc, reasons.ReasonedError):
        return exc.reason, str(exc)
    if isinstance(exc, car.CarError):
        return reasons.CAR_INVALID.name, str(exc)
    return reasons.INTERNAL_ERROR.name, type(exc).__name__


@dataclasses.dataclass(kw_only=True)
class Outgoing:
    """One pin of a batch: its CAR stream, opened when the backend reads it, and what it sent."""

    meta: base.PinMeta
    kubo: ipfs.Kubo
    pinned_on_node: bool
    progress: Progress
    sent: int | None = None
    """Bytes of the whole CAR, once the backend has read it to the end."""

    async def content(self) -> AsyncIterator[bytes]:
        expected_blocks = None
        if not self.pinned_on_node:
            # A recursive pin guarantees every block is local; anything else may be incomplete,
            # and a CAR cut at a block boundary is only detectable by counting blocks.
            expected_blocks, _ = await self.kubo.dag_stat(self.meta.cid, offline=True)
        checker = car.CarChecker(
            self.kubo.export(self.meta.cid, offline=True),
            root=self.meta.cid,
            expected_blocks=expected_blocks,
        )
        async for chunk in checker:
            self.progress.bytes += len(chunk)
            yield chunk
        self.sent = checker.size

    async def verify(self, backend: base.Backend, stored: base.PinInfo) -> base.PinInfo:
        verified = stored if stored.verified else await backend.verify_pin(self.meta.cid)
        if verified.size != self.sent:
            raise errors.BackendError(
                f"{self.meta.cid}: stored {verified.size} bytes, sent {self.sent}",
                reason=reasons.VERIFY_FAILED,
            )
        return verified


async def transfer(
    backend: base.Backend, batch: Sequence[Outgoing]
) -> list[base.PinInfo | Exception]:
    """Stream a batch of pins into the backend (``put_pins``) and verify what landed; per pin,
    what was verified or the error."""
    if not backend.stores_content:
        # Pinning services (IPFS Cluster) fetch by CID themselves: no export, nothing to stream.
        uploads = [base.Upload(meta=out.meta, content=_nothing) for out in batch]
        return await backend.put_pins(uploads)
    stored = await backend.put_pins(
        [base.Upload(meta=out.meta, content=out.content) for out in batch]
    )
    results: list[base.PinInfo | Exception] = []
    for out, result in zip(batch, stored, strict=True):
        if not isinstance(result, Exception):
            try:
                result = await out.verify(backend, result)
            except Exception as exc:
                result = exc
        results.append(result)
    return results


@dataclasses.dataclass(frozen=True)
class Wanted:
    """The desired pins of a pass, and per pin (asked only for the pins it transfers) the
    PinSets that want it and the spelling a new object is named by."""

    keys: pinlists.Keys
    pinsets_of: Callable[[str], tuple[str, ...]]
    spelling: Callable[[str], str]

    @classmethod
    def of(cls, desired: Mapping[str, tuple[str, ...]], names: Mapping[str, str]) -> Wanted:
        return cls(pinlists.Keys.of(desired), desired.__getitem__, lambda k: names.get(k, k))


@dataclasses.dataclass(kw_only=True)
class Listing:
    """What a backend holds, by identity."""

    keys: pinlists.Keys
    renamed: dict[str, str] = dataclasses.field(default_factory=dict)
    """Identity -> the name the backend holds it under, where that is another spelling."""
    sizes: np.ndarray[Any, Any] | None = None
    """Each key's stored size as the listing said it (bytes of decimal digits, empty where it
    said none), aligned with ``keys``; only when asked for: a full sync verifies from it. A
    million ``PinInfo`` objects would cost ~300 MiB."""

    def name_of(self, key: str) -> str:
        return self.renamed.get(key, key)

    def listed(self, key: str) -> base.PinInfo | None:
        """What the listing said of ``key`` (a full listing), else None."""
        at = self.keys.index(key) if self.sizes is not None else None
        if at is None or self.sizes is None:
            return None
        size = self.sizes[at]
        return base.PinInfo(cid=self.name_of(key), size=int(size) if size else None)


async def listing(backend: base.Backend, *, detailed: bool = False) -> Listing:
    """The backend's listing, kept compactly (strings only for pins stored under another
    spelling, and the listing's details only when asked for)."""
    builder = pinlists.Builder()
    renamed: dict[str, str] = {}
    async for info in backend.list_pins():
        identity = cids.key(info.cid)
        if identity is None:
            continue
        if detailed:
            builder.add(identity, "" if info.size is None else str(info.size))
        else:
            builder.add(identity)
        if identity != info.cid:
            renamed.setdefault(identity, info.cid)
    if not detailed:
        return Listing(keys=builder.build(), renamed=renamed)
    keys, sizes = builder.build_with()
    return Listing(keys=keys, renamed=renamed, sizes=sizes)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover  (makes this an async generator)


async def each(items: Iterable[T], work: Callable[[T], Awaitable[None]], *, workers: int) -> None:
    """``work`` on every item, ``workers`` at a time, pulling from one iterator: a coroutine per
    item (what ``gather`` over 100,000 pins made) costs a kilobyte or two of memory each."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await work(item)

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))


Settle = Callable[[str, base.PinInfo | Exception | None], None]
"""Per pin, how its transfer ended: what was stored and verified, the error, or None when the
pin was found already there, whole (not written again)."""


@dataclasses.dataclass(kw_only=True)
class Move:
    """The transfer step of a pass: the pins to transfer and what each needs.

    Run in-process (:func:`in_process`) or spread over worker Pods
    (:mod:`pinsync.reconciling.distributed`); either way every pin is settled exactly once,
    unless the step stopped before trying it (it is then still missing, and not a failure).
    """

    backend: base.Backend
    pins: Sequence[str]
    meta_of: Callable[[str], base.PinMeta]
    kubo_for: Callable[[str], ipfs.Kubo]
    node_pins: Container[str]
    concurrency: int
    global_limit: asyncio.Semaphore
    progress: Progress
    settle: Settle
    report: Report
    check_first: bool = False
    """Look for each pin on the backend before writing it (work taken over from another
    worker, which may have written some): a pin already there is not written again."""
    still_mine: Callable[[], bool] = lambda: True
    """False once the work is no longer this process's (a lost claim): start nothing more."""


Mover = Callable[[Move], Awaitable[None]]


async def in_process(move: Move) -> None:
    """Transfer ``move.pins`` in batches, ``concurrency`` batches at a time, in this process."""
    backend, progress = move.backend, move.progress
    streak = 0  # storage errors in a row

    async def transfer_batch(batch: list[str]) -> None:
        nonlocal streak
        async with move.global_limit:
            if progress.stopped or not move.still_mine():
                return  # left for the next pass: untried, not failed
            if move.check_first:
                batch = await _absent(backend, batch, move.meta_of, move.settle)
            outgoing = [
                Outgoing(
                    meta=move.meta_of(cid),
                    kubo=move.kubo_for(cid),
                    pinned_on_node=cid in move.node_pins,
                    progress=progress,
                )
                for cid in batch
            ]
            results = await transfer(backend, outgoing)
        for cid, out, result in zip(batch, outgoing, results, strict=True):
            if isinstance(result, Exception):
                reason, message = error_of(result)
                logger.warning("pin %s failed: %s: %s", out.meta.cid, reason, message)
                storage = isinstance(result, errors.BackendError)
                progress.backend_errors += storage
                streak = streak + 1 if storage else 0
                if streak >= STOP_AFTER_STORAGE_ERRORS and not progress.stopped:
                    logger.warning("%d storage errors in a row: stopping this pass", streak)
                    progress.stopped = True
                if isinstance(result, errors.WritesDisabled):
                    # Every other pin would be refused the same way: one attempt tells.
                    progress.refused = progress.refused or result
                    progress.stopped = True
            else:
                streak = 0
            move.settle(cid, result)
        await move.report(progress)

    size = max(1, backend.batch_size)  # a commit-based store takes many pins per write
    pins = move.pins
    batches = (list(pins[start : start + size]) for start in range(0, len(pins), size))
    await each(batches, transfer_batch, workers=move.concurrency)


async def _absent(
    backend: base.Backend,
    batch: list[str],
    meta_of: Callable[[str], base.PinMeta],
    settle: Settle,
) -> list[str]:
    """The pins of ``batch`` the backend does not hold whole; the others are settled."""
    absent = []
    for cid in batch:
        try:
            await backend.verify_pin(meta_of(cid).cid)
        except errors.BackendError:
            absent.append(cid)  # not there, or damaged: write it (again)
            continue
        settle(cid, None)
    return absent


async def prune_all(
    backend: base.Backend,
    doomed: Iterable[str],
    stored: Listing,
    progress: Progress,
    now: Callable[[], datetime.datetime],
) -> None:
    """Delete the unwanted pins that are due; a deletion that fails is a failure of its own
    (``PruneFailed``, in status and retried with backoff), not only a line in the log."""
    streak = 0
    pending, size = iter(doomed), backend.prune_batch
    # One call per ``prune_batch`` pins: a store whose write is a commit deletes them in one.
    while progress.refused is None and (batch := list(itertools.islice(pending, size))):
        names = [stored.name_of(cid) for cid in batch]
        for cid, name, exc in zip(batch, names, await backend.remove_pins(names), strict=True):
            if exc is None:
                streak = 0
                progress.pruned += 1
                progress.prune_failures.pop(cid, None)
                continue
            logger.warning("could not prune %s: %s", name, exc)
            if isinstance(exc, errors.WritesDisabled):  # the service takes no deletions either
                progress.refused = exc
                return
            progress.prune_failures[cid] = planner.failed(
                progress.prune_failures.get(cid),
                name,
                reasons.PRUNE_FAILED.name,
                f"{exc.reason}: {exc}",
                now=now(),
                at_least=getattr(exc, "retry_after", 0.0),
            )
            reason = reasons.PRUNE_FAILED.name
            progress.new_failures[reason] = progress.new_failures.get(reason, 0) + 1
            streak += 1
        if streak >= STOP_AFTER_STORAGE_ERRORS:
            # The storage is gone: the rest wait for the next pass (untried, not failed).
            logger.warning("%d prune errors in a row: stopping this pass", streak)
            progress.stopped = True
            return


async def run(
    *,
    backend: base.Backend,
    kubo_for: Callable[[str], ipfs.Kubo],
    desired: Mapping[str, tuple[str, ...]] | Wanted,
    node_pins: Container[str],
    failures: Mapping[str, planner.Failure]
    | Callable[[pinlists.Keys], Mapping[str, planner.Failure]],
    full: bool,
    deep: bool,
    prune: bool,
    concurrency: int,
    global_limit: asyncio.Semaphore,
    report: Report,
    now: Callable[[], datetime.datetime],
    names: Mapping[str, str] | None = None,
    held: Listing | None = None,
    mover: Mover | None = None,
) -> Progress:
    """List, plan, verify (full), transfer, prune. Per-pin errors are recorded, not raised.

    Pins are keyed by identity (:func:`pinsync.cids.key`): ``desired``, ``node_pins``,
    ``failures`` (or a function giving those of the pins it is passed: the missing ones, so
    that recorded failures are looked up for those only). ``names`` gives the spelling a new
    object is stored under (default: the identity); a stored pin under another spelling of the
    same identity counts as present.
    ``held``: what the backend is known to hold, instead of listing it (an incremental sync).
    ``report`` is called after every pin; the caller throttles its writes.
    ``mover``: the transfer step (default :func:`in_process`).
    """
    wanted = desired if isinstance(desired, Wanted) else Wanted.of(desired, names or {})
    progress = Progress(desired=len(wanted.keys), pruning=prune)
    stored = held if held is not None else await listing(backend, detailed=full)
    present = wanted.keys.common(stored.keys)
    progress.present = len(present)
    unwanted = stored.keys.minus(wanted.keys) if prune else pinlists.Keys.empty()
    if callable(failures):
        failures = failures(wanted.keys.minus(stored.keys).union(unwanted))
    # Failures of pins that are no longer wanted, or are present now, are history; so are
    # failed deletions of pins that are gone, or wanted again.
    progress.failures = {
        c: f for c, f in failures.items() if c in wanted.keys and c not in stored.keys
    }
    progress.prune_failures = {c: f for c, f in failures.items() if c in unwanted}
    the_plan = planner.plan(
        desired=wanted.keys,
        present=stored.keys,
        failures={**progress.failures, **progress.prune_failures},
        now=now(),
        # A pinning service lists a pin as soon as it accepted it; only verification says
        # whether it is actually pinned, and that costs no content transfer.
        full=full or not backend.stores_content,
        prune=prune,
    )
    gained: list[str] = []
    lost: list[str] = []
    limit = asyncio.Semaphore(concurrency)
    # Pins the node already holds first: the rest may get pinned meanwhile (a PinSet pinning
    # them), and a pinned one needs no dag/stat to count its blocks.
    transfers = sorted(the_plan.transfer, key=lambda cid: cid not in node_pins)

    def fail(cid: str, reason: str, message: str, *, retry_after: float = 0.0) -> None:
        progress.failures[cid] = planner.failed(
            progress.failures.get(cid),
            wanted.spelling(cid),
            reason,
            message,
            now=now(),
            at_least=retry_after,
        )
        progress.new_failures[reason] = progress.new_failures.get(reason, 0) + 1

    async def verify_one(cid: str) -> None:
        async with limit:
            try:
                await backend.verify_pin(stored.name_of(cid), deep=deep, listed=stored.listed(cid))
                progress.verified += 1
            except errors.BackendError as exc:
                logger.warning("pin %s failed verification: %s", cid, exc)
                lost.append(cid)
                progress.present -= 1
                if exc.retryable and not isinstance(exc, errors.PinNotFound | errors.Damaged):
                    # Still in progress (a cluster fetching) or a hiccup: retry later, don't
                    # re-send content that may well be fine.
                    fail(cid, exc.reason, str(exc), retry_after=getattr(exc, "retry_after", 0.0))
                    return
                transfers.append(cid)
        await report(progress)

    if the_plan.verify:
        progress.phase = "Verifying"
        await report(progress)
        await each(the_plan.verify, verify_one, workers=concurrency)

    def settle(cid: str, result: base.PinInfo | Exception | None) -> None:
        if isinstance(result, Exception):
            reason, message = error_of(result)
            fail(cid, reason, message, retry_after=getattr(result, "retry_after", 0.0))
            return
        progress.failures.pop(cid, None)
        gained.append(cid)
        progress.present += 1
        progress.uploaded += result is not None

    progress.phase = "Syncing"
    await report(progress)
    await (mover or in_process)(
        Move(
            backend=backend,
            pins=transfers,
            meta_of=lambda cid: base.PinMeta(
                cid=stored.renamed.get(cid) or wanted.spelling(cid),
                pinsets=wanted.pinsets_of(cid),
                node=kubo_for(cid),
            ),
            kubo_for=kubo_for,
            node_pins=node_pins,
            concurrency=concurrency,
            global_limit=global_limit,
            progress=progress,
            settle=settle,
            report=report,
        )
    )

    await prune_all(backend, the_plan.prune, stored, progress, now)
    progress.present_cids = present.minus(pinlists.Keys.of(lost)).union(pinlists.Keys.of(gained))
    progress.failed = len(progress.failures)
    progress.phase = "Idle"
    return progress
