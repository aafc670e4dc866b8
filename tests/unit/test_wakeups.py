"""Wake-ups of the reconcile loops, and their sleep's behaviour under cancellation."""

from __future__ import annotations

import asyncio

import pytest

from pinsync.wakeups import Echoes, Wakeups


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


def test_every_recent_write_is_recognised_as_its_own_not_only_the_last() -> None:
    echoes = Echoes()
    for version in ("11", "12", "13"):
        echoes.record("b", version)
    # The watch event of "11" arrives after "13" was written: still an echo.
    assert all(echoes.is_own_write("b", {"resourceVersion": v}) for v in ("11", "12", "13"))
    assert not echoes.is_own_write("b", {"resourceVersion": "14", "generation": 2})  # a spec edit


def test_an_event_changing_nothing_but_status_is_an_echo_even_before_its_write_is_recorded() -> (
    None
):
    echoes = Echoes()
    meta = {"resourceVersion": "1", "generation": 1, "annotations": {"a": "1"}}
    assert not echoes.is_own_write("b", meta)  # first sight: wake
    assert echoes.is_own_write("b", {**meta, "resourceVersion": "2"})  # status only
    assert not echoes.is_own_write("b", {**meta, "resourceVersion": "3", "generation": 2})
    marked = {**meta, "resourceVersion": "4", "generation": 2, "annotations": {"a": "2"}}
    assert not echoes.is_own_write("b", marked)  # an annotation (a mark) wakes
