"""Which PinSets target a backend, and which pins each of them resolves to.

Both reconcilers use this: a PinSet to report on its targets, a backend to compute its desired
pins. A source's digest (over its sorted pins) is recorded in the backend's status after each
sync, so a changed PinSet -- or a node whose pin list grew -- shows up as a differing digest:
level-based, and therefore correct across operator restarts.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from pinsync import cids, kube, selectors
from pinsync.reconciling.context import Context


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    api_url: str
    pins: tuple[str, ...]
    invalid: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.pins).encode()).hexdigest()[:16]


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


def resolve(ctx: Context, pinset: Mapping[str, Any], node_pins: Mapping[str, str]) -> Source:
    """The PinSet's pins: its valid explicit CIDs plus, with ``fromNode``, the node's pins."""
    spec = pinset.get("spec") or {}
    valid, invalid = cids.partition(spec.get("cids") or ())
    pins = dict.fromkeys(valid)
    from_node = spec.get("fromNode")
    if from_node is not None:
        prefix = from_node.get("namePrefix") or ""
        pins.update(dict.fromkeys(c for c, n in node_pins.items() if n.startswith(prefix)))
    return Source(
        name=pinset["metadata"]["name"],
        api_url=api_url(ctx, pinset),
        pins=tuple(sorted(pins)),
        invalid=tuple(invalid),
    )


async def node_pins(ctx: Context, url: str, cache: dict[str, dict[str, str]]) -> dict[str, str]:
    """Recursive pins of the node at ``url`` (cid -> name), fetched once per reconcile."""
    if url not in cache:
        cache[url] = await ctx.kubo(url).pins()
    return cache[url]


async def for_backend(
    ctx: Context, backend: Mapping[str, Any], cache: dict[str, dict[str, str]]
) -> list[Source]:
    namespace = backend["metadata"]["namespace"]
    found = []
    for pinset in await ctx.api.list(kube.PINSETS, namespace):
        if pinset["metadata"].get("deletionTimestamp") or not targets(pinset, backend):
            continue
        node = await node_pins(ctx, api_url(ctx, pinset), cache) if needs_node(pinset) else {}
        found.append(resolve(ctx, pinset, node))
    return sorted(found, key=lambda s: s.name)


def needs_node(pinset: Mapping[str, Any]) -> bool:
    return (pinset.get("spec") or {}).get("fromNode") is not None
