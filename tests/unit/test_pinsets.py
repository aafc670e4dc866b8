"""What a PinSet reports about its backends, without Kubernetes."""

from __future__ import annotations

from typing import Any

from pinsync import conditions
from pinsync.reconciling import pinsets


def backend(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "b", "labels": {"t": "x"}}, "status": status}


def test_progress_writes_do_not_change_what_pinsets_report() -> None:
    before = backend(counts={"present": 1}, phase="Syncing", bytesTransferred=10)
    after = backend(counts={"present": 900}, phase="Syncing", bytesTransferred=9000)
    assert pinsets.reported(before) == pinsets.reported(after)
    finished = backend(counts={"present": 900}, lastSync={"finishedAt": "2026-01-01T00:00:00Z"})
    assert pinsets.reported(finished) != pinsets.reported(after)


def test_a_stalled_backend_is_named_with_its_reason() -> None:
    stalled = backend(conditions=conditions.stalled("HostKeyMismatch", "key changed"))
    message = pinsets.stalled_backend([backend(), stalled])
    assert message is not None and "StorageBackend b" in message and "HostKeyMismatch" in message
    assert pinsets.stalled_backend([backend(conditions=conditions.ready("Synced"))]) is None
