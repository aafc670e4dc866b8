"""Wake-ups of the reconcile loops, and their sleep's behaviour under cancellation."""

from __future__ import annotations

import asyncio

import pytest

from pinsync.wakeups import Wakeups


async def test_a_sleep_cancelled_as_it_is_woken_raises_cancelled() -> None:
    # What kopf does to a daemon when the replica pauses: cancel it, maybe as a watch event
    # wakes it. The sleep must not return normally then, or the loop runs on, orphaned.
    wakeups = Wakeups()
    sleeping = asyncio.create_task(wakeups.sleep("k", 10))
    await asyncio.sleep(0.01)
    wakeups.wake("k")
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping


async def test_a_woken_sleep_returns_true_and_a_timed_out_one_false() -> None:
    wakeups = Wakeups()
    wakeups.wake("k")
    assert await wakeups.sleep("k", 10) is True
    assert await wakeups.sleep("k", 0.01) is False


async def test_wake_ups_before_the_sleep_collapse_into_one() -> None:
    wakeups = Wakeups()
    wakeups.wake("k")
    wakeups.wake("k")
    assert await wakeups.sleep("k", 10) is True
    assert await wakeups.sleep("k", 0.01) is False
