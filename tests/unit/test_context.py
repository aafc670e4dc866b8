"""What the reconcilers' context keeps, and what it drops when a loop ends or the replica pauses."""

from __future__ import annotations

from prometheus_client import REGISTRY

from pinsync import kube, metrics
from pinsync.reconciling.context import Context, NodePins
from pinsync.settings import Settings


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
