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

import contextlib
import itertools
import os
import pathlib
import re
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from pinsync import peering, shards
from pinsync.devenv import processes
from tests.conftest import Operator
from tests.e2e.conftest import World
from tests.e2e.test_cost import attempts_of, unfetchable
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
        self.others: list[Operator] = []
        """Further planners (peers of a peering)."""
        self.workers: dict[str, processes.Process] = {}

    def plan(self, *args: str, pod: str = "") -> Operator:
        """A planner (``args``: e.g. its peering), and the one the crew stops at the end."""
        workdir = self.workdir / f"operator-{time.monotonic_ns()}"
        workdir.mkdir()
        env = {**self.env, peering.POD_NAME: pod} if pod else self.env
        planner = Operator(workdir, self.world.operator.kubeconfig, env, args).start()
        if self.planner is not None and pod:
            self.others.append(planner)
        else:
            self.planner = planner
        return planner

    def worker(self, name: str, *args: str) -> processes.Process:
        process = processes.pinsync_worker(
            name,
            kubeconfig=self.world.operator.kubeconfig,
            namespace=self.world.namespace,
            workdir=self.workdir / name,
            env=self.env,
            args=args,
        )
        self.workers[name] = process
        return process

    def log(self, name: str) -> str:
        return self.workers[name].log_path.read_text(errors="replace")

    def stop(self) -> None:
        for process in self.workers.values():
            if process.popen is not None and process.popen.poll() is None:
                os.kill(process.popen.pid, signal.SIGCONT)  # a frozen one cannot stop
            process.stop(timeout=20)
        for planner in [self.planner, *self.others]:
            if planner is not None:
                planner.stop()

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
    world.backend(sync={"concurrency": 1})  # one pin at a time per shard: slow enough to act in
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


def assert_synced_once(
    world: World, cids: list[str], history: DirtyHistory, before: Written | None = None
) -> None:
    """Synced, each pin whole, each CAR written once (but a CAR ``before`` found without its
    sidecar: its writer died between the two, the pin is missing, and it is sent again)."""
    status = world.wait_synced(present=len(cids), timeout=180)
    assert status["counts"]["missing"] == 0 and status["counts"]["failed"] == 0
    assert status["lastSync"]["uploaded"] <= len(cids)
    keys = world.bucket.keys()
    assert {f"pins/{cid}.car" for cid in cids} <= keys
    (before or Written(world)).assert_each_car_written_once_after(world, cids)
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


PINS, PIN_SIZE = 60, 1_000_000
"""A sync of a few seconds per worker at one pin at a time: long enough to act in its middle."""


def cars_written(world: World) -> int:
    return sum(1 for key in world.bucket.keys() if key.endswith(".json"))


def holding(crew: Crew, name: str) -> list[str]:
    """The shards (Lease names) ``name`` holds now."""
    return [lease for lease, holder in crew.holders().items() if holder == name]


def unfinished(crew: Crew, name: str) -> list[str]:
    """The shards ``name`` holds and has not reported done."""
    found = []
    for lease in crew.leases():
        report = shards.report_of(lease)
        if shards.holder(lease) == name and not (report is not None and report.done):
            found.append(lease["metadata"]["name"])
    return found


def taken_from(crew: Crew, victim: str, shard: str) -> bool:
    """``shard`` is held by another worker than ``victim``, or done, or the plan is over."""
    lease = next((x for x in crew.leases() if x["metadata"]["name"] == shard), None)
    if lease is None:
        return True
    return shards.holder(lease) not in (victim, "")


def mid_sync(world: World, crew: Crew, at_least: int = 4) -> str:
    """Once ``at_least`` pins are written: a worker holding a shard (its name)."""
    eventually(lambda: cars_written(world) >= at_least, timeout=120, interval=0.2)
    held = eventually(
        lambda: next((n for n, p in crew.workers.items() if p.running and holding(crew, n)), None),
        timeout=30,
        interval=0.2,
    )
    assert isinstance(held, str)
    return held


