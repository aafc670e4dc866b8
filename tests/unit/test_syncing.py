"""The sync engine over a storage that fails, without Kubernetes, Kubo or a server."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Sequence

from multiformats import CID, multihash

from pinsync import planner, reasons, syncing
from pinsync.backends import base, errors
from pinsync.reconciling import backends as reconciling
from pinsync.reconciling import reporting
from pinsync.status import BackendStatus


class Gone(base.Backend):
    """A storage whose server has gone away: every write fails as unreachable."""

    def __init__(self) -> None:
        super().__init__({}, base.Credentials())
        self.puts = 0

    async def health(self) -> None:
        raise errors.BackendError("gone", reason=reasons.UNREACHABLE)

    async def usage(self) -> base.Usage:
        return base.Usage(bytes=0, objects=0)

    async def list_pins(self) -> AsyncIterator[base.PinInfo]:
        return
        yield  # pragma: no cover

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
        self.puts += 1
        await asyncio.sleep(0)
        raise errors.BackendError(f"{meta.cid}: connection refused", reason=reasons.UNREACHABLE)

    async def verify_pin(
        self, cid: str, *, deep: bool = False, listed: base.PinInfo | None = None
    ) -> base.PinInfo:
        raise errors.PinNotFound(cid)

    async def remove_pin(self, cid: str) -> None:
        return None

    async def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        return
        yield  # pragma: no cover


async def nothing(progress: syncing.Progress) -> None:
    return None


async def sync(
    backend: base.Backend,
    count: int,
    now: datetime.datetime,
    *,
    failures: dict[str, planner.Failure] | None = None,
    prune: bool = False,
) -> syncing.Progress:
    """One pass over ``count`` desired pins the node holds, with the ``failures`` recorded
    before it."""
    desired: dict[str, tuple[str, ...]] = {f"bafk{i:04d}": ("ns/p",) for i in range(count)}
    return await syncing.run(
        backend=backend,
        kubo_for=lambda cid: None,  # type: ignore[arg-type,return-value]  (never reached)
        desired=desired,
        node_pins=dict.fromkeys(desired, "pinned"),
        failures=lambda keys: {k: f for k, f in (failures or {}).items() if k in keys},
        full=False,
        deep=False,
        prune=prune,
        concurrency=4,
        global_limit=asyncio.Semaphore(16),
        report=nothing,
        now=lambda: now,
    )


async def test_a_pass_stops_after_a_run_of_storage_errors_and_leaves_the_rest_untried() -> None:
    backend = Gone()
    progress = await sync(backend, 1000, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    assert progress.stopped
    limit = syncing.STOP_AFTER_STORAGE_ERRORS + 4  # the batches already in flight finish
    assert syncing.STOP_AFTER_STORAGE_ERRORS <= backend.puts <= limit
    assert len(progress.failures) == backend.puts  # the untried are not failures
    assert progress.present == 0 and progress.missing == 1000


class Throttled(Gone):
    """A service that refuses every write for now and says how long to wait (HTTP 429)."""

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
        self.puts += 1
        raise errors.RateLimited(f"{meta.cid}: HTTP 429", retry_after=900.0)


async def test_a_rate_limited_pin_is_retried_no_sooner_than_the_services_retry_after() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    progress = await sync(Throttled(), 1, now)
    failure = progress.failures["bafk0000"]
    assert failure.reason == "RateLimited" and failure.attempts == 1
    # The first backoff alone would be 5-10 s; the service asked for 15 minutes.
    assert failure.next_retry_at == now + datetime.timedelta(seconds=900)


class WritesOff(Gone):
    """A service that refuses every write (Storacha since 2026-05-15) and still reads."""

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
        self.puts += 1
        await asyncio.sleep(0)
        raise errors.WritesDisabled(f"{meta.cid}: ServiceUnavailable")


async def test_a_pass_stops_at_the_first_refusal_of_every_write() -> None:
    """Not 16 refusals, nor one per pin per backoff: the batches already in flight, no more."""
    backend = WritesOff()
    progress = await sync(backend, 1000, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    assert progress.stopped and isinstance(progress.refused, errors.WritesDisabled)
    assert 1 <= backend.puts <= 4  # concurrency 4
    assert progress.refused.reason == "WritesDisabled" and progress.missing == 1000


def test_an_unhealthy_backend_is_not_asked_again_before_the_servers_retry_after() -> None:
    def delay(error: errors.BackendError) -> float:
        return reconciling.unhealthy_delay(error, every=300.0, retry_interval=30.0)

    assert delay(errors.Unreachable("down")) == 30.0
    assert delay(errors.RateLimited("429", retry_after=600.0)) == 600.0
    assert delay(errors.RateLimited("429", retry_after=5.0)) == 30.0
    assert delay(errors.RateLimited("429")) == 60.0  # no Retry-After: RateLimited's default
    assert delay(errors.AuthFailed("401")) == 300.0  # not retryable: at the health interval


class Holding(Gone):
    """A storage holding pins nobody wants any more; one of them cannot be removed."""

    prune_batch = 100

    def __init__(self, held: list[str], stuck: str) -> None:
        super().__init__()
        self.held, self.stuck = held, stuck
        self.removals: list[list[str]] = []

    async def list_pins(self) -> AsyncIterator[base.PinInfo]:
        for cid in self.held:
            yield base.PinInfo(cid=cid, size=1)

    async def remove_pins(self, cids: Sequence[str]) -> list[errors.BackendError | None]:
        self.removals.append(list(cids))
        return [errors.PinNotFound(c) if c == self.stuck else None for c in cids]


async def test_a_prune_hands_the_backend_every_pin_at_once() -> None:
    """A store whose write is a commit prunes in one commit, not one per pin."""
    held = [
        str(CID("base32", 1, "raw", multihash.digest(bytes([i]), "sha2-256"))) for i in range(5)
    ]
    backend = Holding(held, stuck=held[3])
    progress = await sync(
        backend, 0, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), prune=True
    )
    assert [sorted(cids) for cids in backend.removals] == [sorted(held)]
    assert progress.pruned == 4


class Stubborn(Gone):
    """A storage holding pins nobody wants, one of which it will not delete until told to."""

    def __init__(self, held: list[str], refusing: set[str]) -> None:
        super().__init__()
        self.held, self.refusing, self.removals = list(held), refusing, list[str]()

    async def list_pins(self) -> AsyncIterator[base.PinInfo]:
        for cid in list(self.held):
            yield base.PinInfo(cid=cid)

    async def remove_pin(self, cid: str) -> None:
        self.removals.append(cid)
        if cid in self.refusing:
            raise errors.BackendError(f"unpin {cid}: the answer is not JSON", reason="ServiceError")
        self.held.remove(cid)


async def prune_pass(
    backend: base.Backend, now: datetime.datetime, failures: dict[str, planner.Failure]
) -> syncing.Progress:
    """One Prune pass wanting nothing: every held pin is to be deleted."""
    return await sync(backend, 0, now, failures=failures, prune=True)


async def test_a_failed_prune_is_counted_reasoned_and_retried_with_backoff() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    keep, gone = (
        str(CID("base32", 1, "raw", multihash.digest(b, "sha2-256"))) for b in (b"k", b"g")
    )
    backend = Stubborn([keep, gone], refusing={keep})
    first = await prune_pass(backend, now, {})
    assert first.pruned == 1 and backend.held == [keep]
    failure = first.prune_failures[keep]
    assert (failure.reason, failure.attempts) == ("PruneFailed", 1)
    assert failure.message.startswith(f"ServiceError: unpin {keep}")
    assert failure.next_retry_at is not None and failure.next_retry_at > now
    # In status: a count of its own, the failure listed and packed for the backoff.
    fields = reporting.progress_fields(first)
    assert fields["counts"] == {
        "desired": 0,
        "present": 0,
        "missing": 0,
        "failed": 0,
        "pruneFailed": 1,
    }
    assert [(f["cid"], f["reason"]) for f in fields["failures"]] == [(keep, "PruneFailed")]
    assert (
        reporting.failures_of(BackendStatus.of({"status": fields}).failures, {keep: keep})[
            keep
        ].attempts
        == 1
    )
    message = reconciling.failed_message(first)
    assert f"1 pin(s) could not be pruned, e.g. {keep}: ServiceError" in message

    # Not due yet: not tried again, still failed.
    early = await prune_pass(backend, now, first.prune_failures)
    assert backend.removals.count(keep) == 1 and keep in early.prune_failures
    # Due, still refused: a second attempt, a longer wait.
    due = failure.next_retry_at
    second = await prune_pass(backend, due, early.prune_failures)
    again = second.prune_failures[keep]
    assert again.attempts == 2 and again.next_retry_at is not None and again.next_retry_at > due
    # Due, and the storage deletes it now: the failure is gone.
    backend.refusing.clear()
    assert again.next_retry_at is not None
    third = await prune_pass(backend, again.next_retry_at, second.prune_failures)
    assert third.prune_failures == {} and backend.held == []
    assert reporting.progress_fields(third)["counts"]["pruneFailed"] == 0


async def test_a_pass_that_does_not_prune_writes_no_prune_count() -> None:
    progress = await sync(Gone(), 0, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    assert "pruneFailed" not in reporting.progress_fields(progress)["counts"]
