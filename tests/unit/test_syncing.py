"""The sync engine over a storage that fails, without Kubernetes, Kubo or a server."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator

from pinsync import reasons, syncing
from pinsync.backends import base, errors
from pinsync.reconciling import backends as reconciling


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


async def sync(backend: base.Backend, count: int, now: datetime.datetime) -> syncing.Progress:
    """One pass over ``count`` desired pins the node holds, none present on the backend."""
    desired: dict[str, tuple[str, ...]] = {f"bafk{i:04d}": ("ns/p",) for i in range(count)}
    return await syncing.run(
        backend=backend,
        kubo_for=lambda cid: None,  # type: ignore[arg-type,return-value]  (never reached)
        desired=desired,
        node_pins=dict.fromkeys(desired, "pinned"),
        failures={},
        full=False,
        deep=False,
        prune=False,
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