def test_a_worker_killed_mid_shard_has_it_finished_by_another(
    world: World, crew: Crew, history: DirtyHistory
) -> None:
    # Four shards, room for three each: the survivor has a free slot when the other dies (a
    # busy one takes the shard over when a slot frees, before any unclaimed shard).
    crew.env["PINSYNC_SHARDS"] = "4"
    crew.planner.restart()  # type: ignore[union-attr]
    for name in ("w-a", "w-b"):
        crew.worker(name, "--max-shards=3")
    cids = start_sync(world, PINS, PIN_SIZE)
    for attempt in range(3):
        victim = mid_sync(world, crew)
        crew.workers[victim].kill()
        killed = time.monotonic()
        left = unfinished(crew, victim)
        if left:
            break
        crew.worker(f"{victim}-{attempt}", "--max-shards=3")  # killed between two shards: again
    assert left, "no worker was killed holding an unfinished shard"
    shard = left[0]
    time.sleep(0.5)  # a request MinIO had received whole may still complete
    before = Written(world)
    eventually(lambda: taken_from(crew, victim, shard), timeout=60, interval=0.2)
    taken = time.monotonic() - killed
    print(f"shard {shard} of the killed worker taken over after {taken:.1f}s (lease {LEASE}s)")
    assert taken <= 2 * LEASE + 4  # the lease, a poll of each side; slack for a busy host
    assert any(f"taking over from {victim}" in crew.log(name) for name in crew.workers)
    assert_synced_once(world, cids, history, before)


def test_a_frozen_worker_past_its_lease_has_its_late_results_refused(
    world: World, crew: Crew, history: DirtyHistory
) -> None:
    for name in ("w-a", "w-b"):
        crew.worker(name, "--max-shards=1")
    cids = start_sync(world, PINS, PIN_SIZE)
    for _ in range(10):
        victim = mid_sync(world, crew)
        pid = crew.workers[victim].popen.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGSTOP)
        left = unfinished(crew, victim)
        if left:
            break
        os.kill(pid, signal.SIGCONT)  # frozen between two shards: again
        time.sleep(0.3)
    assert left, "no worker was frozen holding an unfinished shard"
    try:
        eventually(lambda: taken_from(crew, victim, left[0]), timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
    eventually(lambda: "claim lost" in crew.log(victim), timeout=60)
    status = world.wait_synced(present=len(cids), timeout=180)
    # Counted once: the frozen worker's uploads were re-found by its successor (present), not
    # reported twice as uploads.
    assert status["lastSync"]["uploaded"] <= len(cids)
    assert status["counts"]["present"] == len(cids)
    # Its one transfer in flight when frozen may complete after it woke (S3 has no fencing):
    # at most that one CAR has a second version.
    extra = sum(n - 1 for n in writes_per_car(world).values())
    assert extra <= 1
    eventually(lambda: history.clearings() == 1, timeout=30)


def claim_spans(log: str) -> dict[str, list[tuple[str, str]]]:
    """Per shard, (start, end) timestamps of each claim a worker's log shows."""
    spans: dict[str, list[tuple[str, str]]] = {}
    open_at: dict[str, str] = {}
    for line in log.splitlines():
        match = re.match(r"(\S+ \S+) \w+ \[pinsync.worker\] shard (\S+): (.*)", line)
        if not match:
            continue
        at, shard, what = match.groups()
        if what.startswith(("claimed", "taking over")):
            open_at[shard] = at
        elif what.startswith(("done", "released", "claim lost", "failed")) and shard in open_at:
            spans.setdefault(shard, []).append((open_at.pop(shard), at))
    return spans


def test_workers_scaled_up_and_down_during_a_sync(
    world: World, crew: Crew, history: DirtyHistory
) -> None:
    crew.worker("w-1", "--max-shards=1")
    cids = start_sync(world, PINS, PIN_SIZE)
    mid_sync(world, crew, at_least=3)
    for name in ("w-2", "w-3", "w-4"):
        crew.worker(name, "--max-shards=1")
    eventually(lambda: len(set(crew.holders().values()) - {""}) >= 3, timeout=60, interval=0.2)
    for name in ("w-2", "w-3", "w-4"):
        crew.workers[name].stop(timeout=30)  # SIGTERM: in-flight pins finish, claims released
        log = crew.log(name)
        claims = log.count(": claimed") + log.count(": taking over")
        assert claims == log.count(": released") + log.count(": done"), log
    assert_synced_once(world, cids, history)
    # Every shard was claimed at most once at a time (claims of it by different workers do
    # not overlap) -- and released claims were taken up without waiting out their lease.
    spans: dict[str, list[tuple[str, str]]] = {}
    for name in crew.workers:
        for shard, found in claim_spans(crew.log(name)).items():
            spans.setdefault(shard, []).extend(found)
    assert spans
    for found in spans.values():
        ordered = sorted(found)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ordered)), ordered


