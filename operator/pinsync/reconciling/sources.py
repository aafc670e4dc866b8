"""Which PinSets target a backend, and which pins each of them resolves to.

Both reconcilers use this: a PinSet to report on its targets, a backend to compute its desired
pins. A source's digest (over its sorted pins) is recorded in the backend's status after each
sync, so a changed PinSet -- or a node whose pin list grew -- shows up as a differing digest:
level-based, and therefore correct across operator restarts.

Pins are identified by :func:`pinsync.cids.key` (CIDv1), so ``Qm…`` and ``bafy…`` of one DAG
are one pin, and kept as :class:`pinsync.pinlists.Keys`; ``explicit`` keeps the spelling the
PinSet used for display and for the names of new objects. A source is resolved once per
(PinSet generation, node pin list version) and cached, so the passes of a ``fromNode`` PinSet
over an unchanged node of a million pins cost nothing per pin.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pinsync import cids, kube, pinlists, selectors
from pinsync.reconciling import backendsource, clustersource
from pinsync.reconciling.context import OWN_PIN_PREFIX, Context, NodePins

__all__ = ["OWN_PIN_PREFIX", "Source"]


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    api_url: str
    pins: pinlists.Keys
    """Identities (CIDv1), sorted (a sequence of strings is converted)."""
    invalid: tuple[str, ...] = ()
    explicit: Mapping[str, str] | None = dataclasses.field(default=None, compare=False)
    """``spec.cids``: identity -> the spelling given; None: every pin is explicit."""
    export_urls: Callable[[str], list[str]] | None = dataclasses.field(default=None, compare=False)
    """Per pin, the Kubo APIs to export it from, best first (cluster peers holding it);
    default ``[api_url]``."""
    fetched: pinlists.Keys = dataclasses.field(default_factory=pinlists.Keys.empty, compare=False)
    """Pins the PinSet puts on the node itself besides ``explicit``: a ``fromBackend``
    listing's (restored from that backend)."""

    def __post_init__(self) -> None:
        if not isinstance(self.pins, pinlists.Keys):
            object.__setattr__(self, "pins", pinlists.Keys.of(self.pins))

    @property
    def digest(self) -> str:
        return self.pins.digest

    @functools.cached_property
    def listed(self) -> Mapping[str, str]:
        """The pins the PinSet lists itself (identity -> spelling): the ones it pins on the
        node and restores; a ``fromNode`` pin is on the node by definition."""
        if self.explicit is None:
            return pinlists.Spellings(self.pins, {})
        if not len(self.fetched):
            return self.explicit
        differing = {k: v for k, v in self.explicit.items() if k != v}
        return pinlists.Spellings(self.fetched.union(pinlists.Keys.of(self.explicit)), differing)

    def spelling(self, key: str) -> str:
        return self.explicit.get(key, key) if self.explicit is not None else key

    def urls_of(self, key: str) -> list[str]:
        if self.export_urls is None or (self.explicit and key in self.explicit):
            return [self.api_url]
        return self.export_urls(key)


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
    keys: pinlists.Keys


def explicit(ctx: Context, pinset: Mapping[str, Any]) -> Explicit:
    meta = pinset["metadata"]
    stamp = (meta.get("uid"), meta.get("generation"))
    cached = ctx.parsed.get((meta["namespace"], meta["name"]))
    if cached is not None and cached[0] == stamp and stamp != (None, None):
        found: Explicit = cached[1]
        return found
    valid, invalid = cids.partition((pinset.get("spec") or {}).get("cids") or ())
    parsed = Explicit(valid, tuple(invalid), pinlists.Keys.of(valid))
    ctx.parsed[(meta["namespace"], meta["name"])] = (stamp, parsed)
    return parsed


def from_node(pinset: Mapping[str, Any], node_pins: NodePins) -> pinlists.Keys:
    """The node's pins a ``fromNode`` PinSet takes: those under its prefix, but never pins the
    operator made for PinSets of other namespaces."""
    spec = pinset.get("spec") or {}
    prefix = (spec.get("fromNode") or {}).get("namePrefix") or ""
    return node_pins.select(prefix, pinset["metadata"]["namespace"])


