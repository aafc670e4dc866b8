"""The worker's choices that need no API server: which shard it may claim, which Kubo it reads."""

from __future__ import annotations

import types
from typing import Any

from pinsync import shards, worker
from pinsync.settings import Settings

OWNER = {
    "apiVersion": "pinsync.io/v1alpha1",
    "kind": "StorageBackend",
    "metadata": {"name": "minio", "uid": "u-1"},
}


def make_worker(**kwargs: Any) -> worker.Worker:
    api = types.SimpleNamespace(coordination=object(), core=object(), client=None)
    return worker.Worker(api, Settings(), identity="w-a", **kwargs)  # type: ignore[arg-type]


def lease(shard: int, holder: str = "", rv: str = "1", done: bool = False) -> dict[str, Any]:
    plan = shards.Plan(
        backend="minio", uid="u-1", plan="1.a", token=1, shard=shard, shards=3, pins=1
    )
    body = shards.new_lease("ns", OWNER, plan, duration=10)
    body["metadata"]["resourceVersion"] = rv
    if holder:
        report = shards.Report.fresh(holder, 1, 1)
        report.done = done
        body = shards.with_claim(body, holder, report, duration=10)
    return body


def test_free_shards_are_claimable_held_ones_only_once_their_lease_went_unrenewed() -> None:
    w = make_worker()
    free, held, done = lease(0), lease(1, "w-b"), lease(2, "w-b", done=True)
    for item in (free, held, done):
        w.observed[w.key(item)] = (item["metadata"]["resourceVersion"], 100.0)
    assert w.claimable(free, now=100.0)
    assert not w.claimable(held, now=105.0)  # renewed less than a duration ago (as seen here)
    assert w.claimable(held, now=110.0)  # unchanged for a whole duration: its holder is gone
    assert not w.claimable(done, now=1000.0)  # finished: the operator settles it
    mine = lease(1, "w-a")
    w.observed[w.key(mine)] = ("1", 100.0)
    assert w.claimable(mine, now=100.0)  # its own, from before a restart under the same name


def test_a_worker_reads_from_the_kubo_on_its_node_when_that_holds_the_pin() -> None:
    w = make_worker(near=["http://10.0.0.2:5001/"])
    assert w.nearest(["http://10.0.0.1:5001", "http://10.0.0.2:5001"]) == "http://10.0.0.2:5001"
    assert w.nearest(["http://10.0.0.1:5001"]) == "http://10.0.0.1:5001"  # the planner's choice
    assert w.nearest([]) == Settings().ipfs_api_url
