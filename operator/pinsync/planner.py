"""The sync planner: which pins to transfer, which to leave for later, which to prune.

Pure code over plain values, so every rule is unit-testable without Kubernetes or a backend:

* desired = the union of every targeting PinSet's pins; present = the backend's own listing;
* transfer only desired - present, never touching what is present (unless a full sync is asked
  for, which verifies present pins first and re-transfers the ones that fail);
* a pin whose last attempt failed waits for its ``nextRetryAt`` (exponential backoff with jitter,
  persisted in status so that an operator restart does not hammer it: the first ``MAX_LISTED``
  in full, every one of them in the compact :func:`pack` form);
* delete only with ``deletionPolicy: Prune``, and then only present - desired; a pin whose
  deletion failed waits for its ``nextRetryAt`` like a failed transfer.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import math
import random
from collections.abc import Collection, Iterable, Mapping

from multiformats import varint

from pinsync import pinlists

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
    verify: pinlists.Keys
    """Present pins to verify first (full sync only); failures join the transfers. Kept as
    keys: a full sync of a million present pins would otherwise hold a million strings."""
    prune: pinlists.Keys
    """Present pins no PinSet wants, to delete now (Prune policy only)."""
    prune_waiting: tuple[str, ...]
    """Present pins no PinSet wants whose deletion failed and is not due again yet."""
    next_retry_at: datetime.datetime | None
    """When the earliest waiting pin (to transfer or to delete) becomes due."""

    @property
    def missing(self) -> int:
        return len(self.transfer) + len(self.waiting)


def plan(
    *,
    desired: Collection[str] | pinlists.Keys,
    present: Collection[str] | pinlists.Keys,
    failures: Mapping[str, Failure],
    now: datetime.datetime,
    full: bool = False,
    prune: bool = False,
) -> Plan:
    wanted, held = _keys(desired), _keys(present)
    due, waiting = [], []
    for cid in wanted.minus(held):  # sorted; strings only for the missing pins
        failure = failures.get(cid)
        if failure and failure.next_retry_at and failure.next_retry_at > now:
            waiting.append(cid)
        else:
            due.append(cid)
    unwanted = held.minus(wanted) if prune else pinlists.Keys.empty()
    # Failed deletions not due yet: found among the failures (a few), not by making a string
    # of every unwanted pin (a million, when a PinSet goes).
    spared = sorted(
        cid
        for cid, failure in failures.items()
        if failure.next_retry_at and failure.next_retry_at > now and cid in unwanted
    )
    retry_times = [f.next_retry_at for c in (*waiting, *spared) if (f := failures[c]).next_retry_at]
    return Plan(
        transfer=tuple(due),
        waiting=tuple(waiting),
        verify=held.common(wanted) if full else pinlists.Keys.empty(),
        prune=unwanted.minus(pinlists.Keys.of(spared)) if spared else unwanted,
        prune_waiting=tuple(spared),
        next_retry_at=min(retry_times, default=None),
    )


def _keys(values: Collection[str] | pinlists.Keys) -> pinlists.Keys:
    return values if isinstance(values, pinlists.Keys) else pinlists.Keys.of(values)


# -- the compact form ----------------------------------------------------------------------------
#
# Status lists only MAX_LISTED failures in full, but backoff must hold for every failing pin --
# 20,000 of them when a whole PinSet is unfetchable -- across passes and operator restarts. The
# compact form groups failures by (reason, attempts, retry time rounded up) and names each pin by
# a 32-bit hash of its identity, sorted and delta-encoded as varints (base64). A hash collision
# can only make one more pin wait with another's backoff; it never loses a failure.
#
# Size, for any spread of retry times. pack writes at most MAX_GROUPS groups (given at most
# MAX_GROUPS / 4 distinct reasons; a backend's pins fail for a handful). A group costs at most
# 130 bytes of JSON besides its pins (reason <= 22 characters, attempts < 1,000); a pin at most
# 4 varint bytes (5 for at most 15 of a group, as deltas >= 2**28 sum to under 2**32), 5.34
# base64 characters. So 20,000 failing pins take under 5.34 * 20,000 + 130 * MAX_GROUPS bytes
# < 125 KiB. Measured (tests/unit/test_planner.py, 20,000 pins, status written before the first
# retry): retries spread evenly over 10 minutes with attempts 1..8, 114.2 KiB (148 groups);
# batches of 32 failing 7 s apart, 115.5 KiB (first failures; 114.1 KiB with attempts 1..8);
# uniformly random over an hour with attempts 1..12, 115.8 KiB (156 groups). One fixed grid per
# (reason, attempts), as pack had before, wrote 275.6, 405.1 (790.5) and 611.5 KiB for them, in
# up to 7,333 groups; with every retry at once 106.2 KiB, as it still does.
#
# Rounding. Retry times are only ever rounded up -- a pin may wait a little longer than its
# backoff, never less -- onto grids of a power of two of seconds, so rounding twice (in two
# passes) is rounding once to the coarser grid: times never drift. While the failures fit
# MAX_GROUPS groups that way the grid is 1/RETRY_RESOLUTION of the backoff ceiling (as before);
# when not, pack doubles it, pin by pin, up to max_delay(): a retry is put off by less than
# max(1 s, ceiling(attempts) / 4, wait / 2), ``wait`` being the time it had left when packed
# (half the wait: retries far beyond their backoff ceiling are a server's Retry-After). A
# retry time already past is written as ``now``: due either way. Attempts and reasons are kept.
# Only if that still leaves more than MAX_GROUPS groups (retries spread over hours with dozens
# of attempts counts) does pack go further, in this order: attempts past the backoff cap (which
# all wait the same) become their largest count; the grids keep doubling past max_delay(); every
# attempts count of a reason becomes its largest (a longer backoff, never a shorter one).
# unpack reads any such groups, so status written by an older pack still unpacks.

RETRY_RESOLUTION = 20
"""Retry times are kept to 1/RETRY_RESOLUTION of the backoff ceiling (a power of two of seconds,
never under 1 s) while the failures fit MAX_GROUPS groups that way."""
MAX_GROUPS = 160
"""Most groups pack writes (see the bound above)."""
CEILING_SHARE = 4
WAIT_SHARE = 2
"""Coarser grids put a retry off by less than 1/CEILING_SHARE of its backoff ceiling or
1/WAIT_SHARE of the wait it had left (see max_delay)."""
SATURATED = 1 + math.ceil(math.log2(BACKOFF_CAP / BACKOFF_BASE))
"""The attempts count from which the backoff ceiling is BACKOFF_CAP."""


def max_delay(attempts: int, wait: float) -> float:
    """The longest pack puts off a retry ``wait`` seconds away (bar the last resorts above)."""
    return max(1.0, ceiling(attempts) / CEILING_SHARE, wait / WAIT_SHARE)


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


def _exponent(seconds: float) -> int:
    """The largest p with 2**p <= seconds (at least 0)."""
    return max(1, int(seconds)).bit_length() - 1


_Entry = tuple[str, int, int | None, int, int]
"""(reason, attempts, retry second or None, finest and coarsest grid exponent)."""
_Level = tuple[int, int, int]
"""(grid level, attempts merging: 0 none, 1 past the cap, 2 all, grid exponent floor)."""


def _key(entry: _Entry, level: _Level) -> tuple[str, int, int | None]:
    reason, attempts, second, finest, coarsest = entry
    step, merge, floor = level
    bucket = (attempts, min(attempts, SATURATED), 0)[merge]
    if second is None:
        return reason, bucket, None
    if coarsest < 0:  # already due: kept as it is
        return reason, bucket, second
    size = 1 << max(min(finest + step, coarsest), floor)
    return reason, bucket, -(-second // size) * size


def _levels(entries: Collection[_Entry]) -> list[_Level]:
    """Ever coarser groupings, from the finest to one that fits MAX_GROUPS (see above)."""
    timed = [e for e in entries if e[2] is not None and e[4] >= 0]
    steps = max((coarsest - finest for _, _, _, finest, coarsest in timed), default=0)
    levels = [(step, 0, 0) for step in range(steps + 1)]
    levels.append((steps, 1, 0))
    if timed:
        first = min(e[2] for e in timed if e[2] is not None)
        span = max(e[2] for e in timed if e[2] is not None) - first + 1
        top = max(span.bit_length(), max(e[4] for e in timed))
        levels += [(steps, 1, floor) for floor in range(1, top + 1)]
        levels.append((steps, 2, top))
    else:
        levels.append((steps, 2, 0))
    return levels


def pack(failures: Mapping[str, Failure], *, now: datetime.datetime) -> list[dict[str, object]]:
    """Every failure (keyed by pin identity) in the compact status form, written at ``now``."""
    due = math.ceil(now.timestamp())
    pins: dict[_Entry, list[int]] = {}
    for key, failure in failures.items():
        at, attempts = failure.next_retry_at, failure.attempts
        entry: _Entry
        if at is None:
            entry = (failure.reason, attempts, None, 0, 0)
        elif at <= now:
            entry = (failure.reason, attempts, due, 0, -1)
        else:
            wait = (at - now).total_seconds()
            finest = _exponent(ceiling(attempts) / RETRY_RESOLUTION)
            coarsest = max(finest, _exponent(max_delay(attempts, wait)))
            entry = (failure.reason, attempts, math.ceil(at.timestamp()), finest, coarsest)
        pins.setdefault(entry, []).append(pin_hash(key))
    levels = _levels(pins)

    def fits(level: _Level) -> bool:
        return len({_key(entry, level) for entry in pins}) <= MAX_GROUPS

    # The first level that fits (binary search: coarser levels make no more groups).
    low, high = (-1, 0) if fits(levels[0]) else (0, len(levels) - 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(levels[middle]) else (middle, high)
    groups: dict[tuple[str, int, int | None], list[int]] = {}
    most: dict[tuple[str, int, int | None], int] = {}
    for entry, hashes in pins.items():
        group = _key(entry, levels[high])
        groups.setdefault(group, []).extend(hashes)
        most[group] = max(most.get(group, 0), entry[1])
    packed: list[dict[str, object]] = []
    for group in sorted(groups, key=lambda g: (g[0], most[g], g[2] or 0)):
        reason, _, second = group
        out: dict[str, object] = {"reason": reason, "attempts": most[group]}
        if second is not None:
            when = datetime.datetime.fromtimestamp(second, datetime.UTC)
            out["nextRetryAt"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        packed.append(out | {"pins": _encode_hashes(groups[group])})
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
