"""The operator as Pods on a real node, installed by Helm from its own image.

The node is :mod:`pinsync.devenv.realnode` (kubelet, containerd, kube-proxy, CoreDNS; no
registry): the image is the Dockerfile built by buildah on a Debian stand-in base and imported
into containerd. MinIO and Kubo run on the host, listening on the node IP, which Pods reach
through the bridge: the operator is what is under test, and the servers' own images would only
add build time.

Measured figures (time from ``helm install`` to Ready, failover time) are printed (``-s``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest

from pinsync import peering
from pinsync.devenv import kubo, minio, realnode, tools
from tests.e2e.conftest import Tenant, World
from tests.e2e.test_deploy import CHART, helm
from tests.e2e.test_peering import DirtyHistory, cars, versioned, writes_per_car
from tests.kubetools import eventually, wait_synced

pytestmark = pytest.mark.e2e
RELEASE, NAMESPACE = "pinsync", "pinsync-system"


@dataclasses.dataclass
class Release:
    """A Helm release of the chart on the real node, its image and the servers it talks to."""

    node: realnode.Node
    image: str
    s3: minio.MinIO
    ipfs: kubo.Kubo
    seconds_to_ready: float

    def pods(self) -> list[dict[str, Any]]:
        found = self.node.kubectl(
            "get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}",
            "-o", "json",
        )  # fmt: skip
        items: list[dict[str, Any]] = json.loads(found)["items"]
        # A Pod being deleted (force-deleted, or replaced by a rollout) is on its way out.
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def logs(self, pod: str) -> str:
        return self.node.kubectl("logs", "-n", NAMESPACE, pod)

    def logs_so_far(self, pod: str) -> str:
        """The Pod's log, or nothing while its container has not started (a new Pod)."""
        try:
            return self.logs(pod)
        except subprocess.CalledProcessError:
            return ""


