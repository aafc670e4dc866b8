"""The sync planner: which pins to transfer, which to leave for later, which to prune.

Pure code over plain values, so every rule is unit-testable without Kubernetes or a backend:

* desired = the union of every targeting PinSet's pins; present = the backend's own listing;
* transfer only desired - present, never touching what is present (unless a full sync is asked
  for, which verifies present pins first and re-transfers the ones that fail);
* a pin whose last attempt failed waits for its ``nextRetryAt`` (exponential backoff with jitter,
  persisted in status so that an operator restart does not hammer it);
* delete only with ``deletionPolicy: Prune``, and then only present - desired.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
from collections.abc import Collection, Mapping, Set

MAX_LISTED = 50
"""Failures a status lists (the CRDs' maxItems); counts always cover all of them."""
BACKOFF_BASE = 10.0
"""Seconds before the first retry of a failed pin."""
BACKOFF_CAP = 3600.0
"""Longest wait between retries of one pin."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Failure:
    cid: str
    reason: str
    message: str = ""
    attempts: int = 1
    next_retry_at: datetime.datetime | None = None

    def to_status(self) -> dict[str, object]:
        out: dict[str, object] = {
            "cid": self.cid,
            "reason": self.reason,
            "message": self.message,
            "attempts": self.attempts,
        }
        if self.next_retry_at is not None:
            out["nextRetryAt"] = self.next_retry_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return out

    @classmethod
    def from_status(cls, raw: Mapping[str, object]) -> Failure:
        at = raw.get("nextRetryAt")
        return cls(
            cid=str(raw["cid"]),
            reason=str(raw.get("reason", "")),
            message=str(raw.get("message", "")),
            attempts=int(raw.get("attempts", 1)),  # type: ignore[call-overload]
            next_retry_at=datetime.datetime.fromisoformat(str(at)) if at else None,
        )


def backoff(attempts: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``attempts`` failures: exponential, capped, with full jitter."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def failed(
    previous: Failure | None,
    cid: str,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    rng: random.Random | None = None,
) -> Failure:
    """The failure record after one more failed attempt."""
    attempts = (previous.attempts if previous else 0) + 1
    delay = datetime.timedelta(seconds=backoff(attempts, rng=rng))
    return Failure(
        cid=cid, reason=reason, message=message, attempts=attempts, next_retry_at=now + delay
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    transfer: tuple[str, ...]
    """Missing pins to transfer now, in a stable order."""
    waiting: tuple[str, ...]
    """Missing pins whose retry time has not come yet."""
    verify: tuple[str, ...]
    """Present pins to verify first (full sync only); failures join the transfers."""
    prune: tuple[str, ...]
    """Present pins no PinSet wants, to delete (Prune policy only)."""
    next_retry_at: datetime.datetime | None
    """When the earliest waiting pin becomes due."""

    @property
    def missing(self) -> int:
        return len(self.transfer) + len(self.waiting)


def plan(
    *,
    desired: Collection[str],
    present: Set[str],
    failures: Mapping[str, Failure],
    now: datetime.datetime,
    full: bool = False,
    prune: bool = False,
) -> Plan:
    missing = [cid for cid in sorted(desired) if cid not in present]
    due, waiting = [], []
    for cid in missing:
        failure = failures.get(cid)
        if failure and failure.next_retry_at and failure.next_retry_at > now:
            waiting.append(cid)
        else:
            due.append(cid)
    wanted = set(desired)
    retry_times = [f.next_retry_at for c in waiting if (f := failures[c]).next_retry_at]
    return Plan(
        transfer=tuple(due),
        waiting=tuple(waiting),
        verify=tuple(sorted(c for c in present if c in wanted)) if full else (),
        prune=tuple(sorted(present - wanted)) if prune else (),
        next_retry_at=min(retry_times, default=None),
    )
