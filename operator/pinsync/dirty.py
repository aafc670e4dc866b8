"""The dirty-state machine of a StorageBackend, kept in ``status.dirty``.

Anything that may have made a backend incomplete *marks* it: each mark raises ``token`` and adds
a reason. A sync remembers the token it started from and *clears* the mark only if the token is
still the same when it finishes successfully. A mark made while a sync runs therefore survives
that sync -- the reference system cleared a boolean at the end and lost exactly those marks.

Pure code: no Kubernetes, no I/O. Status writes that apply these transitions use the object's
resourceVersion as a precondition, so concurrent writers cannot interleave a read-modify-write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

MAX_REASONS = 10


@dataclasses.dataclass(frozen=True, kw_only=True)
class DirtyState:
    dirty: bool = False
    reasons: tuple[str, ...] = ()
    """Why, newest first, at most MAX_REASONS."""
    since: str | None = None
    """When the backend last went from clean to dirty."""
    token: int = 0
    """Raised by every mark; a sync may clear only the token it started from."""
    full: bool = False
    """Verify every present pin, not only upload missing ones (forced sync, audit findings)."""
    deep: bool = False
    """With ``full``: re-read and re-hash objects instead of comparing sizes."""

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> DirtyState:
        raw = (status or {}).get("dirty") or {}
        return cls(
            dirty=bool(raw.get("dirty", False)),
            reasons=tuple(raw.get("reasons") or ()),
            since=raw.get("since"),
            token=int(raw.get("token") or 0),
            full=bool(raw.get("full", False)),
            deep=bool(raw.get("deep", False)),
        )

    def to_status(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"reasons": list(self.reasons)}


def mark(
    state: DirtyState, reason: str, *, at: str, full: bool = False, deep: bool = False
) -> DirtyState:
    """Mark dirty for ``reason``. Always raises the token, even when already dirty."""
    return DirtyState(
        dirty=True,
        reasons=(reason, *state.reasons)[:MAX_REASONS],
        since=state.since if state.dirty else at,
        token=state.token + 1,
        full=state.full or full,
        deep=state.deep or deep,
    )


def clear(state: DirtyState, started_from: int) -> DirtyState:
    """Clear after a successful sync that started at token ``started_from``.

    Returns the state unchanged if anything marked the backend since the sync started.
    """
    if state.token != started_from:
        return state
    return DirtyState(token=state.token)
