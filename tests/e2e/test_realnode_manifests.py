"""The plain manifests on the real node, as README installs them: ``kubectl apply --server-side
-f crds/`` then ``kubectl apply -k`` of an overlay on ``manifests/`` that only says which image
(local, never pulled) and where Kubo is -- what a user's own overlay would say.

After test_realnode (its Helm release is uninstalled by then: two installations in one
cluster would share the ``pinsync`` peering and serve the same objects).
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Iterator

import pytest
import yaml

from pinsync.devenv import kubo, minio, realnode, tools
from tests.conftest import ROOT
from tests.e2e.conftest import Tenant
from tests.kubetools import wait_synced

pytestmark = pytest.mark.e2e
NAMESPACE = "pinsync-system"


@pytest.fixture(scope="module")
def overlay(
    tmp_path_factory: pytest.TempPathFactory,
    real_node: realnode.Node,
    host_servers: tuple[minio.MinIO, kubo.Kubo],
) -> Iterator[pathlib.Path]:
    image = real_node.import_image(tools.image("operator"))
    repository, tag = image.rsplit(":", 1)
    path = tmp_path_factory.mktemp("overlay")
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "pinsync", "namespace": NAMESPACE},
        "spec": {"template": {"spec": {"containers": [{
            "name": "operator",
            "imagePullPolicy": "Never",
            "env": [{"name": "PINSYNC_IPFS_API_URL", "value": host_servers[1].api_url}],
        }]}}},
    }  # fmt: skip
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "manifests", path)],
        "images": [{"name": "ghcr.io/pinsync/pinsync", "newName": repository, "newTag": tag}],
        "patches": [{"patch": yaml.safe_dump(patch)}],
    }
    (path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    yield path
    real_node.kubectl("delete", "-k", str(path), "--wait=true", "--timeout=120s")


def test_kubectl_apply_of_crds_and_manifests_runs_the_operator_and_it_syncs(
    real_node: realnode.Node, host_servers: tuple[minio.MinIO, kubo.Kubo], overlay: pathlib.Path
) -> None:
    started = time.monotonic()
    real_node.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    real_node.kubectl("apply", "-k", str(overlay))
    real_node.wait_rollout(NAMESPACE, "deployment/pinsync", timeout=180)
    print(f"\nkubectl apply to every Pod Ready: {time.monotonic() - started:.1f}s")
    pods = json.loads(real_node.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)

    s3, ipfs = host_servers
    tenant = Tenant(real_node, s3)
    cids = [ipfs.add(os.urandom(20_000)) for _ in range(2)]
    tenant.pinsets.create("media", {"cids": cids, "backends": ["minio"]})
    tenant.backend()
    tenant.backends.wait_condition("minio", "Ready", "True", timeout=120)
    wait_synced(tenant.backends, "minio", present=2)
    assert {f"pins/{cid}.car" for cid in cids} <= tenant.bucket.keys()
