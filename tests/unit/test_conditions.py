from __future__ import annotations

from pinsync import conditions


def test_unchanged_status_keeps_its_transition_time() -> None:
    first = conditions.merge(
        [], conditions.ready("Synced"), generation=1, at="2026-01-01T00:00:00Z"
    )
    again = conditions.merge(
        first, conditions.ready("Synced"), generation=2, at="2026-01-02T00:00:00Z"
    )
    assert {c["lastTransitionTime"] for c in again} == {"2026-01-01T00:00:00Z"}
    assert {c["observedGeneration"] for c in again} == {2}


def test_changed_status_moves_its_transition_time() -> None:
    first = conditions.merge(
        [], conditions.ready("Synced"), generation=1, at="2026-01-01T00:00:00Z"
    )
    later = conditions.merge(
        first, conditions.stalled("AuthFailed"), generation=1, at="2026-01-02T00:00:00Z"
    )
    ready = conditions.find(later, "Ready")
    assert ready is not None and ready["lastTransitionTime"] == "2026-01-02T00:00:00Z"
    assert ready["reason"] == "AuthFailed"


def test_conditions_not_updated_are_kept_in_order() -> None:
    first = conditions.merge([], [conditions.condition("Healthy", True, "Ok")], generation=1)
    merged = conditions.merge(first, conditions.ready("Synced"), generation=1)
    assert [c["type"] for c in merged] == ["Healthy", "Ready", "Reconciling", "Stalled"]


def test_changes_lists_only_differing_fields() -> None:
    assert conditions.changes({"a": 1, "b": [1]}, {"a": 1, "b": [2]}) == {"b": [2]}
    assert conditions.changes(None, {"a": 1}) == {"a": 1}
