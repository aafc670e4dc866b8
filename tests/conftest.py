"""Session fixtures: a real kube-apiserver + etcd, Kubo, and the operator as a subprocess.

Everything is started once per session on free loopback ports and torn down at the end, also
when tests fail. ``PINSYNC_TEST_KUBECONFIG`` points the suite at an existing cluster instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import kubernetes
import pytest

from pinsync.devenv import cluster, controlplane, kubo, minio, processes, realnode

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def workdir() -> Iterator[pathlib.Path]:
    path = pathlib.Path(tempfile.mkdtemp(prefix="pinsync-test-"))
    yield path
    if not os.environ.get("PINSYNC_KEEP_WORKDIR"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def kubeconfig(workdir: pathlib.Path) -> Iterator[pathlib.Path]:
    existing = os.environ.get("PINSYNC_TEST_KUBECONFIG")
    if existing:
        path = pathlib.Path(existing)
        controlplane.install_crds(path, ROOT / "crds")
        yield path
        return
    with control_plane(workdir / "controlplane") as path:
        yield path


@contextlib.contextmanager
def control_plane(workdir: pathlib.Path) -> Iterator[pathlib.Path]:
    """A kube-apiserver + etcd of its own, with pinsync's CRDs; its kubeconfig. Stopped on exit."""
    plane = controlplane.ControlPlane(workdir)
    try:
        plane.start()
        controlplane.install_crds(plane.kubeconfig, ROOT / "crds")
        yield plane.kubeconfig
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def real_node(workdir: pathlib.Path) -> Iterator[realnode.Node]:
    """A real single-node cluster (kubelet, containerd, kube-proxy, CoreDNS...) for the tests
    that run the operator as Pods. Its stop restores the host and fails the session's teardown
    if something was left behind; it runs on a failed or interrupted (Ctrl-C) session too."""
    with realnode.running(workdir / "node") as node:
        yield node


@pytest.fixture(scope="session")
def k8s(kubeconfig: pathlib.Path) -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="session")
def ipfs(workdir: pathlib.Path) -> Iterator[kubo.Kubo]:
    node = kubo.Kubo(workdir / "kubo")
    try:
        yield node.start()
    finally:
        node.stop()


@pytest.fixture(scope="session")
def s3server(workdir: pathlib.Path) -> Iterator[minio.MinIO]:
    """A real MinIO server; tests create their own buckets (see ``minio.MinIO.make_bucket``)."""
    server = minio.MinIO(workdir / "minio")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster_pair(
    workdir: pathlib.Path, request: pytest.FixtureRequest
) -> Iterator[tuple[cluster.Member, cluster.Member]]:
    """A real two-peer IPFS Cluster, one per test module: peers ``peer-0`` and ``peer-1`` of
    one CRDT cluster, each in front of a Kubo of its own (swarm-connected), both REST APIs with
    the same basic-auth user (``member.peer.auth``); ready once both list each other in
    ``GET /peers``. Each item is a :class:`pinsync.devenv.cluster.Member` (``.peer``, ``.kubo``).
    """
    module = request.module.__name__.rsplit(".", 1)[-1]
    with cluster.two_peers(workdir / f"cluster-pair-{module}-{uuid.uuid4().hex[:6]}") as pair:
        yield pair


class Operator:
    """The operator as a subprocess (``python -m pinsync run``), restartable by tests."""

    def __init__(
        self,
        workdir: pathlib.Path,
        kubeconfig: pathlib.Path,
        env: dict[str, str],
        args: Sequence[str] = (),
    ):
        self.workdir, self.kubeconfig, self.env, self.args = workdir, kubeconfig, env, [*args]
        self.process: processes.Process | None = None
        self.metrics_port = processes.free_port()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> Operator:
        self.process = processes.Process(
            "operator",
            [
                sys.executable,
                "-m",
                "pinsync",
                "run",
                f"--kubeconfig={self.kubeconfig}",
                f"--metrics-port={self.metrics_port}",
                "--metrics-addr=127.0.0.1",
                "-v",
                *self.args,
            ],
            workdir=self.workdir,
            env=self.env,
        ).start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=20)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.popen is not None, "not running"
        return self.process.popen.pid

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        """Until ``text`` is in the log; fails early (with the log's tail) if the process exits."""
        assert self.process is not None, "not started"
        self.process.wait_until(lambda: text in self.log(), timeout=timeout, what=repr(text))

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace") if self.process else ""


@pytest.fixture(scope="session")
def operator(
    workdir: pathlib.Path, kubeconfig: pathlib.Path, ipfs: kubo.Kubo
) -> Iterator[Operator]:
    env = {
        "PINSYNC_IPFS_API_URL": ipfs.api_url,
        "PINSYNC_RETRY_INTERVAL": "2",
        "PINSYNC_RESYNC_INTERVAL": "30",
    }
    running = Operator(workdir, kubeconfig, env).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def namespace(k8s: kubernetes.client.ApiClient) -> str:
    """A fresh namespace per test, so tests never see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubernetes.client.CoreV1Api(k8s).create_namespace({"metadata": {"name": name}})
    return name


def _pending_tasks() -> set[asyncio.Task[Any]]:
    """Every unfinished task of every event loop (``asyncio.all_tasks`` sees only one loop, and
    between tests no loop is running). The registry's name changed in Python 3.12."""
    registry = getattr(asyncio.tasks, "_scheduled_tasks", None)
    if registry is None:
        registry = getattr(asyncio.tasks, "_all_tasks", ())
    eager = getattr(asyncio.tasks, "_eager_tasks", ())
    return {task for task in [*registry, *eager] if not task.done()}


@pytest.fixture(autouse=True)
def no_leaked_tasks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a test that leaves an asyncio task running (kopf's ``_no_asyncio_pending_tasks``).

    A task nobody awaits outlives its test, and its error, if any, surfaces later as "Task
    exception was never retrieved" in some other test's log. Tasks that were running before
    the test (a session fixture's) are not the test's. What matters is the session loop most
    async tests share; a test on a loop of its own has its leftovers cancelled by pytest-asyncio
    when that loop closes.
    """
    before = _pending_tasks()
    yield
    leaked = _pending_tasks() - before
    if leaked:
        for task in leaked:
            task.cancel()
        names = ", ".join(sorted(repr(task.get_coro()) for task in leaked))
        pytest.fail(f"{request.node.nodeid} leaked {len(leaked)} asyncio task(s): {names}")
