"""The e2e ``world``: one namespace with a MinIO-backed StorageBackend and helpers to drive it."""

from __future__ import annotations

import json
import os
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from pinsync.devenv import cluster, gitserver, kubo, minio, realnode, sshd
from pinsync.devenv import storacha as storacha_devenv
from tests.conftest import Operator
from tests.kubetools import Objects, create_secret, wait_synced


class Bucket:
    """A fresh MinIO bucket and a raw client to look into it (and to damage it)."""

    def __init__(self, server: minio.MinIO) -> None:
        self.name = f"b-{uuid.uuid4().hex[:10]}"
        server.make_bucket(self.name)
        self.client = server.client()

    def keys(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {item["Key"] for page in pages for item in page.get("Contents", ())}

    def read(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)


class World:
    """One namespace with a MinIO-backed StorageBackend and helpers to drive it."""

    def __init__(
        self,
        k8s: kubernetes.client.ApiClient,
        namespace: str,
        s3server: minio.MinIO,
        ipfs: kubo.Kubo,
        operator: Operator,
    ) -> None:
        self.k8s, self.namespace, self.ipfs, self.operator = k8s, namespace, ipfs, operator
        self.s3server = s3server
        self.bucket = Bucket(s3server)
        self.backends = Objects(k8s, namespace, "storagebackends")
        self.pinsets = Objects(k8s, namespace, "pinsets")
        create_secret(
            k8s,
            namespace,
            "minio",
            {"accessKeyId": s3server.access_key, "secretAccessKey": s3server.secret_key},
        )

    def backend(self, name: str = "minio", **spec: Any) -> None:
        self.backends.create(
            name,
            {
                "type": "s3",
                "s3": {
                    "endpoint": self.s3server.endpoint,
                    "bucket": self.bucket.name,
                    "prefix": "pins",
                    "forcePathStyle": True,
                },
                "credentialsSecretRef": {"name": "minio"},
                **spec,
            },
        )

    def add(self, count: int, size: int) -> list[str]:
        return [self.ipfs.add(os.urandom(size)) for _ in range(count)]

    def status(self, name: str = "minio") -> dict[str, Any]:
        return self.backends.get(name).get("status") or {}

    def wait_synced(
        self, name: str = "minio", timeout: float = 120, present: int | None = None
    ) -> dict[str, Any]:
        return wait_synced(self.backends, name, present=present, timeout=timeout)

    def assert_objects_match_kubo(self, cids: list[str]) -> None:
        keys = self.bucket.keys()
        for cid in cids:
            assert f"pins/{cid}.car" in keys and f"pins/{cid}.json" in keys
            car = self.bucket.read(f"pins/{cid}.car")
            assert car == self.ipfs.export_car(cid)
            sidecar = json.loads(self.bucket.read(f"pins/{cid}.json"))
            assert sidecar["size"] == len(car)

    def events(self) -> list[Any]:
        return kubernetes.client.CoreV1Api(self.k8s).list_namespaced_event(self.namespace).items


@pytest.fixture
def world(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    s3server: minio.MinIO,
    ipfs: kubo.Kubo,
    operator: Operator,
) -> Iterator[World]:
    yield World(k8s, namespace, s3server, ipfs, operator)


@pytest.fixture(scope="module")
def ipfs_cluster(workdir: pathlib.Path, ipfs: kubo.Kubo) -> Iterator[cluster.IpfsCluster]:
    """A single-peer IPFS Cluster on the session's Kubo (basic auth on), one per module: its
    REST API for ``ipfsCluster`` backends, its ``pinsvcapi`` for ``pinningService`` ones."""
    with cluster.running(workdir / f"e2e-cluster-{uuid.uuid4().hex[:8]}", ipfs.api_url) as peer:
        yield peer


@pytest.fixture(scope="module")
def ssh_server(workdir: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[sshd.SSHD]:
    """A real OpenSSH sshd for one test module (tests make their own directories in it)."""
    server = sshd.SSHD(workdir / f"sshd-{module_name(request)}")
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def host_servers(
    workdir: pathlib.Path, real_node: realnode.Node
) -> Iterator[tuple[minio.MinIO, kubo.Kubo]]:
    """MinIO and Kubo for the operator's Pods on the real node: on the host, listening on the
    node IP (Pods cannot reach the host's loopback; the session's servers listen there)."""
    s3 = minio.MinIO(workdir / "realnode-minio", host=real_node.ip)
    ipfs = kubo.Kubo(workdir / "realnode-kubo", host=real_node.ip)
    try:
        yield s3.start(), ipfs.start()
    finally:
        ipfs.stop()
        s3.stop()


class Tenant:
    """A namespace of its own on the real node, with a bucket and the Secret for it."""

    def __init__(self, node: realnode.Node, s3: minio.MinIO) -> None:
        self.node, self.s3 = node, s3
        self.namespace = f"t-{uuid.uuid4().hex[:8]}"
        self.k8s = kubernetes.config.new_client_from_config(config_file=str(node.kubeconfig))
        kubernetes.client.CoreV1Api(self.k8s).create_namespace(
            {"metadata": {"name": self.namespace}}
        )
        self.bucket = Bucket(s3)
        self.backends = Objects(self.k8s, self.namespace, "storagebackends")
        self.pinsets = Objects(self.k8s, self.namespace, "pinsets")
        create_secret(
            self.k8s,
            self.namespace,
            "minio",
            {"accessKeyId": s3.access_key, "secretAccessKey": s3.secret_key},
        )

    def backend(self, **spec: Any) -> None:
        self.backends.create(
            "minio",
            {
                "type": "s3",
                "s3": {
                    "endpoint": self.s3.endpoint,
                    "bucket": self.bucket.name,
                    "prefix": "pins",
                    "forcePathStyle": True,
                },
                "credentialsSecretRef": {"name": "minio"},
                **spec,
            },
        )


def module_name(request: pytest.FixtureRequest) -> str:
    return str(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def git_server(
    workdir: pathlib.Path, request: pytest.FixtureRequest
) -> Iterator[gitserver.GitServer]:
    """A real git smart-HTTP server (lighttpd + ``git http-backend``) for one test module."""
    server = gitserver.GitServer(workdir / f"git-{module_name(request)}")
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def storacha_service(
    workdir: pathlib.Path, request: pytest.FixtureRequest
) -> Iterator[storacha_devenv.StorachaService]:
    """The real Storacha upload service logic behind the bridge stand-in, for one module."""
    with storacha_devenv.running(workdir / f"storacha-{module_name(request)}") as server:
        yield server
