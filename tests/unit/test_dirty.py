from __future__ import annotations

from pinsync import dirty

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def test_a_mark_raises_the_token_and_records_the_reason_first() -> None:
    state = dirty.mark(dirty.DirtyState(), "spec changed", at=T0)
    state = dirty.mark(state, "PinSet a changed", at=T1)
    assert state.dirty and state.token == 2
    assert state.reasons == ("PinSet a changed", "spec changed")
    assert state.since == T0


def test_reasons_are_bounded() -> None:
    state = dirty.DirtyState()
    for i in range(25):
        state = dirty.mark(state, f"r{i}", at=T0)
    assert len(state.reasons) == dirty.MAX_REASONS and state.reasons[0] == "r24"


def test_clear_with_the_starting_token_cleans() -> None:
    state = dirty.mark(dirty.DirtyState(), "x", at=T0, full=True)
    cleared = dirty.clear(state, started_from=state.token)
    assert not cleared.dirty and cleared.reasons == () and not cleared.full
    assert cleared.token == state.token


def test_a_mark_made_during_a_sync_survives_its_clear() -> None:
    state = dirty.mark(dirty.DirtyState(), "x", at=T0)
    started = state.token
    state = dirty.mark(state, "annotation during sync", at=T1)
    after = dirty.clear(state, started_from=started)
    assert after.dirty and after.reasons[0] == "annotation during sync"


def test_status_round_trip() -> None:
    state = dirty.mark(dirty.DirtyState(), "x", at=T0, full=True, deep=True)
    assert dirty.DirtyState.from_status({"dirty": state.to_status()}) == state
    assert dirty.DirtyState.from_status(None) == dirty.DirtyState()