def resolve(
    ctx: Context,
    pinset: Mapping[str, Any],
    node_pins: NodePins | None,
    cluster: clustersource.ClusterList | None = None,
    held: backendsource.BackendList | None = None,
) -> Source:
    """The PinSet's pins: its valid explicit CIDs plus, with ``fromNode``, the node's pins,
    with ``fromCluster``, the cluster's and, with ``fromBackend``, what that backend ``held``.

    Cached per (uid, generation, node, cluster and backend versions): those change in one
    place only.
    """
    meta = pinset["metadata"]
    node_version = node_pins.version if node_pins is not None and needs_node(pinset) else None
    cluster_version = cluster.version if cluster is not None else None
    stamp = (
        meta.get("uid"),
        meta.get("generation"),
        node_version,
        cluster_version,
        held.version if held is not None else None,
        api_url(ctx, pinset),
    )
    cached = ctx.resolved.get((meta["namespace"], meta["name"]))
    if cached is not None and cached[0] == stamp and stamp[:2] != (None, None):
        found: Source = cached[1]
        return found
    parsed = explicit(ctx, pinset)
    keys = parsed.keys
    if node_version is not None and node_pins is not None:
        keys = keys.union(from_node(pinset, node_pins))
    export_urls = None
    if cluster is not None:
        keys = keys.union(cluster.keys)
        export_urls = clustersource.export_urls(cluster, pinset, api_url(ctx, pinset))
    fetched = held.keys if held is not None else pinlists.Keys.empty()
    keys = keys.union(fetched)
    source = Source(
        name=meta["name"],
        api_url=api_url(ctx, pinset),
        pins=keys,
        invalid=parsed.invalid,
        explicit=parsed.pins,
        export_urls=export_urls,
        fetched=fetched,
    )
    ctx.resolved[(meta["namespace"], meta["name"])] = (stamp, source)
    return source


@dataclasses.dataclass(frozen=True)
class Read:
    """The pin sources a PinSet reads besides its own spec (None where it reads none)."""

    node: NodePins | None = None
    cluster: clustersource.ClusterList | None = None
    held: backendsource.BackendList | None = None


async def read_sources(
    ctx: Context, pinset: Mapping[str, Any], watcher: tuple[str, str, str]
) -> Read:
    """The node's, the cluster's and the source backend's pins a PinSet reads, watched by
    loop ``watcher`` so that it is woken when they change."""
    node = cluster = held = None
    if needs_node(pinset):
        url = api_url(ctx, pinset)
        ctx.watch_node(url, watcher)
        node = await ctx.node_pins(url)
    if clustersource.needs_cluster(pinset):
        clustersource.watch(ctx, pinset, watcher)
        cluster = await clustersource.read(ctx, pinset)
    if backendsource.needs_backend(pinset):
        backendsource.watch(ctx, pinset, watcher)
        held = await backendsource.read(ctx, pinset)
    return Read(node, cluster, held)


async def for_backend(ctx: Context, backend: Mapping[str, Any]) -> list[Source]:
    """The targeting PinSets' sources; the backend's loop watches the nodes they read."""
    meta = backend["metadata"]
    namespace = meta["namespace"]
    found = []
    for pinset in await ctx.api.list(kube.PINSETS, namespace):
        if pinset["metadata"].get("deletionTimestamp") or not targets(pinset, backend):
            continue
        watcher = (kube.STORAGEBACKENDS, namespace, meta["name"])
        read = await read_sources(ctx, pinset, watcher)
        found.append(resolve(ctx, pinset, read.node, read.cluster, read.held))
    return sorted(found, key=lambda s: s.name)


@dataclasses.dataclass(frozen=True)
class Desired:
    """What a backend should hold: the union of its sources' pins, and per pin (asked only for
    the pins a pass acts on) which PinSets want it, its spelling and the node to export from."""

    namespace: str
    sources: list[Source]
    keys: pinlists.Keys

    @classmethod
    def of(cls, namespace: str, found: Iterable[Source]) -> Desired:
        found = list(found)
        keys = found[0].pins.union(*(s.pins for s in found[1:])) if found else pinlists.Keys.of(())
        return cls(namespace, found, keys)

    def wanting(self, key: str) -> list[Source]:
        return [s for s in self.sources if key in s.pins]

    def pinsets_of(self, key: str) -> tuple[str, ...]:
        return tuple(f"{self.namespace}/{s.name}" for s in self.wanting(key))

    def spelling(self, key: str) -> str:
        wanting = self.wanting(key)
        return wanting[0].spelling(key) if wanting else key

    def api_urls(self, key: str, default: str) -> list[str]:
        """The Kubo APIs to export ``key`` from, best first."""
        wanting = self.wanting(key)
        return wanting[0].urls_of(key) if wanting else [default]

    def spellings(self, keys: pinlists.Keys | None = None) -> Mapping[str, str]:
        """identity -> spelling of ``keys`` (default: every desired pin), as a view."""
        differing: dict[str, str] = {}
        for source in reversed(self.sources):  # the first source's spelling wins
            if source.explicit:
                differing |= {k: v for k, v in source.explicit.items() if k != v}
        return pinlists.Spellings(self.keys if keys is None else keys, differing)


def needs_node(pinset: Mapping[str, Any]) -> bool:
    return (pinset.get("spec") or {}).get("fromNode") is not None
