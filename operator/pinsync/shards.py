"""The scale-out's work units, pure: shards of a plan, their orders, their claims and reports.

The operator plans a sync and splits the pins to transfer into S shards by a hash of each pin's
identity (its CIDv1). Each shard is published as two objects in the backend's namespace, named
alike: a ConfigMap holding its *order* (the pins, compressed: never an object per pin) and a
``coordination.k8s.io/v1`` Lease, the *claim*. A worker claims a shard by writing its identity
into the Lease with the resourceVersion it read (compare-and-swap), renews it every few seconds
and, in the same write, *reports* what became of each pin so far. Because every report is a
compare-and-swap on the Lease, a worker that lost its claim (paused past its lease, partitioned)
cannot write one: its late results are refused by the API server itself, and ``leaseTransitions``
tells the operator which claim a report belongs to.

No I/O here: :mod:`pinsync.scaleout` moves these to and from the API server.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

ROLE_LABEL = "pinsync.io/role"
BACKEND_UID_LABEL = "pinsync.io/backend-uid"
MANAGED = {"app.kubernetes.io/managed-by": "pinsync", ROLE_LABEL: "shard"}
SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED.items())
PLAN_ANNOTATION = "pinsync.io/plan"
REPORT_ANNOTATION = "pinsync.io/report"
ORDER_KEY = "order"

MAX_PINS_PER_SHARD = 5_000
"""An order stays far below a ConfigMap's 1 MiB (a pin costs ~70 bytes before compression),
and a report's per-pin outcomes below a Lease's 256 KiB of annotations."""
MAX_FAILURES_REPORTED = 1_000
"""Failures a report details per shard (reason, message); a failed pin beyond those is
reported as not tried, so it is retried at the next pass instead of after a backoff."""

UNTRIED, UPLOADED, PRESENT, FAILED = ".", "u", "p", "f"
"""Per pin of an order, what its claim holder made of it (one character each)."""


def shard_of(key: str, count: int) -> int:
    """The shard of a pin identity: stable across processes and releases (not ``hash()``)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_count(pins: int, minimum: int) -> int:
    """Shards for ``pins`` transfers: at least ``minimum`` (so that that many workers can
    share the work), more when a shard would exceed MAX_PINS_PER_SHARD, never more than pins."""
    if pins <= 0:
        return 0
    return min(pins, max(minimum, math.ceil(pins / MAX_PINS_PER_SHARD)))


def split(keys: Sequence[str], count: int) -> list[list[str]]:
    """``keys`` by shard (each in the order given)."""
    groups: list[list[str]] = [[] for _ in range(count)]
    for key in keys:
        groups[shard_of(key, count)].append(key)
    return groups


def _pack(value: Any) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 6)


def _unpack(data: bytes) -> Any:
    return json.loads(zlib.decompress(data))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pin:
    key: str
    """Identity (CIDv1): what the operator settles the outcome under."""
    name: str
    """The spelling the backend stores it under."""
    pinsets: tuple[str, ...]
    urls: tuple[str, ...]
    """Kubo APIs that hold it, the planner's choice first (a worker may prefer one nearer)."""
    on_node: bool
    """Recursively pinned on the node: its CAR needs no block count to be checked."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Order:
    """What one shard must do: transfer these pins (each absent at planning time)."""

    pins: tuple[Pin, ...]
    check_first: bool = False
    """Published over a withdrawn plan whose workers may have written some of these pins:
    each is looked for before it is written."""

    def encode(self) -> bytes:
        pinsets: dict[tuple[str, ...], int] = {}
        urls: dict[str, int] = {}
        rows = []
        for pin in self.pins:
            sets = pinsets.setdefault(pin.pinsets, len(pinsets))
            where = [urls.setdefault(url, len(urls)) for url in pin.urls]
            name = "" if pin.name == pin.key else pin.name
            rows.append([pin.key, name, sets, where, int(pin.on_node)])
        raw = {"pinsets": list(pinsets), "urls": list(urls), "pins": rows}
        return _pack({**raw, "checkFirst": self.check_first})

    @classmethod
    def decode(cls, data: bytes) -> Order:
        raw = _unpack(data)
        pinsets = [tuple(p) for p in raw["pinsets"]]
        urls = raw["urls"]
        pins = tuple(
            Pin(
                key=key,
                name=name or key,
                pinsets=pinsets[sets],
                urls=tuple(urls[u] for u in where),
                on_node=bool(on_node),
            )
            for key, name, sets, where, on_node in raw["pins"]
        )
        return cls(pins=pins, check_first=bool(raw.get("checkFirst")))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """The Lease annotation naming what a shard belongs to."""

    backend: str
    uid: str
    plan: str
    """Unique per published plan (a new plan replaces an unfinished one)."""
    token: int
    """The dirty token the plan was made at."""
    shard: int
    shards: int
    pins: int

    def encode(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Plan:
        return cls(**json.loads(text))


@dataclasses.dataclass(kw_only=True)
class Report:
    """What a claim holder made of its shard so far; written only with its claim."""

    holder: str
    transitions: int
    """The Lease's ``leaseTransitions`` of the claim this report belongs to."""
    outcomes: bytearray
    """One of UNTRIED/UPLOADED/PRESENT/FAILED per pin of the order, in order."""
    done: bool = False
    bytes: int = 0
    failures: dict[int, tuple[str, str, float]] = dataclasses.field(default_factory=dict)
    """Order index -> (reason, message, retry after seconds)."""
    stopped: bool = False
    """The holder stopped after storage errors in a row: the untried pins wait a pass."""
    refused: tuple[str, str] | None = None
    """(reason, message) of the service refusing every write."""
    backend_errors: int = 0

    @classmethod
    def fresh(cls, holder: str, transitions: int, pins: int) -> Report:
        return cls(
            holder=holder, transitions=transitions, outcomes=bytearray(UNTRIED * pins, "ascii")
        )

    def encode(self) -> str:
        raw = dataclasses.asdict(self)
        raw["outcomes"] = self.outcomes.decode("ascii")
        raw["failures"] = [[i, *f] for i, f in sorted(self.failures.items())]
        return base64.b64encode(_pack(raw)).decode()

    @classmethod
    def decode(cls, text: str) -> Report:
        raw = _unpack(base64.b64decode(text))
        raw["failures"] = {int(i): (r, m, float(a)) for i, r, m, a in raw["failures"]}
        raw["refused"] = tuple(raw["refused"]) if raw.get("refused") else None
        raw["outcomes"] = bytearray(raw["outcomes"], "ascii")
        return cls(**raw)

    def outcome(self, index: int) -> str:
        return chr(self.outcomes[index])

    def record(self, index: int, outcome: str, failure: tuple[str, str, float] | None) -> None:
        if outcome == FAILED and failure is not None:
            if len(self.failures) >= MAX_FAILURES_REPORTED:
                return  # left UNTRIED: retried next pass, without a backoff
            self.failures[index] = failure
        self.outcomes[index] = ord(outcome)


