"""Status conditions, following the Kubernetes API conventions and kstatus.

This module is the only place that builds ``status.conditions``. Two rules matter to clients such
as ``kubectl wait``, Argo CD and Flux:

* ``lastTransitionTime`` changes only when a condition's *status* changes, never on a
  re-reconcile that changes nothing -- otherwise every resync would look like a transition and
  every status write would trigger another watch event.
* The kstatus trio is always written together: ``Ready`` (normal-true), and the abnormal-true
  ``Reconciling`` (work in progress) and ``Stalled`` (cannot progress without outside help).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict

Status = Literal["True", "False", "Unknown"]


class Condition(TypedDict, total=False):
    type: str
    status: Status
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


def now() -> str:
    """The current time in the RFC 3339 form the API server stores."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime.datetime:
    """The current time, to the second (what status timestamps can hold)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def condition(type_: str, status: bool | Status, reason: str, message: str = "") -> Condition:
    if isinstance(status, bool):
        status = "True" if status else "False"
    return Condition(type=type_, status=status, reason=reason, message=message)


def merge(
    current: Sequence[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    generation: int | None,
    at: str | None = None,
) -> list[Condition]:
    """Return ``current`` with ``updates`` applied, keeping transition times of unchanged ones.

    Conditions not mentioned in ``updates`` are kept as they are, in their original order.
    """
    at = at or now()
    result: dict[str, Condition] = {c["type"]: Condition(**c) for c in current or ()}  # type: ignore[typeddict-item]
    for update in updates:
        new = Condition(**update)
        old = result.get(new["type"])
        if old is not None and old.get("status") == new["status"] and "lastTransitionTime" in old:
            new["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            new["lastTransitionTime"] = at
        if generation is not None:
            new["observedGeneration"] = generation
        result[new["type"]] = new
    return list(result.values())


def ready(reason: str, message: str = "") -> list[Condition]:
    """The object reached its desired state."""
    return [
        condition("Ready", True, reason, message),
        condition("Reconciling", False, reason, message),
        condition("Stalled", False, reason, message),
    ]


def reconciling(reason: str, message: str = "") -> list[Condition]:
    """Work towards the desired state is in progress (or will be retried by itself)."""
    return [
        condition("Ready", False, reason, message),
        condition("Reconciling", True, reason, message),
        condition("Stalled", False, reason, message),
    ]


def stalled(reason: str, message: str = "") -> list[Condition]:
    """The object cannot progress until something outside the operator changes."""
    return [
        condition("Ready", False, reason, message),
        condition("Reconciling", False, reason, message),
        condition("Stalled", True, reason, message),
    ]


def unsynced(
    reason: str, message: str = "", *, trio: Callable[[str, str], list[Condition]] = reconciling
) -> list[Condition]:
    """``Synced`` False and the kstatus ``trio`` (``reconciling``: retried by itself, or
    ``stalled``) for one reason: a sync that did not reach its desired state."""
    return [synced(False, reason, message), *trio(reason, message)]


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def is_true(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.get("status") == "True"


def changes(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level status fields of ``desired`` that differ from ``current``.

    Writing only when something differs keeps re-reconciles silent: no write, no watch event,
    no loop of the operator waking itself up.
    """
    current = current or {}
    return {k: v for k, v in desired.items() if current.get(k) != v}


def patch(
    status: Mapping[str, Any],
    updates: Iterable[Condition],
    *,
    generation: int | None,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """The status merge patch applying condition ``updates`` and ``fields`` to ``status``:
    only the top-level fields that change (empty: nothing to write)."""
    desired = {
        "observedGeneration": generation,
        "conditions": merge(status.get("conditions"), updates, generation=generation),
        **fields,
    }
    return changes(status, desired)


def synced(is_synced: bool, reason: str, message: str = "") -> Condition:
    """A backend's ``Synced``: True exactly when it is not dirty."""
    return condition("Synced", is_synced, reason, message)


def readiness(missing: int, desired: int, *, reason: str = "Syncing") -> list[Condition]:
    """The kstatus trio of a usable backend: Ready unless desired pins are actually missing."""
    message = f"{desired - missing} of {desired} pins present"
    return reconciling(reason, message) if missing else ready("Synced", message)
