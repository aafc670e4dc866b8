"""``spec.fromCluster``: the pins of an IPFS Cluster's shared pinset as a PinSet's pins.

The cluster's pinset is read like a node's pin list (:mod:`pinsync.reconciling.context`): once
per ``node_pins_interval`` while a loop watches it, and parsed only when it changed -- a digest
of ``GET /allocations`` (the shared pinset, without the peers' statuses, which change all the
time) is compared with the last read's (a read that still costs ~1.6 CPU-s per 100,000 pins:
the cluster writes its answer a pin at a time). When it differs, ``GET /pins`` is streamed:
the pins the selector takes, kept compactly (:class:`pinsync.pinlists.Keys`), and for each
the peers that hold it, so its content is exported from the Kubo of one of them
(``fromCluster.peers``) and a cluster of several peers is read from several nodes. A pin no
peer held yet at that read makes the next read parse again, so its holder is learnt once the
cluster has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pinsync import cids, clusterpins, pinlists, reasons
from pinsync.reconciling.context import Context

_versions = itertools.count(1)


@dataclasses.dataclass(kw_only=True)
class ClusterList:
    """The pins a selector takes from one cluster, and where each is held."""

    keys: pinlists.Keys
    holders: np.ndarray[Any, Any]
    """Per key, an index into ``peer_sets``."""
    peer_sets: list[tuple[str, ...]]
    names: dict[str, str]
    """Cluster peer ID -> peername."""
    digest: bytes
    read_at: float
    version: int = dataclasses.field(default_factory=lambda: next(_versions))

    @property
    def settled(self) -> bool:
        """Whether every pin was held by some peer when read."""
        return () not in self.peer_sets

    def holders_of(self, key: str) -> tuple[str, ...]:
        raw = key.encode()
        at = int(np.searchsorted(self.keys.array, raw))
        if at < len(self.keys) and self.keys.array[at] == raw:
            return self.peer_sets[int(self.holders[at])]
        return ()

    def same_as(self, other: ClusterList) -> bool:
        mine = [self.peer_sets[i] for i in self.holders.tolist()]
        theirs = [other.peer_sets[i] for i in other.holders.tolist()]
        return self.keys == other.keys and mine == theirs


def source_id(pinset: Mapping[str, Any]) -> str:
    """What identifies one reading of a cluster: its URL, the selector and the credentials."""
    spec = (pinset.get("spec") or {}).get("fromCluster") or {}
    view = {k: spec.get(k) for k in ("apiUrl", "namePrefix", "metadata", "credentialsSecretRef")}
    return f"cluster {pinset['metadata']['namespace']} {json.dumps(view, sort_keys=True)}"


async def client_for(ctx: Context, pinset: Mapping[str, Any]) -> clusterpins.ClusterPins:
    spec = (pinset.get("spec") or {}).get("fromCluster") or {}
    secret_name = (spec.get("credentialsSecretRef") or {}).get("name")
    credentials: dict[str, str] = {}
    if secret_name:
        namespace = pinset["metadata"]["namespace"]
        secret = await ctx.api.read_secret(namespace, secret_name)
        if secret is None:
            raise clusterpins.ClusterError(
                f"Secret {secret_name!r} (spec.fromCluster.credentialsSecretRef) not found",
                reason=reasons.SECRET_NOT_FOUND,
            )
        credentials = secret.data
    return clusterpins.ClusterPins(
        str(spec["apiUrl"]),
        token=credentials.get("token"),
        username=credentials.get("username"),
        password=credentials.get("password"),
        timeout=CLUSTER_TIMEOUT,
    )


CLUSTER_TIMEOUT = 300.0
"""Seconds a ``/pins`` answer may take to start: the cluster gathers every peer's statuses
first (observed ~6-7 s per 100,000 pins on two peers)."""


async def read(ctx: Context, pinset: Mapping[str, Any], *, fresh: bool = False) -> ClusterList:
    """The cluster's pins this PinSet's selector takes (see the module's docstring)."""
    key = source_id(pinset)
    lock = ctx.source_locks.setdefault(key, asyncio.Lock())
    async with lock:
        cached: ClusterList | None = ctx.sources.get(key)
        if cached is not None and cached.settled and not fresh:
            if time.monotonic() - cached.read_at < ctx.settings.node_pins_interval:
                return cached
        async with contextlib.aclosing(await client_for(ctx, pinset)) as client:
            digest = await client.allocations_digest()
            if cached is not None and cached.settled and digest == cached.digest:
                cached.read_at = time.monotonic()
                return cached
            found = await _parse(client, pinset, digest)
        if cached is not None and found.same_as(cached):
            cached.digest, cached.read_at = digest, found.read_at
            cached.peer_sets, cached.holders = found.peer_sets, found.holders
            return cached
        ctx.sources[key] = found
        if cached is not None:
            ctx.changed(key)
        return found


async def _parse(
    client: clusterpins.ClusterPins, pinset: Mapping[str, Any], digest: bytes
) -> ClusterList:
    spec = (pinset.get("spec") or {}).get("fromCluster") or {}
    selector = clusterpins.Selector.from_spec(spec)
    builder = pinlists.Builder()
    sets: dict[tuple[str, ...], int] = {}
    async for pin in client.pins():
        if not selector.matches(pin) or (identity := cids.key(pin.cid)) is None:
            continue
        index = sets.setdefault(pin.pinned_on, len(sets))
        builder.add(identity, str(index))
    keys, holders = builder.build_with()
    return ClusterList(
        keys=keys,
        holders=holders.astype(np.int32) if len(holders) else np.zeros(0, dtype=np.int32),
        peer_sets=list(sets),
        names=await client.peers(),
        digest=digest,
        read_at=time.monotonic(),
    )


def export_urls(
    found: ClusterList, pinset: Mapping[str, Any], default: str
) -> Callable[[str], list[str]]:
    """Per pin, the Kubo APIs to export it from, best first: the configured peers that hold it
    (in spec order), else ``default`` (the PinSet's ``spec.ipfs.apiUrl`` or the operator's
    node)."""
    spec = (pinset.get("spec") or {}).get("fromCluster") or {}
    urls = clusterpins.peer_urls(spec)

    def urls_of(key: str) -> list[str]:
        holders = found.holders_of(key)
        pin = clusterpins.ClusterPin(cid=key, name="", metadata={}, pinned_on=holders)
        return clusterpins.kubo_candidates(pin, urls, found.names, default)

    return urls_of


def needs_cluster(pinset: Mapping[str, Any]) -> bool:
    return (pinset.get("spec") or {}).get("fromCluster") is not None


def watch(ctx: Context, pinset: Mapping[str, Any], key: tuple[str, str, str]) -> None:
    ctx.watch(source_id(pinset), key, lambda fresh: read(ctx, pinset, fresh=fresh))
