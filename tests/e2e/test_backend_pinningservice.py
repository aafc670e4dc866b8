"""A ``type: pinningService`` StorageBackend end to end: real API server, Kubo, the operator as a
subprocess, and ipfs-cluster's real Pinning Service API (``pinsvcapi``) as the provider. The
cluster pins on the same Kubo the PinSet's CIDs were added to; the bearer token is the JWT the
cluster issues, so the credentials Secret is part of the path under test. The schema's own
rules for the block (CEL) are checked against the API server too.
"""

from __future__ import annotations

import json
import os

import kubernetes
import pytest

from pinsync.devenv import cluster, kubo
from tests.conftest import Operator
from tests.e2e.test_validation import backends as backend_objects
from tests.e2e.test_validation import rejection
from tests.kubetools import Objects, create_secret, wait_synced

pytestmark = pytest.mark.e2e


def test_pinset_cids_are_pinned_by_the_service_and_the_backend_is_synced(
    operator: Operator,
    ipfs_cluster: cluster.IpfsCluster,
    ipfs: kubo.Kubo,
    k8s: kubernetes.client.ApiClient,
    namespace: str,
) -> None:
    provider = ipfs_cluster  # its pinsvcapi is the provider
    prefix, token = f"pinsync-{namespace}/", provider.token()
    create_secret(k8s, namespace, "psa", {"token": token})
    backends = Objects(k8s, namespace, "storagebackends")
    backends.create(
        "psa",
        {
            "type": "pinningService",
            "pinningService": {
                "endpoint": provider.pinsvc_url,
                "namePrefix": prefix,
                "meta": {"owner": "e2e"},
            },
            "credentialsSecretRef": {"name": "psa"},
        },
    )
    backends.wait_condition("psa", "Healthy", "True", timeout=60)
    cids = [ipfs.add(os.urandom(300_000)) for _ in range(2)]
    pinsets = Objects(k8s, namespace, "pinsets")
    pinsets.create("media", {"cids": cids, "backends": ["psa"]})

    status = wait_synced(backends, "psa", present=2)
    assert status["counts"] == {"desired": 2, "present": 2, "missing": 0, "failed": 0}
    last = status["lastSync"]
    # Both uploaded, no bytes sent: the service fetched the content itself.
    assert (last["result"], last["uploaded"], last["bytes"]) == ("Succeeded", 2, 0)
    backends.wait_condition("psa", "Ready", "True", "Synced")

    node_id = json.loads(ipfs.ipfs("id"))["ID"]
    for cid in cids:
        peers = provider.status(cid)["peer_map"].values()
        assert [peer["status"] for peer in peers] == ["pinned"], cid
        pin = provider.allocation(cid)
        assert pin is not None and pin["name"] == prefix + cid
        assert pin["metadata"]["owner"] == "e2e"
        assert pin["metadata"]["pinsync/pinset"] in {"media", f"{namespace}/media"}
        # The operator offered its Kubo node as the origin to fetch from.
        assert pin["origins"] and all(o.endswith(f"/p2p/{node_id}") for o in pin["origins"])
    pinsets.wait_condition("media", "Ready", "True")
    log = operator.log()
    assert token not in log and str(provider.password) not in log


def test_the_schema_rejects_a_bad_pinning_service_block(
    k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    objects = backend_objects(k8s, namespace)

    def rejected(block: dict[str, object]) -> str:
        return rejection(objects, {"type": "pinningService", "pinningService": block})

    assert "spec.pinningService must be set" in rejection(objects, {"type": "pinningService"})
    assert "https://" in rejected({"endpoint": "ftp://psa.example"})
    assert "must not hold credentials" in rejected({"endpoint": "https://u:p@psa.example"})
    assert "pinsync writes it" in rejected(
        {"endpoint": "https://psa.example", "meta": {"pinsync/pinset": "x"}}
    )
    assert "origins" in rejected({"endpoint": "https://psa.example", "origins": ["1.2.3.4"]})
    objects.create("fine", {"type": "pinningService", "pinningService": {"endpoint": "https://x"}})
    spec = objects.get("fine")["spec"]["pinningService"]
    assert spec == {"endpoint": "https://x", "namePrefix": "pinsync/"}  # the default applied
