"""The sync planner: which pins to transfer, which to leave for later, which to prune.

Pure code over plain values, so every rule is unit-testable without Kubernetes or a backend:

* desired = the union of every targeting PinSet's pins; present = the backend's own listing;
* transfer only desired - present, never touching what is present (unless a full sync is asked
  for, which verifies present pins first and re-transfers the ones that fail);
* a pin whose last attempt failed waits for its ``nextRetryAt`` (exponential backoff with jitter,
  persisted in status so that an operator restart does not hammer it: the first ``MAX_LISTED``
  in full, every one of them in the compact :func:`pack` form);
* delete only with ``deletionPolicy: Prune``, and then only present - desired.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import math
import random
from collections.abc import Collection, Iterable, Mapping, Set

from multiformats import varint

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


def ceiling(attempts: int) -> float:
    """The longest wait after ``attempts`` failures."""
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1)))


def backoff(attempts: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``attempts`` failures: exponential, capped, with full jitter."""
    top = ceiling(attempts)
    return (rng or random).uniform(top / 2, top)


def failed(
    previous: Failure | None,
    cid: str,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    rng: random.Random | None = None,
    at_least: float = 0.0,
) -> Failure:
    """The failure record after one more failed attempt; ``at_least``: seconds the service
    asked to wait (a Retry-After), which the backoff never undercuts."""
    attempts = (previous.attempts if previous else 0) + 1
    delay = datetime.timedelta(seconds=max(at_least, backoff(attempts, rng=rng)))
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


# -- the compact form ----------------------------------------------------------------------------
#
# Status lists only MAX_LISTED failures in full, but backoff must hold for every failing pin --
# 20,000 of them when a whole PinSet is unfetchable -- across passes and operator restarts. The
# compact form groups failures by (reason, attempts, retry time rounded up to 5 % of the backoff)
# and names each pin by a 32-bit hash of its identity, sorted and delta-encoded as varints:
# ~4 bytes a pin (20,000 failing pins ≈ 100 KiB of status). A hash collision can only make one
# more pin wait with another's backoff; it never loses a failure.

RETRY_RESOLUTION = 20
"""Retry times are kept to 1/RETRY_RESOLUTION of the backoff ceiling (never finer than 1 s)."""


def pin_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big")


def _encode_hashes(hashes: Iterable[int]) -> str:
    out, last = bytearray(), 0
    for value in sorted(set(hashes)):
        out += varint.encode(value - last)
        last = value
    return base64.b64encode(bytes(out)).decode()


def _decode_hashes(text: str) -> list[int]:
    data, hashes, last, pos = base64.b64decode(text), [], 0, 0
    while pos < len(data):
        delta, size, _ = varint.decode_raw(data[pos:])
        pos += size
        last += delta
        hashes.append(last)
    return hashes


def _rounded_up(at: datetime.datetime, attempts: int) -> datetime.datetime:
    step = max(1.0, ceiling(attempts) / RETRY_RESOLUTION)
    stamp = math.ceil(at.timestamp() / step) * step
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).replace(microsecond=0)


def pack(failures: Mapping[str, Failure]) -> list[dict[str, object]]:
    """Every failure (keyed by pin identity) in the compact status form."""
    groups: dict[tuple[str, int, str], list[int]] = {}
    for key, failure in failures.items():
        at = failure.next_retry_at
        when = _rounded_up(at, failure.attempts).strftime("%Y-%m-%dT%H:%M:%SZ") if at else ""
        groups.setdefault((failure.reason, failure.attempts, when), []).append(pin_hash(key))
    packed: list[dict[str, object]] = []
    for (reason, attempts, when), hashes in sorted(groups.items()):
        group: dict[str, object] = {"reason": reason, "attempts": attempts}
        if when:
            group["nextRetryAt"] = when
        packed.append(group | {"pins": _encode_hashes(hashes)})
    return packed


def unpack(
    groups: Iterable[Mapping[str, object]] | None,
    names: Mapping[str, str],
    listed: Iterable[Failure] = (),
) -> dict[str, Failure]:
    """Failures of the pins in ``names`` (identity -> spelling) from their compact form.

    ``listed`` are the failures status lists in full (with their messages); they win.
    """
    full = {f.cid: f for f in listed}
    if not groups and not full:
        return {}  # nothing failed: no need to hash every pin
    by_hash: dict[int, Failure] = {}
    for group in groups or ():
        at = group.get("nextRetryAt")
        template = Failure(
            cid="",
            reason=str(group.get("reason", "")),
            attempts=int(group.get("attempts", 1)),  # type: ignore[call-overload]
            next_retry_at=datetime.datetime.fromisoformat(str(at)) if at else None,
        )
        for value in _decode_hashes(str(group.get("pins", ""))):
            by_hash[value] = template
    out: dict[str, Failure] = {}
    for key, name in names.items():
        found = full.get(name) or (by_hash.get(pin_hash(key)) if by_hash else None)
        if found is not None:
            out[key] = found if found.cid else dataclasses.replace(found, cid=name)
    return out
