"""What the reconcilers' context keeps, and what it drops when a loop ends or the replica pauses."""

from __future__ import annotations

import dataclasses
import hashlib

from prometheus_client import REGISTRY

from pinsync import cids, ipfs, kube, metrics
from pinsync.reconciling.context import Context, NodePins
from pinsync.settings import Settings
from tests import cars


def ctx() -> Context:
    return Context(api=None, settings=Settings())  # type: ignore[arg-type]


def gauge(name: str, namespace: str, backend: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": namespace, "backend": backend})


async def test_a_backend_whose_loop_ended_exports_no_gauges() -> None:
    context = ctx()
    metrics.DIRTY.labels(namespace="ns", backend="gone").set(1)
    metrics.MISSING.labels(namespace="ns", backend="gone").set(3)
    metrics.DIRTY.labels(namespace="ns", backend="kept").set(1)
    await context.forget((kube.STORAGEBACKENDS, "ns", "gone"))
    assert gauge("pinsync_backend_dirty", "ns", "gone") is None
    assert gauge("pinsync_backend_missing_pins", "ns", "gone") is None
    assert gauge("pinsync_backend_dirty", "ns", "kept") == 1
    metrics.forget_backend("ns", "kept")


def test_a_paused_replica_forgets_node_pins_and_who_it_has_started() -> None:
    context = ctx()
    context._node_pins["http://kubo:5001"] = NodePins({"k": "cid"}, read_at=0.0)
    context.started.add(("ns", "b"))
    context.kubo("http://kubo:5001")
    context.paused()
    assert not context._node_pins and not context.started
    # Clients and their connection pools are not state: they stay for when it resumes.
    assert "http://kubo:5001" in context.kubos


class Node:
    """A Kubo API that answers the two pin-list calls from ``pins`` (CID -> name)."""

    def __init__(self, pins: dict[str, str]) -> None:
        self.pins = pins

    async def pins_digest(self) -> bytes:
        return hashlib.sha256(repr(sorted(self.pins.items())).encode()).digest()

    async def pin_listing(self) -> ipfs.PinListing:
        listing = NodePins.of(self.pins).listing
        return dataclasses.replace(listing, digest=await self.pins_digest())


async def test_pins_the_operator_made_and_the_user_removed_again_are_seen_lost() -> None:
    """The overlay of pins the operator made is replaced by the next listing: were it kept
    because the listing looks as before those pins, a restore would find nothing lost."""
    cid = cars.cid_text(cars.raw_cid(b"made by the operator"))
    key = cids.key(cid)
    url = "http://kubo:5001"
    context, node = ctx(), Node({})
    context.kubos[url] = node  # type: ignore[assignment]
    pins = await context.node_pins(url)
    pins.record([key], "pinsync/ns/media")
    assert key in await context.node_pins(url)
    # The user unpins it: the node lists exactly what it listed before the operator pinned.
    assert key not in await context.node_pins(url, fresh=True)
    node.pins[cid] = "pinsync/ns/media"
    assert key in await context.node_pins(url, fresh=True)