def install_values(image: str, ipfs: kubo.Kubo) -> list[str]:
    """The chart's defaults but for the image (local, never pulled) and where Kubo is."""
    repository, tag = image.rsplit(":", 1)
    return [
        "--set", f"image.repository={repository}",
        "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never",
        "--set", f"ipfsApiUrl={ipfs.api_url}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def release(
    workdir: pathlib.Path,
    real_node: realnode.Node,
    host_servers: tuple[minio.MinIO, kubo.Kubo],
) -> Iterator[Release]:
    s3, ipfs = host_servers
    image = real_node.import_image(tools.image("operator"))
    kubeconfig = f"--kubeconfig={real_node.kubeconfig}"
    started = time.monotonic()
    helm(workdir, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
         kubeconfig, *install_values(image, ipfs))  # fmt: skip
    real_node.wait_rollout(NAMESPACE, f"deployment/{RELEASE}", timeout=180)
    seconds = time.monotonic() - started
    print(f"\nhelm install to every Pod Ready: {seconds:.1f}s")
    try:
        yield Release(real_node, image, s3, ipfs, seconds)
    finally:
        helm(workdir, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", kubeconfig)


@pytest.fixture
def tenant(release: Release) -> Iterator[Tenant]:
    yield Tenant(release.node, release.s3)


def test_helm_install_with_default_values_runs_the_operator_as_ready_pods(
    release: Release,
) -> None:
    pods = release.pods()
    assert len(pods) == 2  # the chart's default: one works, one stands by
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True" and ready["ContainersReady"] == "True"
        (container,) = pod["status"]["containerStatuses"]
        assert container["restartCount"] == 0, container
        assert container["image"].endswith(release.image)
        spec = pod["spec"]["containers"][0]
        # Ready through the chart's own probes, served by the operator in the Pod.
        assert spec["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["spec"]["serviceAccountName"] == RELEASE


def test_a_backend_on_minio_and_a_pinset_on_kubo_reach_ready(
    release: Release, tenant: Tenant
) -> None:
    cids = [release.ipfs.add(os.urandom(50_000)) for _ in range(3)]
    tenant.pinsets.create("media", {"cids": cids, "backends": ["minio"]})
    tenant.backend()
    tenant.backends.wait_condition("minio", "Ready", "True", timeout=120)
    tenant.pinsets.wait_condition("media", "Ready", "True", timeout=60)
    wait_synced(tenant.backends, "minio", present=3)
    keys = tenant.bucket.keys()
    for cid in cids:
        assert tenant.bucket.read(f"pins/{cid}.car") == release.ipfs.export_car(cid)
        assert f"pins/{cid}.json" in keys

    # ... and the Pods' logs, which showed all of that, never show the Secret's value.
    logs = "".join(release.logs(pod["metadata"]["name"]) for pod in release.pods())
    assert f"{tenant.namespace}/minio" in logs
    assert release.s3.secret_key not in logs


def test_metrics_are_scraped_through_the_service_by_name(release: Release) -> None:
    # A Pod of the same image (it has Python) asks the Service by its DNS name, as Prometheus
    # would: CoreDNS, kube-proxy's Service rules and the Pod network, all real.
    url = f"http://{RELEASE}-metrics.{NAMESPACE}.svc.cluster.local:8000/metrics"
    name = f"scrape-{uuid.uuid4().hex[:6]}"
    script = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    )
    release.node.kubectl(
        "run", name, "-n", NAMESPACE, f"--image={release.image}", "--image-pull-policy=Never",
        "--restart=Never", "--command", "--", "python3", "-c", script,
    )  # fmt: skip
    release.node.kubectl(
        "wait", "-n", NAMESPACE, f"pod/{name}", "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=90s",
    )  # fmt: skip
    text = release.node.kubectl("logs", "-n", NAMESPACE, name)
    release.node.kubectl("delete", "pod", "-n", NAMESPACE, name, "--wait=false")
    assert "# TYPE pinsync_" in text
    assert "process_resident_memory_bytes" in text


def proc_status(release: Release, pod: str) -> dict[str, str]:
    """``/proc/1/status`` of the operator's container: what the kernel enforces on it."""
    text = release.node.kubectl("exec", "-n", NAMESPACE, pod, "--", "cat", "/proc/1/status")
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_the_pod_runs_with_the_security_settings_reviewers_expect(release: Release) -> None:
    pod = release.pods()[0]
    name = pod["metadata"]["name"]
    status = proc_status(release, name)
    assert status["Uid"].split()[:2] == ["65532", "65532"]  # real and effective: non-root
    assert status["NoNewPrivs"].strip() == "1"  # allowPrivilegeEscalation: false
    assert status["Seccomp"].strip() == "2"  # a filter: RuntimeDefault
    for capabilities in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capabilities], 16) == 0, (capabilities, status[capabilities])
    written = release.node.kubectl_result(
        "exec", "-n", NAMESPACE, name, "--", "python3", "-c", "open('/probe', 'w')"
    )
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] and resources["requests"]["cpu"]
    # The limit as the kernel applies it (cgroup v1 here; v2 names it memory.max).
    limit = release.node.kubectl(
        "exec", "-n", NAMESPACE, name, "--", "sh", "-c",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    ).strip()  # fmt: skip
    assert resources["limits"]["memory"] == "512Mi"
    assert int(limit) == 512 * 2**20


# -- the working Pod replaced in the middle of a sync ----------------------------------------------

PINS, PIN_SIZE = 40, 2_000_000
"""A sync long enough (80 MB at concurrency 1) to replace its Pod in the middle of it."""


@pytest.fixture
def sync(release: Release, tenant: Tenant) -> Iterator[Sync]:
    """A sync of PINS pins to a versioned bucket, under way (a few CARs written)."""
    world = cast(World, tenant)  # the helpers use .k8s, .namespace and .bucket only
    history = DirtyHistory(world)
    history.start()
    try:
        versioned(world)
        cids = [release.ipfs.add(os.urandom(PIN_SIZE)) for _ in range(PINS)]
        tenant.pinsets.create("p", {"cids": cids, "backends": ["minio"]})
        tenant.backend(sync={"concurrency": 1})
        eventually(lambda: 3 <= len(cars(world)) < PINS - 10, timeout=120, interval=0.05)
        yield Sync(release, tenant, world, cids, history)
    finally:
        history.stop()


