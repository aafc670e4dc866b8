"""Which PinSets target a backend, and which pins each of them resolves to.

Both reconcilers use this: a PinSet to report on its targets, a backend to compute its desired
pins. A source's digest (over its sorted pins) is recorded in the backend's status after each
sync, so a changed PinSet -- or a node whose pin list grew -- shows up as a differing digest:
level-based, and therefore correct across operator restarts.

Pins are identified by :func:`pinsync.cids.key` (CIDv1), so ``Qm…`` and ``bafy…`` of one DAG
are one pin; ``names`` keeps the spelling the PinSet used (or Kubo printed) for display and for
the names of new objects.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Mapping
from typing import Any

from pinsync import cids, kube, selectors
from pinsync.reconciling.context import Context

OWN_PIN_PREFIX = "pinsync/"
"""Pins the operator makes on Kubo are named ``pinsync/<namespace>/<pinset>``."""


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    api_url: str
    pins: tuple[str, ...]
    """Identities (CIDv1), sorted."""
    invalid: tuple[str, ...] = ()
    names: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)
    """Identity -> spelling, where it differs from the identity."""

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.pins).encode()).hexdigest()[:16]

    def spelling(self, key: str) -> str:
        return self.names.get(key, key)


def targets(pinset: Mapping[str, Any], backend: Mapping[str, Any]) -> bool:
    spec = pinset.get("spec") or {}
    name = backend["metadata"]["name"]
    if name in (spec.get("backends") or ()):
        return True
    selector = spec.get("backendSelector")
    labels = backend["metadata"].get("labels") or {}
    return selector is not None and selectors.matches(selector, labels)


def api_url(ctx: Context, pinset: Mapping[str, Any]) -> str:
    return str(
        ((pinset.get("spec") or {}).get("ipfs") or {}).get("apiUrl") or ctx.settings.ipfs_api_url
    )


@dataclasses.dataclass(frozen=True)
class Explicit:
    """A PinSet's ``spec.cids``, parsed once per generation."""

    pins: dict[str, str]
    invalid: tuple[str, ...]
    sorted_keys: tuple[str, ...]


def explicit(ctx: Context, pinset: Mapping[str, Any]) -> Explicit:
    meta = pinset["metadata"]
    stamp = (meta.get("uid"), meta.get("generation"))
    cached = ctx.parsed.get((meta["namespace"], meta["name"]))
    if cached is not None and cached[0] == stamp and stamp != (None, None):
        found: Explicit = cached[1]
        return found
    valid, invalid = cids.partition((pinset.get("spec") or {}).get("cids") or ())
    parsed = Explicit(valid, tuple(invalid), tuple(sorted(valid)))
    ctx.parsed[(meta["namespace"], meta["name"])] = (stamp, parsed)
    return parsed


def from_node(pinset: Mapping[str, Any], node_pins: Mapping[str, str]) -> dict[str, str]:
    """The node's pins a ``fromNode`` PinSet takes: those under its prefix, but never pins the
    operator made for PinSets of other namespaces."""
    spec = pinset.get("spec") or {}
    prefix = (spec.get("fromNode") or {}).get("namePrefix") or ""
    own = f"{OWN_PIN_PREFIX}{pinset['metadata']['namespace']}/"

    def taken(name: str) -> bool:
        if prefix:
            return name.startswith(prefix)
        return not name.startswith(OWN_PIN_PREFIX) or name.startswith(own)

    return {key: key for key, name in node_pins.items() if taken(name)}


def resolve(ctx: Context, pinset: Mapping[str, Any], node_pins: Mapping[str, str]) -> Source:
    """The PinSet's pins: its valid explicit CIDs plus, with ``fromNode``, the node's pins."""
    parsed = explicit(ctx, pinset)
    keys = parsed.sorted_keys
    if needs_node(pinset):
        taken = from_node(pinset, node_pins)
        if taken.keys() - parsed.pins.keys():
            keys = tuple(sorted(parsed.pins.keys() | taken.keys()))
    return Source(
        name=pinset["metadata"]["name"],
        api_url=api_url(ctx, pinset),
        pins=keys,
        invalid=parsed.invalid,
        names={k: v for k, v in parsed.pins.items() if k != v},
    )


async def for_backend(ctx: Context, backend: Mapping[str, Any]) -> list[Source]:
    namespace = backend["metadata"]["namespace"]
    found = []
    for pinset in await ctx.api.list(kube.PINSETS, namespace):
        if pinset["metadata"].get("deletionTimestamp") or not targets(pinset, backend):
            continue
        node = await ctx.node_pins(api_url(ctx, pinset)) if needs_node(pinset) else {}
        found.append(resolve(ctx, pinset, node))
    return sorted(found, key=lambda s: s.name)


def needs_node(pinset: Mapping[str, Any]) -> bool:
    return (pinset.get("spec") or {}).get("fromNode") is not None
