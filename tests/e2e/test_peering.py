"""Two replicas with kopf peering, on the real API server: one works, the other takes over.

The session's standalone operator is stopped for these tests (it would work beside the peers)
and started again afterwards. Each test has a peering object of its own and a short peering
lifetime, so that a killed peer counts as gone after seconds rather than a minute.

What is checked, besides "the sync finishes": every CAR is written exactly once (the bucket is
versioned, so a second write of a key would be a second version) -- but for a CAR whose writer
stopped before its sidecar, which makes the pin missing and the successor send it once more --;
the successor uploads exactly the pins that were missing; the standby or paused replica holds
no connection to the storage while the other works; and the dirty mark goes from set to cleared
exactly once (a watch on the StorageBackend sees every write).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import kubernetes.watch
import pytest

from pinsync import GROUP, VERSION, peering
from tests.conftest import Operator
from tests.e2e.conftest import World
from tests.e2e.test_rbac import rbac, service_account_kubeconfig
from tests.kubetools import eventually

pytestmark = pytest.mark.e2e
__all__ = ["rbac"]  # the fixture, shared with test_rbac

LIFETIME = 8
"""Seconds (``--peering-lifetime``) after which a silent peer counts as gone."""
PINS, PIN_SIZE = 40, 2_000_000
"""A sync long enough (80 MB at concurrency 1, ~3 s here) to be killed in its middle."""
SLOW_PINS = 150
"""A sync that outlasts the start of another operator (~4 s) by far: 300 MB, ~11 s here."""


class Peers:
    """Operators in one peering of their own, started by a test and stopped after it."""

    def __init__(self, world: World, workdir: pathlib.Path) -> None:
        self.world, self.workdir = world, workdir
        self.name = f"ha-{uuid.uuid4().hex[:8]}"
        self.started: list[Operator] = []

    def start(self, pod: str, *args: str, kubeconfig: pathlib.Path | None = None) -> Operator:
        """An operator as pod ``pod`` (its POD_NAME), with extra ``args``."""
        workdir = self.workdir / pod
        workdir.mkdir()
        flags = [f"--peering={self.name}", f"--peering-lifetime={LIFETIME}", *args]
        env = {**self.world.operator.env, peering.POD_NAME: pod}
        config = kubeconfig or self.world.operator.kubeconfig
        self.started.append(Operator(workdir, config, env, flags).start())
        return self.started[-1]

    def entries(self) -> dict[str, Any]:
        """The peering object's status: identity -> priority, lifetime, lastseen."""
        api = kubernetes.client.CustomObjectsApi(self.world.k8s)
        obj = api.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", self.name)
        entries: dict[str, Any] = obj.get("status") or {}
        return entries

    def stop(self) -> None:
        for operator in self.started:
            operator.stop()
        with contextlib.suppress(kubernetes.client.ApiException):
            kubernetes.client.CustomObjectsApi(self.world.k8s).delete_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", self.name
            )


@pytest.fixture
def peers(world: World, tmp_path: pathlib.Path) -> Iterator[Peers]:
    world.operator.stop()
    group = Peers(world, tmp_path)
    try:
        yield group
    finally:
        group.stop()
        world.operator.start()


class DirtyHistory(threading.Thread):
    """Every value of ``status.dirty.dirty`` the StorageBackend has had, from a watch."""

    def __init__(self, world: World, name: str = "minio") -> None:
        super().__init__(daemon=True)
        self.world, self.name = world, name
        self.values: list[bool] = []
        self.done = threading.Event()

    def run(self) -> None:
        api = kubernetes.client.CustomObjectsApi(self.world.k8s)
        version = None
        while not self.done.is_set():
            watch = kubernetes.watch.Watch()
            stream = watch.stream(
                api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.world.namespace,
                "storagebackends",
                field_selector=f"metadata.name={self.name}",
                resource_version=version,
                timeout_seconds=2,
            )
            for event in stream:
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                dirty = ((obj.get("status") or {}).get("dirty") or {}).get("dirty")
                if dirty is not None and (not self.values or self.values[-1] != dirty):
                    self.values.append(bool(dirty))

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)

    def clearings(self) -> int:
        """Times the backend went from dirty to clean, so far."""
        values = list(self.values)
        return sum(1 for a, b in itertools.pairwise(values) if a and not b)


@pytest.fixture
def history(world: World) -> Iterator[DirtyHistory]:
    watching = DirtyHistory(world)
    watching.start()
    try:
        yield watching
    finally:
        watching.stop()


def versioned(world: World) -> None:
    world.bucket.client.put_bucket_versioning(
        Bucket=world.bucket.name, VersioningConfiguration={"Status": "Enabled"}
    )


