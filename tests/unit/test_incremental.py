"""When a backend's sync may build on what its last sync found instead of listing the storage:
only after level marks of its PinSets' changes, never after any other mark."""

from __future__ import annotations

from typing import Any

from pinsync import dirty, pinlists
from pinsync.reconciling import backends, sources
from pinsync.reconciling.context import Context
from pinsync.settings import Settings

KEY = ("ns", "b")


def make_pass(state: dirty.DirtyState) -> backends.Pass:
    ctx = Context(api=None, settings=Settings())  # type: ignore[arg-type]
    obj: dict[str, Any] = {
        "metadata": {"namespace": "ns", "name": "b"},
        "spec": {},
        "status": {"dirty": state.to_status()},
    }
    return backends.Pass(ctx, obj, None)  # type: ignore[arg-type]


def desired(*keys: str) -> sources.Desired:
    return sources.Desired.of("ns", [sources.Source(name="p", api_url="u", pins=keys)])


def test_level_marks_of_sources_keep_the_incremental_path_and_others_close_it() -> None:
    clean = dirty.DirtyState(token=3)
    run = make_pass(clean)
    run.ctx.synced[KEY] = (3, pinlists.Keys.of(["a", "b"]))
    marked = dirty.mark(clean, "PinSet p changed", at="now")
    run.remember_marks(clean, marked)
    held = run.incremental(desired("a", "b", "c"), marked)
    assert held is not None and list(held.keys) == ["a", "b"]

    requested = dirty.mark(marked, "requested: disk swap", at="now")
    run.remember_marks(marked, requested)
    assert run.incremental(desired("a", "b", "c"), requested) is None
    assert KEY not in run.ctx.synced


def test_a_full_sync_or_an_unknown_backend_lists() -> None:
    state = dirty.mark(dirty.DirtyState(token=1), "full sync requested", at="now", full=True)
    run = make_pass(state)
    assert run.incremental(desired("a"), state) is None  # nothing known (a restarted operator)
    run.ctx.synced[KEY] = (state.token, pinlists.Keys.of(["a"]))
    assert run.incremental(desired("a"), state) is None  # full: verify everything


def test_too_many_new_pins_list_instead() -> None:
    state = dirty.DirtyState(token=5, dirty=True, reasons=("PinSet p changed",))
    run = make_pass(state)
    run.ctx.synced[KEY] = (5, pinlists.Keys.of(["a"]))
    many = [f"k{i:05d}" for i in range(backends.INCREMENTAL_LIMIT + 1)]
    assert run.incremental(desired(*many), state) is None
    assert run.incremental(desired("a", *many[:10]), state) is not None
