"""Restore decisions: whether a PinSet may restore now, from which backends, in what order, and
what to record when every backend failed.

Pure code over plain values (the objects' dicts as the API returns them), like
:mod:`pinsync.planner`, so every rule is unit-testable without Kubernetes, Kubo or a backend.
The streaming itself is :mod:`pinsync.restoring`; the kopf glue is in
:mod:`pinsync.reconciling.pinsets`.

Why the order is what it is: a restore reads a whole CAR, so the cheapest source should go
first -- the user says which with ``spec.restorePriority`` (lower first; an S3 bucket in the same
datacentre before an FTP server across the ocean). Among equals, a backend whose status says it
holds every pin of this PinSet's current version comes first (the others may lack the pin and
cost a lookup), then a healthy one (an unhealthy one is not skipped: its health check includes a
write probe, and a full disk still serves reads -- unless the check found it unreachable).
Suspended and Stalled backends are never used: the user asked for nothing to be done with them,
or they cannot be configured -- except one Stalled only because its service takes no writes
(``WritesDisabled``: Storacha since 2026-05-15), which still serves every read.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from multiformats import CID

from pinsync import cids, planner, reasons
from pinsync.status import RESTORE_REQUESTED_AT, BackendStatus, PinSetStatus

AUTO, MANUAL = "Auto", "Manual"
"""``spec.restore``: restore lost pins by itself, or only when asked by the annotation."""
STILL_READS = frozenset({reasons.WRITES_DISABLED.name})
"""Stalled reasons of a backend that still serves reads: a restore may use it."""
REQUESTED_AT = RESTORE_REQUESTED_AT
"""Annotation: any new value restores now (also under ``Manual``); echoed in
``status.restoreRequestedAt`` once the restore it asked for has finished."""
DEFAULT_PRIORITY = 100
"""``spec.restorePriority`` of a StorageBackend that does not set it."""
UNREACHABLE = frozenset({reasons.UNREACHABLE.name})
"""Health-check reasons that rule a backend out as a restore source until its next check."""


def policy(pinset: Mapping[str, Any]) -> str:
    return str((pinset.get("spec") or {}).get("restore") or AUTO)


def request(pinset: Mapping[str, Any]) -> str | None:
    """The restore request not yet handled (the annotation's value), if any."""
    value = (pinset["metadata"].get("annotations") or {}).get(REQUESTED_AT)
    handled = PinSetStatus.of(pinset).restore_requested_at
    return None if value is None or value == handled else str(value)


def allowed(pinset: Mapping[str, Any]) -> bool:
    """Whether this pass may restore: always under Auto, under Manual only when asked."""
    return policy(pinset) == AUTO or request(pinset) is not None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Candidate:
    """A backend a lost pin may be restored from."""

    name: str
    priority: int
    complete: bool
    """Its status says it holds every pin of the PinSet's current version."""
    healthy: bool


def candidate(
    backend: Mapping[str, Any], source_name: str, digest: str, pins: int
) -> Candidate | None:
    """The backend as a restore source, or None if it must not be used (suspended, Stalled)."""
    spec, view = backend.get("spec") or {}, BackendStatus.of(backend)
    conds = view.conditions
    if conds.is_true("Stalled") and conds.reason_of("Stalled") not in STILL_READS:
        return None
    if spec.get("suspend"):
        return None
    if conds.is_false("Healthy") and conds.reason_of("Healthy") in UNREACHABLE:
        return None  # reads would wait out the same connect timeout, once for every pin
    entry = view.source(source_name)
    complete = entry is not None and entry.digest == digest and entry.present == pins
    return Candidate(
        name=backend["metadata"]["name"],
        priority=int(spec.get("restorePriority", DEFAULT_PRIORITY)),
        complete=complete,
        healthy=not conds.is_false("Healthy"),
    )


def ranked(
    backends: Sequence[Mapping[str, Any]],
    source_name: str,
    digest: str,
    pins: int,
    *,
    first: str | None = None,
) -> list[Candidate]:
    """Usable backends in the order a lost pin is looked for (see the module docstring);
    ``first`` before any other (a ``fromBackend`` PinSet's source, which holds every pin)."""
    found = [c for b in backends if (c := candidate(b, source_name, digest, pins)) is not None]
    return sorted(
        found, key=lambda c: (c.name != first, c.priority, not c.complete, not c.healthy, c.name)
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attempt:
    """What one backend did for one pin."""

    backend: str
    reason: str
    message: str = ""


def verdict(attempts: Sequence[Attempt]) -> tuple[str, str]:
    """``(reason, message)`` of a restore that failed on every backend it tried.

    ``NotOnAnyBackend`` when none had the pin; otherwise the reason of the first backend that had
    it but failed (the most preferred: what to fix first), and every backend's outcome in the
    message.
    """
    if not attempts:
        return reasons.NOT_ON_ANY_BACKEND.name, "no usable backend (suspended, Stalled or none)"
    found = [a for a in attempts if a.reason != reasons.PIN_NOT_FOUND.name]
    outcomes = "; ".join(
        f"{a.backend}: {a.reason}" + (f" ({a.message})" if a.message else "") for a in attempts
    )
    if not found:
        return reasons.NOT_ON_ANY_BACKEND.name, f"not on {', '.join(a.backend for a in attempts)}"
    return found[0].reason, outcomes


def due(failure: planner.Failure | None, now: datetime.datetime) -> bool:
    """Whether a pin may be restored now: it never failed, or its backoff is over."""
    return failure is None or failure.next_retry_at is None or failure.next_retry_at <= now


def forgiven(failures: Mapping[str, planner.Failure]) -> dict[str, planner.Failure]:
    """The failures with their backoff lifted (attempts kept): a request means try now."""
    return {k: dataclasses.replace(f, next_retry_at=None) for k, f in failures.items()}


def spellings(cid: str) -> list[str]:
    """The names a backend may store ``cid`` under: as spelled, as its CIDv1 identity and, for
    a dag-pb/sha2-256 pin, as CIDv0 (objects are named by the first PinSet's spelling)."""
    names = [cid]
    identity = cids.key(cid)
    if identity is None:
        return names
    names.append(identity)
    parsed = CID.decode(identity)
    if parsed.codec.name == "dag-pb" and parsed.hashfun.name == "sha2-256":
        names.append(str(parsed.set(version=0, base="base58btc")))
    return list(dict.fromkeys(names))