def test_the_operator_killed_while_workers_run_its_standby_adopts_the_plan(
    world: World, crew: Crew, history: DirtyHistory
) -> None:
    assert crew.planner is not None
    crew.planner.stop()  # replaced by two replicas in a peering of their own
    name = f"ha-{uuid.uuid4().hex[:8]}"
    flags = (f"--peering={name}", "--peering-lifetime=8")
    try:
        standby = crew.plan(*flags, "--priority=1", pod="pinsync-low")
        standby.wait_for_log("Resuming operations")
        active = crew.plan(*flags, "--priority=2", pod="pinsync-high")
        standby.wait_for_log("Pausing operations in favour of")
        for worker_name in ("w-a", "w-b"):
            crew.worker(worker_name, "--max-shards=1")
        cids = start_sync(world, PINS, PIN_SIZE)
        mid_sync(world, crew)
        assert "published" in active.log() and "published" not in standby.log()
        active.kill()
        written = cars_written(world)
        # The workers go on without a planner.
        eventually(lambda: cars_written(world) > written + 2, timeout=60, interval=0.2)
        standby.wait_for_log("adopting plan", timeout=60)
        assert "published" not in standby.log()  # it planned nothing anew
        assert_synced_once(world, cids, history)
        assert set(writes_per_car(world).values()) == {1}
    finally:
        with contextlib.suppress(kubernetes.client.ApiException):
            kubernetes.client.CustomObjectsApi(world.k8s).delete_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", name
            )


def test_failures_on_workers_are_failures_with_backoff_in_status(
    world: World, crew: Crew, history: DirtyHistory
) -> None:
    crew.worker("w-a")
    good = world.add(5, 2000)
    missing = unfetchable(3)
    world.pinsets.create(
        "lost",
        {"cids": [*good, *missing], "backends": ["minio"], "ipfs": {"pinTimeout": "500ms"}},
    )

    def retried() -> dict[str, int] | None:
        attempts = attempts_of(world.status(), missing)
        return attempts if len(attempts) == 3 and min(attempts.values()) >= 2 else None

    eventually(retried, timeout=120, interval=1)

    def between_passes() -> dict[str, Any] | None:
        status = world.status()
        synced = next(c for c in status["conditions"] if c["type"] == "Synced")
        return synced if synced["reason"] == "SyncFailed" else None  # not a pass under way

    synced = eventually(between_passes, timeout=60, interval=0.3)
    assert synced is not None and "3 pin(s) failed" in synced["message"]
    assert world.status()["counts"]["present"] == 5
    assert world.status()["counts"]["failed"] == 3
    # The backoff survives a restart of the planner and of the worker: attempts carry on.
    before = attempts_of(world.status(), missing)
    crew.planner.restart()  # type: ignore[union-attr]
    crew.workers["w-a"].stop(timeout=30)
    crew.worker("w-a")
    eventually(
        lambda: min(attempts_of(world.status(), missing).values()) > min(before.values()),
        timeout=120,
        interval=1,
    )
    assert all(attempts_of(world.status(), missing)[c] >= n for c, n in before.items())
