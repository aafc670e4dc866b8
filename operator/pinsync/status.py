"""Typed, read-only views of a StorageBackend's and a PinSet's status.

The status is what the API server returned: any field may be absent (a new object, one written
by an older operator) or null (merge-patched away). The views read it once, with those defaults
applied, so a reconcile pass asks ``view.counts.missing`` or ``view.conditions.is_true("Healthy")``
instead of chaining ``.get(...) or {}`` wherever it looks. A pass builds one view of its object
and a new one after each write; a view never changes, nor writes anything.

The annotations a user (or ``kubectl pinsync``) sets to ask for something are named here too,
with the status field that echoes each once handled.

Pure code: no Kubernetes client, no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pinsync.dirty import DirtyState

MARK_DIRTY = "pinsync.io/mark-dirty"
SYNC_REQUESTED_AT = "pinsync.io/sync-requested-at"
HEALTH_REQUESTED_AT = "pinsync.io/health-requested-at"
"""Any new value asks for a health check now; echoed in ``status.lastHandledHealthRequest``."""
RESTORE_REQUESTED_AT = "pinsync.io/restore-requested-at"
"""On a PinSet: any new value asks for a restore now; echoed in ``status.restoreRequestedAt``."""

ECHOES = {
    MARK_DIRTY: "lastHandledMarkDirty",
    SYNC_REQUESTED_AT: "lastHandledSyncRequest",
    HEALTH_REQUESTED_AT: "lastHandledHealthRequest",
    RESTORE_REQUESTED_AT: "restoreRequestedAt",
}
"""The status field echoing each annotation's value once the operator handled it."""


