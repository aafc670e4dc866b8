"""Scale-out: the operator plans, ``pinsync worker`` processes transfer (real API server, Kubo,
MinIO). Faults: a worker killed (-9) or frozen (SIGSTOP) mid-shard, workers scaled 1 -> 4 -> 1
during a sync, the operator killed while workers run.

The session's operator is stopped for these tests and replaced by one with ``PINSYNC_WORKERS``
set (it would otherwise sync in-process beside it); short Leases (4 s) keep the takeovers quick.
What is checked each time: the sync completes with every pin byte-identical, no pin counted
twice, no CAR written twice (a versioned bucket counts versions; a CAR whose writer died before
its sidecar is re-sent once, as in the peering tests), the dirty mark cleared once.
"""

from __future__ import annotations

import os
import pathlib
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from pinsync import shards
from pinsync.devenv import processes
from tests.conftest import Operator
from tests.e2e.conftest import World
from tests.e2e.test_peering import DirtyHistory, Written, versioned, writes_per_car
from tests.kubetools import eventually

pytestmark = pytest.mark.e2e

LEASE = 4
"""Seconds a claim lasts without renewal (``PINSYNC_LEASE_SECONDS``)."""


class Crew:
    """An operator that only plans, and worker processes, started and stopped by a test."""

    def __init__(self, world: World, workdir: pathlib.Path, *, shards: int = 8) -> None:
        self.world, self.workdir = world, workdir
        self.env = {
            **world.operator.env,
            "PINSYNC_WORKERS": "1",
            "PINSYNC_SHARDS": str(shards),
            "PINSYNC_LEASE_SECONDS": str(LEASE),
        }
        self.planner: Operator | None = None
        self.workers: dict[str, processes.Process] = {}

    def plan(self) -> Operator:
        workdir = self.workdir / f"operator-{time.monotonic_ns()}"
        workdir.mkdir()
        self.planner = Operator(workdir, self.world.operator.kubeconfig, self.env).start()
        return self.planner

    def worker(self, name: str, *args: str) -> processes.Process:
        workdir = self.workdir / name
        workdir.mkdir(exist_ok=True)
        process = processes.Process(
            name,
            [
                sys.executable,
                "-m",
                "pinsync",
                "worker",
                f"--kubeconfig={self.world.operator.kubeconfig}",
                f"--identity={name}",
                "-n",
                self.world.namespace,
                "-v",
                *args,
            ],
            workdir=workdir,
            env=self.env,
        ).start()
        self.workers[name] = process
        return process

    def log(self, name: str) -> str:
        return self.workers[name].log_path.read_text(errors="replace")

    def stop(self) -> None:
        for process in self.workers.values():
            if process.popen is not None and process.popen.poll() is None:
                os.kill(process.popen.pid, signal.SIGCONT)  # a frozen one cannot stop
            process.stop(timeout=20)
        if self.planner is not None:
            self.planner.stop()

    def leases(self) -> list[dict[str, Any]]:
        api = kubernetes.client.CoordinationV1Api(self.world.k8s)
        found = api.list_namespaced_lease(self.world.namespace, label_selector=shards.SELECTOR)
        return [self.world.k8s.sanitize_for_serialization(item) for item in found.items]

    def holders(self) -> dict[str, str]:
        return {lease["metadata"]["name"]: shards.holder(lease) for lease in self.leases()}


@pytest.fixture
def crew(world: World, tmp_path: pathlib.Path) -> Iterator[Crew]:
    world.operator.stop()
    team = Crew(world, tmp_path)
    team.plan()
    try:
        yield team
    finally:
        team.stop()
        world.operator.start()


@pytest.fixture
def history(world: World, crew: Crew) -> Iterator[DirtyHistory]:
    """The dirty mark's values from the moment the (versioned) backend is first synced."""
    versioned(world)
    world.backend(sync={"concurrency": 2})
    world.wait_synced()
    watching = DirtyHistory(world)
    watching.start()
    try:
        yield watching
    finally:
        watching.stop()


def start_sync(world: World, count: int, size: int) -> list[str]:
    cids = world.add(count, size)
    world.pinsets.create("media", {"cids": cids, "backends": ["minio"]})
    return cids


def assert_synced_once(world: World, cids: list[str], history: DirtyHistory) -> None:
    status = world.wait_synced(present=len(cids), timeout=180)
    assert status["counts"]["missing"] == 0 and status["counts"]["failed"] == 0
    assert status["lastSync"]["uploaded"] <= len(cids)
    keys = world.bucket.keys()
    assert {f"pins/{cid}.car" for cid in cids} <= keys
    Written(world).assert_each_car_written_once_after(world, cids)
    for cid in cids[:5]:
        assert world.bucket.read(f"pins/{cid}.car") == world.ipfs.export_car(cid)
    eventually(lambda: history.clearings() >= 1, timeout=30)
    time.sleep(1)
    assert history.clearings() == 1


def test_two_workers_share_the_shards_and_the_operator_transfers_nothing(
    world: World, crew: Crew, history: DirtyHistory
) -> None:
    crew.worker("w-a")
    crew.worker("w-b")
    cids = start_sync(world, 40, 20_000)
    assert_synced_once(world, cids, history)
    status = world.status()
    assert status["lastSync"]["uploaded"] == 40
    assert status["lastSync"]["bytes"] >= 40 * 20_000
    assert "claimed" in crew.log("w-a") and "claimed" in crew.log("w-b")
    assert crew.planner is not None and "published 40 pin(s)" in crew.planner.log()
    eventually(lambda: crew.leases() == [], timeout=30)  # withdrawn once done
    assert set(writes_per_car(world).values()) == {1}
