"""The operator works with exactly the RBAC that ``manifests/rbac.yaml`` grants, and no more."""

from __future__ import annotations

import os
import pathlib

import kubernetes
import pytest
import yaml

from pinsync.devenv import controlplane, kubo, minio
from tests.conftest import ROOT, Operator
from tests.kubetools import Objects, create_secret, eventually, wait_synced

pytestmark = pytest.mark.e2e
ACCOUNT = "system:serviceaccount:pinsync-system:pinsync"


def service_account_kubeconfig(
    admin: pathlib.Path,
    target: pathlib.Path,
    account: str = "pinsync",
    namespace: str = "pinsync-system",
) -> pathlib.Path:
    token = controlplane.kubectl(admin, "create", "token", account, "-n", namespace).strip()
    config = yaml.safe_load(admin.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o600)
    return target


@pytest.fixture(scope="module")
def rbac(kubeconfig: pathlib.Path) -> pathlib.Path:
    for name in ("namespace.yaml", "rbac.yaml"):
        controlplane.kubectl(kubeconfig, "apply", "-f", str(ROOT / "manifests" / name))
    return kubeconfig


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("watch", "storagebackends.pinsync.io", True),
        ("patch", "storagebackends.pinsync.io/status", True),
        ("get", "secrets", True),
        ("create", "events", True),
        ("create", "secrets", False),
        ("delete", "storagebackends.pinsync.io", False),
        ("create", "pods", False),
    ],
)
def test_the_service_account_may_do_what_the_operator_needs_only(
    rbac: pathlib.Path, verb: str, resource: str, allowed: bool
) -> None:
    done = controlplane.kubectl_status(
        rbac, "auth", "can-i", verb, resource, f"--as={ACCOUNT}", "--all-namespaces"
    )
    assert done == ("yes" if allowed else "no")


def test_the_operator_syncs_with_the_service_accounts_rights_only(
    rbac: pathlib.Path,
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    operator: Operator,
    ipfs: kubo.Kubo,
    s3server: minio.MinIO,
    workdir: pathlib.Path,
) -> None:
    restricted_dir = workdir / "rbac-operator"
    restricted_dir.mkdir(exist_ok=True)
    restricted = Operator(
        restricted_dir,
        service_account_kubeconfig(rbac, restricted_dir / "kubeconfig"),
        operator.env,
    )
    operator.stop()  # one operator at a time
    restricted.start()
    try:
        bucket = f"rbac-{namespace}"
        s3server.make_bucket(bucket)
        create_secret(
            k8s,
            namespace,
            "minio",
            {"accessKeyId": s3server.access_key, "secretAccessKey": s3server.secret_key},
        )
        backends = Objects(k8s, namespace, "storagebackends")
        backends.create(
            "minio",
            {
                "type": "s3",
                "s3": {"endpoint": s3server.endpoint, "bucket": bucket, "forcePathStyle": True},
                "credentialsSecretRef": {"name": "minio"},
            },
        )
        cid = ipfs.add(os.urandom(10_000))
        Objects(k8s, namespace, "pinsets").create("p", {"cids": [cid], "backends": ["minio"]})
        wait_synced(backends, "minio", present=1)
        core = kubernetes.client.CoreV1Api(k8s)

        def synced_event() -> bool:  # kopf posts events in the background, after the status
            return "Synced" in {e.reason for e in core.list_namespaced_event(namespace).items}

        assert eventually(synced_event, timeout=30)
        assert "Forbidden" not in restricted.log() and " 403" not in restricted.log()
    finally:
        restricted.stop()
        operator.start()
