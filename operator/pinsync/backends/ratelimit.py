"""Waiting as an HTTP service asks: ``Retry-After`` and the ``x-ratelimit-*`` headers.

Shared by the backends that talk to a metered HTTP API. A 429's ``Retry-After`` says how long
to wait after a refusal; ``x-ratelimit-limit/-remaining/-reset`` (Pinata sends them on every
listing, recorded by ipfs-shipyard/pinning-service-compliance) say it *before* one: after an
answer with ``remaining`` N, N more requests fit before ``reset``. :class:`Pacer` keeps that
budget per client -- less the requests already on their way, since a sync sends several at
once -- and makes a request that does not fit wait for the reset: in place when the wait is
short, so a listing of many pages is not cut in the middle, else as :class:`RateLimited`
carrying the wait, which the pin's backoff honours without a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import AsyncIterator, Mapping

from pinsync.backends import errors

EPOCH_FROM = 10**9
"""An ``x-ratelimit-reset`` at least this large is a Unix time (Pinata's), not seconds to wait."""
PACE_IN_PLACE = 60.0
"""Waits up to this long are slept through; a longer one fails the call as RateLimited."""
PROBE_WAIT = 0.05
"""Seconds between looks while the first request of a window finds out its budget."""


def quota(headers: Mapping[str, str], *, now: float | None = None) -> tuple[int, float] | None:
    """(``x-ratelimit-remaining``, seconds until ``x-ratelimit-reset``), or None when the
    headers are absent or unreadable."""
    remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
    if remaining is None or reset is None:
        return None
    try:
        left, value = int(remaining.strip()), float(reset.strip())
    except ValueError:
        return None
    if value >= EPOCH_FROM:
        value -= time.time() if now is None else now
    return max(0, left), min(max(0.0, value), errors.RETRY_AFTER_CAP)


def quota_wait(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds until the reset when the quota is used up (``remaining`` 0), else None."""
    found = quota(headers, now=now)
    return found[1] if found is not None and found[0] == 0 else None


def wait_of(headers: Mapping[str, str], *, now: datetime.datetime | None = None) -> float | None:
    """How long an answer asks to wait: ``Retry-After``, else a used-up ``x-ratelimit`` quota."""
    wait = errors.retry_after(headers.get("Retry-After"), now=now)
    if wait is not None:
        return wait
    return quota_wait(headers, now=None if now is None else now.timestamp())


def refused(message: str, headers: Mapping[str, str]) -> errors.RateLimited:
    """The error of a 429 answer, carrying the wait it asks for (RateLimited's default when
    it names none)."""
    wait = wait_of(headers)
    if wait is None:
        return errors.RateLimited(message)
    return errors.RateLimited(f"{message}; retry after {wait:.0f} s", retry_after=wait)


class Pacer:
    """What one client may still send, from the answers it got (see the module docstring)."""

    def __init__(self) -> None:
        self.until = 0.0
        """``time.monotonic()`` before which the service asked for no request (Retry-After)."""
        self.left: int | None = None
        """Requests that still fit the service's window; None: unknown (no quota headers)."""
        self.reset = 0.0
        """``time.monotonic()`` when the window resets."""
        self.in_flight = 0
        self.metered = False
        """The service has sent quota headers: at a window's start, while the budget is
        unknown, one request goes first and its answer tells the rest how many fit."""

    @contextlib.asynccontextmanager
    async def paced(self, what: str) -> AsyncIterator[None]:
        """Around one request: waits for room first (or raises RateLimited), and counts the
        request as on its way until the block ends (call :meth:`note` with its answer)."""
        await self.pace(what)
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def pace(self, what: str) -> None:
        while True:
            now = time.monotonic()
            wait = self.until - now
            if wait <= 0 and self.left is not None and self.left <= 0:
                if self.reset > now:
                    wait = self.reset - now
                else:
                    self.left = None  # a new window: its first answer tells the budget
            if wait <= 0 and self.left is None and self.metered and self.in_flight:
                wait = PROBE_WAIT  # the budget is being asked for
            if wait <= 0:
                break
            if wait > PACE_IN_PLACE:
                raise errors.RateLimited(
                    f"{what}: the service's rate limit is used up; {wait:.0f} s left",
                    retry_after=wait,
                )
            await asyncio.sleep(wait)
        if self.left is not None:
            self.left -= 1

    def note(self, headers: Mapping[str, str]) -> None:
        """Learn from an answer (inside :meth:`paced`): a Retry-After, the quota left."""
        wait = errors.retry_after(headers.get("Retry-After"))
        if wait:
            self.until = max(self.until, time.monotonic() + wait)
        found = quota(headers)
        if found is not None:
            self.metered = True
            remaining, reset = found
            # The other requests on their way will spend some of what the server counted.
            self.left = remaining - max(0, self.in_flight - 1)
            self.reset = time.monotonic() + reset