def writes_per_car(world: World) -> dict[str, int]:
    """How many times each CAR was written (versions of its key; deletions not counted)."""
    pages = world.bucket.client.get_paginator("list_object_versions").paginate(
        Bucket=world.bucket.name
    )
    writes: dict[str, int] = {}
    for page in pages:
        for version in page.get("Versions", ()):
            if version["Key"].endswith(".car"):
                writes[version["Key"]] = writes.get(version["Key"], 0) + 1
    return writes


def cars(world: World) -> set[str]:
    return {key for key in world.bucket.keys() if key.endswith(".car")}


class Written:
    """The bucket at one moment: pins written whole (CAR and sidecar), and CARs whose sidecar
    was not written yet (their writer stopped between the two: the pin is missing, and the
    next writer sends it again)."""

    def __init__(self, world: World) -> None:
        keys = world.bucket.keys()
        carred = {key[: -len(".car")] for key in keys if key.endswith(".car")}
        self.pins = {stem for stem in carred if f"{stem}.json" in keys}
        self.partial = {f"{stem}.car" for stem in carred - self.pins}

    def assert_each_car_written_once_after(self, world: World, cids: list[str]) -> None:
        """Every CAR has one version -- except a partial one, re-sent once by the successor."""
        writes = writes_per_car(world)
        assert set(writes) == {f"pins/{cid}.car" for cid in cids}
        assert {key: n for key, n in writes.items() if n != 1 and key not in self.partial} == {}
        assert all(writes[key] <= 2 for key in self.partial)


