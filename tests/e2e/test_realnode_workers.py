"""Transfer workers as Pods on the real node: the chart with ``workers.replicas=2``, a sync of a
few hundred small pins and a few bigger ones to MinIO through the worker Pods, a worker
force-deleted while it holds claims (it may release them on SIGTERM, or be killed first and
have them taken over when their Leases lapse), and a worker frozen from the host (SIGSTOP).

A release of its own, after test_realnode's is uninstalled (two releases serving the whole
cluster would plan the same backends). The Lease duration is the chart's default (15 s).
Measured figures (install to Ready, handover and completion times) are printed (``-s``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from pinsync import shards
from pinsync.devenv import kubo, minio, realnode, tools
from tests.e2e.conftest import Tenant, World
from tests.e2e.test_deploy import CHART, helm
from tests.e2e.test_peering import DirtyHistory, Written, versioned, writes_per_car
from tests.e2e.test_realnode import install_values
from tests.kubetools import eventually, wait_synced

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]  # a shared, loaded 2-core host
RELEASE, NAMESPACE = "crew", "pinsync-crew"
SMALL, SMALL_SIZE = 300, 2_000
BIG, BIG_SIZE = 12, 8_000_000
"""A sync of a few hundred small pins and a few bigger ones (96 MB): long enough, at the
backend's concurrency 1, for a worker to be force-deleted while it holds a claim (about 10-25 s
on a loaded 2-core host)."""


@dataclasses.dataclass
class Crew:
    """The release: an operator Deployment (plans) and a worker Deployment (transfers)."""

    node: realnode.Node
    image: str
    s3: minio.MinIO
    ipfs: kubo.Kubo

    def pods(self, name: str) -> list[dict[str, Any]]:
        """The release's Pods labelled ``app.kubernetes.io/name=name``, less those being
        deleted."""
        found = self.node.kubectl(
            "get", "pods", "-n", NAMESPACE, "-o", "json", "-l",
            f"app.kubernetes.io/name={name},app.kubernetes.io/instance={RELEASE}",
        )  # fmt: skip
        items: list[dict[str, Any]] = json.loads(found)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def workers(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.pods("pinsync-worker"))

    def operators(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.pods("pinsync"))

    def log(self, pod: str) -> str:
        """The Pod's log, or nothing while its container has not started (a new Pod)."""
        try:
            return self.node.kubectl("logs", "-n", NAMESPACE, pod)
        except subprocess.CalledProcessError:
            return ""

    def leases(self, namespace: str) -> list[dict[str, Any]]:
        found = self.node.kubectl(
            "get", "leases", "-n", namespace, "-l", shards.SELECTOR, "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(found)["items"]
        return items


@pytest.fixture(scope="module")
def crew(
    workdir: pathlib.Path,
    real_node: realnode.Node,
    host_servers: tuple[minio.MinIO, kubo.Kubo],
) -> Iterator[Crew]:
    s3, ipfs = host_servers
    image = real_node.import_image(tools.image("operator"))
    kubeconfig = f"--kubeconfig={real_node.kubeconfig}"
    started = time.monotonic()
    helm(workdir, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
         kubeconfig, *install_values(image, ipfs), "--set", "workers.replicas=2")  # fmt: skip
    try:
        real_node.wait_rollout(NAMESPACE, f"deployment/{RELEASE}", timeout=240)
        real_node.wait_rollout(NAMESPACE, f"deployment/{RELEASE}-worker", timeout=240)
        print(f"\nhelm install (2 operator + 2 worker Pods) to Ready: "
              f"{time.monotonic() - started:.1f}s")  # fmt: skip
        yield Crew(real_node, image, s3, ipfs)
    finally:
        helm(workdir, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", kubeconfig)


def proc_status(node: realnode.Node, pod: str) -> dict[str, str]:
    text = node.kubectl("exec", "-n", NAMESPACE, pod, "--", "cat", "/proc/1/status")
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_the_worker_pods_run_ready_with_their_own_account_and_the_operators_restrictions(
    crew: Crew,
) -> None:
    pods = crew.pods("pinsync-worker")
    assert len(pods) == 2
    for pod in pods:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True"
        (container,) = pod["status"]["containerStatuses"]
        assert container["restartCount"] == 0, container
        assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-worker"
        spec = pod["spec"]["containers"][0]
        assert spec["args"][0] == "worker"
        assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
        status = proc_status(crew.node, pod["metadata"]["name"])
        assert status["Uid"].split()[:2] == ["65532", "65532"]
        assert status["NoNewPrivs"].strip() == "1"
        assert status["Seccomp"].strip() == "2"
        for capabilities in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[capabilities], 16) == 0, (capabilities, status[capabilities])
    # The operator Deployment's selector does not take the workers for its own.
    assert len(crew.operators()) == 2
    env = {
        e["name"]: e.get("value") for e in crew.pods("pinsync")[0]["spec"]["containers"][0]["env"]
    }
    assert env["PINSYNC_WORKERS"] == "2"


def holders(crew: Crew, namespace: str) -> dict[str, str]:
    """Lease -> its holder, for the shards not done yet."""
    found = {}
    for lease in crew.leases(namespace):
        report = shards.report_of(lease)
        if report is None or not report.done:
            found[lease["metadata"]["name"]] = shards.holder(lease)
    return found


def test_a_worker_force_deleted_mid_sync_hands_its_shards_over_and_the_sync_completes(
    crew: Crew,
) -> None:
    tenant = Tenant(crew.node, crew.s3)
    world = cast(World, tenant)  # the helpers use .k8s, .namespace and .bucket only
    versioned(world)
    small = [crew.ipfs.add(os.urandom(SMALL_SIZE)) for _ in range(SMALL)]
    big = [crew.ipfs.add(os.urandom(BIG_SIZE)) for _ in range(BIG)]
    cids = small + big
    history = DirtyHistory(world)
    history.start()
    try:
        tenant.pinsets.create("media", {"cids": cids, "backends": ["minio"]})
        started = time.monotonic()
        tenant.backend(sync={"concurrency": 1})
        workers = crew.workers()

        # Under way: a few pins are written, and a worker holds claims on unfinished shards.
        def under_way() -> dict[str, str]:
            written = len(Written(world).pins)
            if written == len(cids):
                pytest.fail("the sync finished before a worker could be force-deleted")
            held = holders(crew, tenant.namespace)
            assert written >= 10 and set(workers) & set(held.values()), (written, held)
            return held

        held = eventually(under_way, timeout=300, interval=0.1)
        victim = max(workers, key=list(held.values()).count)
        victim_log = crew.log(victim)
        assert f"{tenant.namespace}/" in victim_log and "claimed" in victim_log, victim_log
        taken = {lease for lease, holder in held.items() if holder == victim}
        written_before = len(Written(world).pins)

        crew.node.kubectl("delete", "pod", "-n", NAMESPACE, victim, "--grace-period=0",
                          "--force", "--wait=false")  # fmt: skip
        killed = time.monotonic()

        # Each of its shards is claimed by another worker (the other, or the Pod replacing it)
        # or finished by it before it stopped (SIGTERM: in-flight pins finish, claims released).
        def handed_over() -> set[str]:
            now = holders(crew, tenant.namespace)
            left = {lease for lease in taken if now.get(lease) in (victim, "")}
            assert not left, now
            return {lease for lease in taken if lease in now}

        moved = eventually(handed_over, timeout=180, interval=0.2)
        handover = time.monotonic() - killed
        new_holders = holders(crew, tenant.namespace)
        by = sorted({new_holders[lease] for lease in moved})

        status = wait_synced(tenant.backends, "minio", present=len(cids), timeout=900)
        done = time.monotonic()
        print(f"\n{len(cids)} pins ({SMALL} x {SMALL_SIZE} B, {BIG} x {BIG_SIZE / 1e6:.0f} MB) "
              f"through 2 workers; {written_before} written when {victim} (holding "
              f"{len(taken)} shard(s)) was force-deleted; its unfinished shard(s) ({len(moved)}) "
              f"held by {by or 'nobody: finished'} {handover:.1f}s later; sync complete "
              f"{done - killed:.1f}s after the force-delete, {done - started:.1f}s "
              f"after the backend was created")  # fmt: skip

        assert status["counts"]["missing"] == 0 and status["counts"]["failed"] == 0
        keys = tenant.bucket.keys()
        assert {f"pins/{cid}.car" for cid in cids} <= keys
        assert {f"pins/{cid}.json" for cid in cids} <= keys
        for cid in small[:3] + big:
            assert tenant.bucket.read(f"pins/{cid}.car") == crew.ipfs.export_car(cid)
        # A CAR whose writer died before its sidecar is sent again by the next holder (which
        # looks for each pin first): never more than twice, and only a few.
        writes = writes_per_car(world)
        assert set(writes) == {f"pins/{cid}.car" for cid in cids}
        twice = {key for key, n in writes.items() if n != 1}
        print(f"CARs written twice: {len(twice)}")
        assert all(writes[key] <= 2 for key in twice), writes
        assert len(twice) <= 2 * len(taken), twice  # at most the in-flight ones of its claims
        # The dirty mark, set when the sync began, cleared once.
        eventually(lambda: history.clearings() >= 1, timeout=30)
        assert history.clearings() == 1, history.values
    finally:
        history.stop()

    # The operator published the plan as shards; workers claimed them and one took over.
    operator_logs = "".join(crew.log(pod) for pod in crew.operators())
    assert f"{tenant.namespace}/minio: published {len(cids)} pin(s) as" in operator_logs
    survivors = "".join(crew.log(pod) for pod in crew.workers())
    assert "claimed" in survivors
    took = [line for line in survivors.splitlines() if f"taking over from {victim}" in line]
    print(f"takeovers logged: {len(took)} (a shard released by the stopping worker is claimed "
          f"afresh instead)")  # fmt: skip
    eventually(lambda: crew.leases(tenant.namespace) == [], timeout=60)  # withdrawn once done
    crew.node.wait_rollout(NAMESPACE, f"deployment/{RELEASE}-worker", timeout=180)


def host_pid(crew: Crew, pod: str) -> int:
    """The process of a Pod's container, as the host sees it (containerd's task)."""
    found = json.loads(crew.node.kubectl("get", "pod", "-n", NAMESPACE, pod, "-o", "json"))
    container_id = found["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    for line in crew.node.ctr("tasks", "ls").splitlines()[1:]:
        task, pid, *_ = line.split()
        if task == container_id:
            return int(pid)
    raise LookupError(f"no task for {pod}")


def test_a_frozen_worker_loses_its_shards_once_its_leases_lapse_and_its_late_results_are_refused(
    crew: Crew,
) -> None:
    """A worker that stops answering without stopping (SIGSTOP from the host: a paused VM, a
    partitioned node) releases nothing: the other worker takes its shards over once their
    Leases have not changed for the Lease's duration."""
    tenant = Tenant(crew.node, crew.s3)
    world = cast(World, tenant)
    versioned(world)
    cids = [crew.ipfs.add(os.urandom(SMALL_SIZE)) for _ in range(SMALL)]
    cids += [crew.ipfs.add(os.urandom(BIG_SIZE)) for _ in range(BIG)]
    history = DirtyHistory(world)
    history.start()
    victim = ""
    pid = 0
    try:
        tenant.pinsets.create("media", {"cids": cids, "backends": ["minio"]})
        tenant.backend(sync={"concurrency": 1})
        workers = crew.workers()

        # Frozen as soon as it holds claims: its shards are then far from done.
        victim = workers[-1]
        victim_pid = host_pid(crew, victim)
        eventually(lambda: victim in holders(crew, tenant.namespace).values(), timeout=300,
                   interval=0.1)  # fmt: skip
        os.kill(victim_pid, signal.SIGSTOP)
        pid = victim_pid
        frozen = time.monotonic()
        # What it holds unfinished, read after the freeze: no report of it can follow.
        taken = {lease for lease, holder in holders(crew, tenant.namespace).items()
                 if holder == victim}  # fmt: skip
        assert taken, "its shards finished before the freeze"
        written = len(Written(world).pins)

        def taken_over() -> bool:
            now = holders(crew, tenant.namespace)
            assert not {lease for lease in taken if now.get(lease) == victim}, now
            return True

        eventually(taken_over, timeout=180, interval=0.2)
        takeover = time.monotonic() - frozen
        wait_synced(tenant.backends, "minio", present=len(cids), timeout=900)
        done = time.monotonic() - frozen
        print(
            f"\n{victim} frozen holding {len(taken)} unfinished shard(s), {written} of "
            f"{len(cids)} pins written: taken over "
            f"{takeover:.1f}s later (Lease 15 s), sync complete {done:.1f}s after the freeze"
        )
        # No sooner than the Lease allows: 15 s after the taker saw the last renewal, which
        # came at most a third of that before the freeze.
        assert takeover >= 15 * 2 / 3 - 1, takeover
        keys = tenant.bucket.keys()
        assert {f"pins/{cid}.car" for cid in cids} | {f"pins/{cid}.json" for cid in cids} <= keys
        eventually(lambda: history.clearings() >= 1, timeout=30)
        assert history.clearings() == 1, history.values

        # Thawed, it finds its claims lost at its next renewal and drops its results.
        os.kill(pid, signal.SIGCONT)
        pid = 0
        eventually(lambda: "claim lost" in crew.log(victim), timeout=60)
        writes = writes_per_car(world)
        assert all(n <= 2 for n in writes.values()), writes
        print(f"CARs written twice: {sum(n == 2 for n in writes.values())}")
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
        history.stop()
    takeovers = "".join(crew.log(pod) for pod in crew.workers() if pod != victim)
    assert f"taking over from {victim}" in takeovers
    crew.node.wait_rollout(NAMESPACE, f"deployment/{RELEASE}-worker", timeout=180)