@dataclasses.dataclass
class Sync:
    release: Release
    tenant: Tenant
    world: World
    cids: list[str]
    history: DirtyHistory

    def assert_completes_with_each_car_written_once(self, changes: int) -> None:
        """The sync completes. A replica stopped (or outranked) while it writes a CAR leaves it
        without a sidecar, and its successor writes it again: at most one CAR per one of the
        ``changes`` of the working replica, none three times. The dirty mark, set before,
        is cleared once."""
        status = wait_synced(self.tenant.backends, "minio", present=PINS, timeout=300)
        assert status["counts"]["present"] == PINS
        for cid in self.cids[:3] + self.cids[-3:]:
            assert self.tenant.bucket.read(f"pins/{cid}.car") == self.release.ipfs.export_car(cid)
        writes = writes_per_car(self.world)
        assert set(writes) == {f"pins/{cid}.car" for cid in self.cids}
        rewritten = {key: n for key, n in writes.items() if n != 1}
        assert len(rewritten) <= changes and all(n == 2 for n in rewritten.values()), rewritten
        eventually(lambda: self.history.clearings() >= 1, timeout=10)
        assert self.history.clearings() == 1


def test_the_standby_pod_takes_over_when_the_active_one_is_force_deleted_during_a_sync(
    release: Release, sync: Sync
) -> None:
    pods = sorted((p["metadata"]["name"] for p in release.pods()), key=peering.priority_of)
    standby, active = pods  # the higher priority works (priorities derive from Pod names)
    started = f"{sync.tenant.namespace}/minio: SyncStarted"
    assert started in release.logs(active) and started not in release.logs(standby)

    release.node.kubectl("delete", "pod", "-n", NAMESPACE, active, "--grace-period=0",
                         "--force", "--wait=false")  # fmt: skip
    deleted_at = time.monotonic()
    eventually(lambda: started in release.logs(standby), timeout=90, interval=0.2)
    takeover = time.monotonic() - deleted_at
    print(f"\nstandby Pod resumed the sync {takeover:.1f}s after the force-delete")

    # This handover, and another if the Deployment's new Pod outranks the standby.
    outranked = sum(
        "Pausing operations in favour of" in release.logs_so_far(pod["metadata"]["name"])
        for pod in release.pods()
    )
    sync.assert_completes_with_each_car_written_once(changes=1 + outranked)
    release.node.wait_rollout(NAMESPACE, f"deployment/{RELEASE}")


def test_helm_upgrade_to_a_new_tag_during_a_sync_rolls_the_pods_and_the_sync_completes(
    workdir: pathlib.Path, release: Release, sync: Sync
) -> None:
    repository, tag = release.image.rsplit(":", 1)
    release.node.ctr("images", "tag", release.image, f"{repository}:{tag}-next")
    before = {p["metadata"]["name"] for p in release.pods()}

    kubeconfig = f"--kubeconfig={release.node.kubeconfig}"
    helm(workdir, "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values",
         "--set", f"image.tag={tag}-next", kubeconfig)  # fmt: skip
    release.node.wait_rollout(NAMESPACE, f"deployment/{RELEASE}", timeout=180)
    pods = release.pods()
    assert not {p["metadata"]["name"] for p in pods} & before  # every Pod replaced
    assert all(p["spec"]["containers"][0]["image"].endswith("-next") for p in pods)
    # Two Pods replaced one at a time: the working one stops, and a new one may outrank.
    sync.assert_completes_with_each_car_written_once(changes=3)


def test_the_operators_peak_memory_after_these_syncs_is_well_under_its_limit(
    release: Release,
) -> None:
    # After the syncs above (the HA and upgrade ones on the Pods of the upgrade): the kernel's
    # high-water mark of each container's memory cgroup (v1 here; v2 names it memory.peak).
    for pod in release.pods():
        peak = release.node.kubectl(
            "exec", "-n", NAMESPACE, pod["metadata"]["name"], "--", "sh", "-c",
            "cat /sys/fs/cgroup/memory.peak 2>/dev/null || "
            "cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes",
        ).strip()  # fmt: skip
        print(f"\n{pod['metadata']['name']}: peak memory {int(peak) / 2**20:.0f} MiB of 512 MiB")
        assert int(peak) < 512 * 2**20 / 2