def _status(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("status") or {}


def _block(status: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = status.get(field)
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int:
    return int(value or 0)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


_READERS: dict[str, Callable[[Any], Any]] = {
    "int": _int,
    "int | None": _optional_int,
    "float | None": _optional_float,
    "str": str,
    "str | None": _optional_str,
    "bool": bool,
    "Mapping[str, str | None]": _mapping,
}

Record = TypeVar("Record")


def read(cls: type[Record], raw: Mapping[str, Any]) -> Record:
    """A record of plain fields from its status block: each field from the camelCase key of its
    name, absent and null read as the field's empty value (0, None, False, {})."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    return cls(**{f.name: _READERS[str(f.type)](raw.get(_camel(f.name))) for f in fields})


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.title() for word in rest)


def parse_time(text: str | None) -> datetime.datetime | None:
    """An RFC 3339 time as the API server stores it (``...Z``); None if absent or malformed."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class Conditions:
    """``status.conditions``, looked up by type."""

    items: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def of(cls, status: Mapping[str, Any]) -> Conditions:
        return cls(tuple(c for c in status.get("conditions") or () if isinstance(c, Mapping)))

    def get(self, type_: str) -> Mapping[str, Any] | None:
        return next((c for c in self.items if c.get("type") == type_), None)

    def status_of(self, type_: str) -> str | None:
        """``"True"``, ``"False"``, ``"Unknown"``, or None if there is no such condition."""
        found = self.get(type_)
        return None if found is None else found.get("status")

    def is_true(self, type_: str) -> bool:
        return self.status_of(type_) == "True"

    def is_false(self, type_: str) -> bool:
        return self.status_of(type_) == "False"

    def reason_of(self, type_: str) -> str | None:
        found = self.get(type_)
        return None if found is None else found.get("reason")


@dataclasses.dataclass(frozen=True)
class Failures:
    """Failures as a status keeps them: the first few listed in full, all of them packed.

    :func:`pinsync.reconciling.reporting.failures_of` unpacks them for the pins of a pass.
    """

    listed: tuple[Mapping[str, Any], ...] = ()
    retries: Any = None

    @classmethod
    def of(cls, status: Mapping[str, Any], listed: str, retries: str) -> Failures:
        return cls(tuple(status.get(listed) or ()), status.get(retries))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Counts:
    """A backend's ``status.counts``."""

    desired: int = 0
    present: int = 0
    missing: int = 0
    failed: int | None = None
    """Pins that failed (None: not recorded)."""
    prune_failed: int | None = None
    """Written only by passes that prune (None: absent)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LastSync:
    """``status.lastSync``: the last finished sync (and the start of a running one)."""

    started_at: str | None = None
    finished_at: str | None = None
    result: str | None = None
    """``Succeeded`` or ``Failed``."""
    uploaded: int | None = None
    bytes: int | None = None
    token: int | None = None
    """The dirty token the sync started from."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LastAudit:
    finished_at: str | None = None
    missing: int = 0
    damaged: int = 0
    deep: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class HealthCheck:
    finished_at: str | None = None
    latency_ms: float | None = None
    """None: unknown (the storage failed outside a check)."""

    @classmethod
    def of(cls, raw: Any) -> HealthCheck:
        if not isinstance(raw, Mapping):  # before checks recorded their latency: a timestamp
            return cls(finished_at=_optional_str(raw) if raw else None)
        return read(cls, raw)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SourceEntry:
    """One PinSet's share of a backend (``status.sources[]``), as of the backend's last sync."""

    name: str
    digest: str | None = None
    pins: int = 0
    present: int = 0
    failed: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Marked:
    """``status.marked``: what the level marks last accounted for."""

    generation: int | None = None
    credentials_version: str | None = None
    sources: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    """PinSet name -> the digest accounted for (None: written away, the PinSet is gone)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Echoed:
    """What an object echoes of the requests (annotations) the operator handled."""

    echoes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Annotation -> the value of it the operator last handled."""

    def handled(self, annotation: str) -> str | None:
        """The value of ``annotation`` the operator last handled (None: never)."""
        return self.echoes.get(annotation)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackendStatus(Echoed):
    """A StorageBackend's status, read once."""

    dirty: DirtyState = dataclasses.field(default_factory=DirtyState)
    conditions: Conditions = Conditions()
    phase: str | None = None
    observed_generation: int | None = None
    counts: Counts = Counts()
    last_sync: LastSync = LastSync()
    last_audit: LastAudit = LastAudit()
    last_health_check: HealthCheck = HealthCheck()
    learned: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Facts the backend learned about itself (a trusted host key...), kept across restarts."""
    failures: Failures = Failures()
    sources: tuple[SourceEntry, ...] = ()
    marked: Marked | None = None
    """None: no level mark accounted for anything yet (a new backend)."""
    usage: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    bytes_transferred: int | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any] | None) -> BackendStatus:
        status = _status(obj)
        marked = status.get("marked")
        return cls(
            dirty=DirtyState.from_status(status),
            conditions=Conditions.of(status),
            phase=_optional_str(status.get("phase")),
            observed_generation=status.get("observedGeneration"),
            counts=read(Counts, _block(status, "counts")),
            last_sync=read(LastSync, _block(status, "lastSync")),
            last_audit=read(LastAudit, _block(status, "lastAudit")),
            last_health_check=HealthCheck.of(status.get("lastHealthCheck")),
            learned=dict(_block(status, "learned")),
            failures=Failures.of(status, "failures", "retries"),
            sources=tuple(read(SourceEntry, s) for s in status.get("sources") or ()),
            marked=read(Marked, marked) if isinstance(marked, Mapping) else None,
            echoes=_echoes(status),
            usage=dict(_block(status, "usage")),
            bytes_transferred=status.get("bytesTransferred"),
        )

    def source(self, name: str) -> SourceEntry | None:
        """The entry of PinSet ``name``, if the last sync recorded one."""
        return next((s for s in self.sources if s.name == name), None)

    @property
    def current(self) -> bool:
        """Whether the per-PinSet entries are still what the storage holds.

        They are while the backend is clean, and also while it stays dirty for the same mark
        its last sync answered (pins of one PinSet that keep failing): those failures must not
        make every other PinSet of the backend unready. A newer mark (an audit that found
        objects missing, a forced sync) may concern any PinSet, so no entry counts until it is
        synced.
        """
        token = self.last_sync.token
        return not self.dirty.dirty or (token is not None and self.dirty.token == token)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinSetCounts:
    pins: int = 0
    backends: int = 0
    synced_backends: int = 0
    failed: int = 0
    restored: int = 0
    """Cumulative: every pin restored onto the node since the PinSet was created."""
    restore_failed: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinSetStatus(Echoed):
    """A PinSet's status, read once."""

    conditions: Conditions = Conditions()
    counts: PinSetCounts = PinSetCounts()
    failures: Failures = Failures()
    """Pins the node could not pin."""
    restore_failures: Failures = Failures()
    """Lost pins no backend could give back (their own backoff)."""

    @classmethod
    def of(cls, obj: Mapping[str, Any] | None) -> PinSetStatus:
        status = _status(obj)
        return cls(
            conditions=Conditions.of(status),
            counts=read(PinSetCounts, _block(status, "counts")),
            failures=Failures.of(status, "failures", "retries"),
            restore_failures=Failures.of(status, "restoreFailures", "restoreRetries"),
            echoes=_echoes(status),
        )

    @property
    def restore_requested_at(self) -> str | None:
        """The last restore request handled (echo of :data:`RESTORE_REQUESTED_AT`)."""
        return self.handled(RESTORE_REQUESTED_AT)


def _echoes(status: Mapping[str, Any]) -> dict[str, str]:
    return {a: str(status[f]) for a, f in ECHOES.items() if status.get(f) is not None}
