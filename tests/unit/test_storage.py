from __future__ import annotations

import json

from pinsync import storage


def test_long_lists_become_a_small_digest_that_still_detects_changes() -> None:
    spec = {"spec": {"cids": [f"cid{i}" for i in range(20_000)], "backends": ["a"]}}
    compact = storage.digest_long_lists(spec)
    assert len(json.dumps(compact)) < 300
    assert compact["spec"]["backends"] == ["a"]
    changed = storage.digest_long_lists(
        {"spec": {**spec["spec"], "cids": spec["spec"]["cids"][1:]}}
    )
    assert changed != compact
