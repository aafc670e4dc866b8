"""Waiting as an HTTP service asks: ``Retry-After`` and the ``x-ratelimit-*`` headers.

Shared by the backends that talk to a metered HTTP API. A 429's ``Retry-After`` says how long
to wait after a refusal; ``x-ratelimit-limit/-remaining/-reset`` (Pinata sends them on every
listing, recorded by ipfs-shipyard/pinning-service-compliance) say it *before* one: once
``remaining`` is 0, the next request would be refused until ``reset``. :class:`Pacer` keeps
that time per client and makes the next request wait for it -- in place when the wait is
short, so a listing of many pages is not cut in the middle, else as :class:`RateLimited`
carrying the wait, which the pin's backoff honours without a request.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Mapping

from pinsync.backends import errors

EPOCH_FROM = 10**9
"""An ``x-ratelimit-reset`` at least this large is a Unix time (Pinata's), not seconds to wait."""
PACE_IN_PLACE = 60.0
"""Waits up to this long are slept through; a longer one fails the call as RateLimited."""


def quota_wait(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds until ``x-ratelimit-reset`` when ``x-ratelimit-remaining`` is 0; None when the
    headers are absent, unreadable, or the quota is not used up."""
    remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
    if remaining is None or reset is None or remaining.strip() != "0":
        return None
    try:
        value = float(reset.strip())
    except ValueError:
        return None
    if value >= EPOCH_FROM:
        value -= time.time() if now is None else now
    return min(max(0.0, value), errors.RETRY_AFTER_CAP)


def wait_of(headers: Mapping[str, str], *, now: datetime.datetime | None = None) -> float | None:
    """How long an answer asks to wait: ``Retry-After``, else a used-up ``x-ratelimit`` quota."""
    wait = errors.retry_after(headers.get("Retry-After"), now=now)
    if wait is not None:
        return wait
    return quota_wait(headers, now=None if now is None else now.timestamp())


class Pacer:
    """The time before which one client should send nothing, from the answers it got."""

    def __init__(self) -> None:
        self.until = 0.0
        """``time.monotonic()`` before which the service asked for no request."""

    def note(self, headers: Mapping[str, str]) -> float | None:
        """Remember the wait an answer asks for (if any); returns it."""
        wait = wait_of(headers)
        if wait:
            self.until = max(self.until, time.monotonic() + wait)
        return wait

    async def pace(self, what: str) -> None:
        """Wait out a short asked-for wait; raise RateLimited for a long one, sending nothing."""
        wait = self.until - time.monotonic()
        if wait <= 0:
            return
        if wait > PACE_IN_PLACE:
            raise errors.RateLimited(
                f"{what}: the service's rate limit is used up; {wait:.0f} s left",
                retry_after=wait,
            )
        await asyncio.sleep(wait)
