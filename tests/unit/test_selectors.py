from __future__ import annotations

import pytest

from pinsync import selectors


def test_match_labels_and_expressions() -> None:
    selector = {
        "matchLabels": {"tier": "cold"},
        "matchExpressions": [
            {"key": "region", "operator": "In", "values": ["eu", "us"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert selectors.matches(selector, {"tier": "cold", "region": "eu"})
    assert not selectors.matches(selector, {"tier": "cold", "region": "ap"})
    assert not selectors.matches(selector, {"tier": "cold", "region": "eu", "legacy": "1"})
    assert selectors.matches({}, {"anything": "x"})


def test_durations_parse_like_go() -> None:
    assert selectors.duration("1h30m", 0) == 5400
    assert selectors.duration("500ms", 0) == 0.5
    assert selectors.duration(None, 7) == 7
    with pytest.raises(ValueError):
        selectors.duration("5 minutes", 0)
