"""A ``type: ipfsCluster`` StorageBackend end to end: real API server, Kubo, IPFS Cluster, and
the operator as a subprocess. The cluster pins on the same Kubo the PinSet's CIDs were added
to, so the pins can complete without any network; basic auth on the cluster's REST API makes
the credentials Secret part of the path under test.
"""

from __future__ import annotations

import os

import kubernetes
import pytest

from pinsync.devenv import cluster, kubo
from tests.conftest import Operator
from tests.kubetools import Objects, create_secret, eventually

pytestmark = pytest.mark.e2e


def test_pinset_cids_are_pinned_on_the_cluster_and_the_backend_is_synced(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    ipfs: kubo.Kubo,
    ipfs_cluster: cluster.IpfsCluster,
    operator: Operator,
) -> None:
    assert ipfs_cluster.username is not None and ipfs_cluster.password is not None
    create_secret(
        k8s,
        namespace,
        "cluster",
        {"username": ipfs_cluster.username, "password": ipfs_cluster.password},
    )
    backends = Objects(k8s, namespace, "storagebackends")
    pinsets = Objects(k8s, namespace, "pinsets")
    prefix = f"pinsync-{namespace}/"
    backends.create(
        "cluster",
        {
            "type": "ipfsCluster",
            "ipfsCluster": {"apiUrl": ipfs_cluster.api_url, "pinNamePrefix": prefix},
            "credentialsSecretRef": {"name": "cluster"},
        },
    )
    backends.wait_condition("cluster", "Healthy", "True", timeout=60)
    cids = [ipfs.add(os.urandom(300_000)) for _ in range(2)]
    pinsets.create("media", {"cids": cids, "backends": ["cluster"]})

    def synced() -> bool:
        status = backends.get("cluster").get("status") or {}
        assert not status["dirty"]["dirty"], status.get("dirty")
        counts = status.get("counts")
        assert counts == {"desired": 2, "present": 2, "missing": 0, "failed": 0}, status
        return True

    eventually(synced, timeout=120)
    backends.wait_condition("cluster", "Synced", "True", "Synced")
    backends.wait_condition("cluster", "Ready", "True", "Synced")
    status = backends.get("cluster")["status"]
    assert status["lastSync"]["result"] == "Succeeded"
    assert status["lastSync"]["uploaded"] == 2
    assert status["lastSync"]["bytes"] == 0  # the cluster fetched the content itself

    for cid in cids:
        peers = ipfs_cluster.status(cid)["peer_map"].values()
        assert [peer["status"] for peer in peers] == ["pinned"], cid
        pin = ipfs_cluster.allocation(cid)
        assert pin is not None and pin["name"] == prefix + cid
        # The engine attributes by PinSet name (PinMeta documents namespace/name): accept both.
        assert pin["metadata"]["pinsync/pinset"] in {"media", f"{namespace}/media"}
    pinsets.wait_condition("media", "Ready", "True")
    assert ipfs_cluster.password not in operator.log()