def storage_connections(world: World, operator: Operator) -> int:
    """The operator process's established TCP connections to MinIO (from /proc)."""
    port = urllib.parse.urlsplit(world.s3server.endpoint).port
    inodes = set()
    for fd in pathlib.Path(f"/proc/{operator.pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == "01" and remote_port == port and fields[9] in inodes:
                count += 1
    return count


def start_syncing(world: World, pins: int) -> list[str]:
    """A PinSet of ``pins`` pins (2 MB each), then its backend, synced at concurrency 1.

    In this order the backend's first sync is the one with every pin; the other way round an
    empty sync may clear the backend first, and the PinSet mark it dirty again.
    """
    versioned(world)
    cids = world.add(pins, PIN_SIZE)
    world.pinsets.create("p", {"cids": cids, "backends": ["minio"]})
    world.backend(sync={"concurrency": 1})
    return cids


def events(world: World, reason: str) -> list[Any]:
    return [e for e in world.events() if e.reason == reason]


def test_the_standby_finishes_the_sync_of_a_killed_operator_and_writes_each_pin_once(
    world: World, peers: Peers, history: DirtyHistory
) -> None:
    # Priorities derived from the pod names, as in a Deployment; the lower one starts first
    # and hands over when the higher one appears.
    pods = ["pinsync-6f7d8-q2x4k", "pinsync-6f7d8-b7n9z"]
    standby_pod, active_pod = sorted(pods, key=peering.priority_of)
    standby = peers.start(standby_pod)
    standby.wait_for_log("Resuming operations")
    active = peers.start(active_pod)
    standby.wait_for_log("Pausing operations in favour of")

    cids = start_syncing(world, PINS)
    eventually(lambda: 3 <= len(cars(world)) < PINS - 10, timeout=120, interval=0.05)
    assert f"{world.namespace}/minio: SyncStarted" in active.log()
    assert f"{world.namespace}/minio: SyncStarted" not in standby.log()
    assert storage_connections(world, standby) == 0, "the standby talks to the storage"

    active.kill()
    killed_at = time.monotonic()
    time.sleep(1)  # a request MinIO had received whole may still complete
    before = Written(world)
    assert world.status()["dirty"]["dirty"]

    standby.wait_for_log(f"{world.namespace}/minio: SyncStarted", timeout=LIFETIME + 30)
    takeover = time.monotonic() - killed_at
    print(f"takeover after SIGKILL: {takeover:.1f}s (peering lifetime {LIFETIME}s)")
    assert takeover <= LIFETIME + 10

    status = world.wait_synced(present=PINS, timeout=240)
    world.assert_objects_match_kubo(cids)
    assert status["lastSync"]["uploaded"] == PINS - len(before.pins)
    before.assert_each_car_written_once_after(world, cids)
    assert history.clearings() == 1
    assert len(events(world, "Synced")) == 1
    assert f"{world.namespace}/minio: Synced" not in active.log()


def test_a_paused_operator_stops_uploading_and_its_successor_writes_each_pin_once(
    world: World, peers: Peers, history: DirtyHistory
) -> None:
    low = peers.start("pinsync-low", "--priority=1")
    low.wait_for_log("Resuming operations")
    cids = start_syncing(world, SLOW_PINS)
    low.wait_for_log(f"{world.namespace}/minio: SyncStarted")

    high = peers.start("pinsync-high", "--priority=2")
    low.wait_for_log("Pausing operations in favour of")
    # The paused replica's loops were cancelled mid-transfer and its storage client closed,
    # while it keeps running (renewing its peering entry) to take over again.
    eventually(lambda: storage_connections(world, low) == 0, timeout=5, interval=0.1)
    before = Written(world)
    for _ in range(10):
        time.sleep(0.3)
        assert storage_connections(world, low) == 0, "the paused replica talks to the storage"
    assert low.process is not None and low.process.running
    assert "did not exit in time" not in low.log(), "a daemon outlived the pause, orphaned"

    status = world.wait_synced(present=SLOW_PINS, timeout=240)
    world.assert_objects_match_kubo(cids)
    assert 0 < len(before.pins) < SLOW_PINS, "the pause came before or after the sync"
    assert status["lastSync"]["uploaded"] == SLOW_PINS - len(before.pins)
    before.assert_each_car_written_once_after(world, cids)
    assert history.clearings() == 1
    assert f"{world.namespace}/minio: Synced" in high.log()
    assert f"{world.namespace}/minio: Synced" not in low.log()


def test_the_manifests_rbac_lets_a_replica_create_and_renew_its_peering(
    world: World, peers: Peers, rbac: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    kubeconfig = service_account_kubeconfig(rbac, tmp_path / "service-account.kubeconfig")
    replica = peers.start("pinsync-sa", kubeconfig=kubeconfig)
    replica.wait_for_log("Resuming operations")

    def entry() -> dict[str, Any]:
        found: dict[str, Any] = peers.entries()["pinsync-sa"]
        return found

    first = eventually(entry)
    assert first["priority"] == peering.priority_of("pinsync-sa")
    assert first["lifetime"] == LIFETIME
    cid = world.ipfs.add(os.urandom(10_000))
    world.backend()
    world.pinsets.create("p", {"cids": [cid], "backends": ["minio"]})
    world.wait_synced(present=1)
    eventually(lambda: entry()["lastseen"] > first["lastseen"], timeout=LIFETIME + 5)
    assert "Forbidden" not in replica.log() and " 403" not in replica.log()


def test_a_namespaced_replica_peers_through_a_kopfpeering_in_its_namespace(
    world: World, peers: Peers
) -> None:
    replica = peers.start("pinsync-ns", f"--namespace={world.namespace}")
    replica.wait_for_log("Resuming operations")
    api = kubernetes.client.CustomObjectsApi(world.k8s)

    def entry() -> dict[str, Any]:
        obj = api.get_namespaced_custom_object(
            "kopf.dev", "v1", world.namespace, "kopfpeerings", peers.name
        )
        found: dict[str, Any] = (obj.get("status") or {})["pinsync-ns"]
        return found

    assert eventually(entry)["priority"] == peering.priority_of("pinsync-ns")
    cid = world.ipfs.add(os.urandom(10_000))
    world.backend()
    world.pinsets.create("p", {"cids": [cid], "backends": ["minio"]})
    world.wait_synced(present=1)


def test_a_replica_that_may_not_use_its_peering_says_so_and_exits(
    world: World, peers: Peers, tmp_path: pathlib.Path
) -> None:
    core = kubernetes.client.CoreV1Api(world.k8s)
    core.create_namespaced_service_account(world.namespace, {"metadata": {"name": "nobody"}})
    kubeconfig = service_account_kubeconfig(
        world.operator.kubeconfig, tmp_path / "nobody.kubeconfig", "nobody", world.namespace
    )
    replica = peers.start("pinsync-nobody", kubeconfig=kubeconfig)
    assert replica.process is not None and replica.process.popen is not None
    assert replica.process.popen.wait(timeout=60) != 0
    assert f"pinsync: peering {peers.name!r}: cannot read clusterkopfpeerings" in replica.log()
    assert "403 Forbidden" in replica.log()


def test_a_replica_that_stops_cleanly_hands_over_at_once(world: World, peers: Peers) -> None:
    # A lifetime far longer than the test: only the stopping replica's goodbye can explain a
    # quick hand-over (kopf removes its entry on exit, as a Deployment's rollout relies on).
    low = peers.start("pinsync-low", "--priority=1", "--peering-lifetime=120")
    low.wait_for_log("Resuming operations")
    high = peers.start("pinsync-high", "--priority=2", "--peering-lifetime=120")
    low.wait_for_log("Pausing operations in favour of")
    eventually(lambda: set(peers.entries()) == {"pinsync-low", "pinsync-high"})
    stopping = time.monotonic()
    high.stop()
    eventually(lambda: low.log().count("Resuming operations") == 2, timeout=30, interval=0.1)
    handover = time.monotonic() - stopping
    print(f"hand-over after a clean stop: {handover:.1f}s (peering lifetime 120s)")
    assert handover < 15
    assert "did not exit in time" not in high.log(), "a daemon outlived the stop, orphaned"
    assert set(peers.entries()) == {"pinsync-low"}