def lease_name(backend: str, shard: int) -> str:
    """``pinsync-<backend>-s<shard>`` (a DNS subdomain: backend names are at most 253)."""
    return f"pinsync-{backend[:200]}-s{shard}"


def now_micro() -> str:
    """A Lease's MicroTime, now."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def holder(lease: Mapping[str, Any]) -> str:
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def transitions(lease: Mapping[str, Any]) -> int:
    return int((lease.get("spec") or {}).get("leaseTransitions") or 0)


def plan_of(lease: Mapping[str, Any]) -> Plan | None:
    text = (lease["metadata"].get("annotations") or {}).get(PLAN_ANNOTATION)
    return Plan.decode(text) if text else None


def report_of(lease: Mapping[str, Any]) -> Report | None:
    """The report of the lease's current claim; None if there is none (yet)."""
    text = (lease["metadata"].get("annotations") or {}).get(REPORT_ANNOTATION)
    if not text:
        return None
    report = Report.decode(text)
    if report.holder != holder(lease) or report.transitions != transitions(lease):
        return None  # a released claim's: its work is taken up again
    return report


def with_claim(
    lease: Mapping[str, Any], identity: str, report: Report | None, *, duration: int
) -> dict[str, Any]:
    """``lease`` (as read: its resourceVersion is the precondition) claimed by ``identity``
    (empty: released) with ``report``."""
    meta = dict(lease["metadata"])
    annotations = dict(meta.get("annotations") or {})
    if report is None:
        annotations.pop(REPORT_ANNOTATION, None)
    else:
        annotations[REPORT_ANNOTATION] = report.encode()
    meta["annotations"] = annotations
    spec = dict(lease.get("spec") or {})
    now = now_micro()
    if identity and identity != holder(lease):
        spec["leaseTransitions"] = transitions(lease) + 1
        spec["acquireTime"] = now
    spec.update(holderIdentity=identity or None, leaseDurationSeconds=duration, renewTime=now)
    return {**lease, "metadata": meta, "spec": spec}


def new_lease(
    namespace: str, owner: Mapping[str, Any], plan: Plan, *, duration: int
) -> dict[str, Any]:
    """An unclaimed Lease for shard ``plan.shard``, owned by the StorageBackend ``owner``
    (garbage-collected with it)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": _meta(namespace, owner, plan, {PLAN_ANNOTATION: plan.encode()}),
        "spec": {"leaseDurationSeconds": duration, "leaseTransitions": 0},
    }


def new_order(namespace: str, owner: Mapping[str, Any], plan: Plan, order: bytes) -> dict[str, Any]:
    """The ConfigMap of shard ``plan.shard``, holding ``order`` (:meth:`Order.encode`)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(namespace, owner, plan, {PLAN_ANNOTATION: plan.encode()}),
        "binaryData": {ORDER_KEY: base64.b64encode(order).decode()},
    }


def order_of(config_map: Mapping[str, Any]) -> Order:
    return Order.decode(base64.b64decode(config_map["binaryData"][ORDER_KEY]))


def _meta(
    namespace: str, owner: Mapping[str, Any], plan: Plan, annotations: dict[str, str]
) -> dict[str, Any]:
    owner_meta = owner["metadata"]
    return {
        "name": lease_name(plan.backend, plan.shard),
        "namespace": namespace,
        "labels": {**MANAGED, BACKEND_UID_LABEL: plan.uid},
        "annotations": annotations,
        "ownerReferences": [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner_meta["name"],
                "uid": owner_meta["uid"],
            }
        ],
    }


def backend_selector(uid: str) -> str:
    return f"{SELECTOR},{BACKEND_UID_LABEL}={uid}"
