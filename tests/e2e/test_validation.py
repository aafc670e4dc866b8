"""Invalid resources are rejected by the API server itself, with the schema's message."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.kubetools import Objects

CID_V1 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"


def rejection(objects: Objects, spec: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        objects.create("bad", spec)
    assert caught.value.status in (400, 422), caught.value
    body = json.loads(caught.value.body)
    return str(body.get("message"))


def backends(k8s: kubernetes.client.ApiClient, namespace: str) -> Objects:
    return Objects(k8s, namespace, "storagebackends")


def test_unknown_type_is_rejected(k8s: kubernetes.client.ApiClient, namespace: str) -> None:
    message = rejection(backends(k8s, namespace), {"type": "dropbox", "s3": {"bucket": "abc"}})
    assert "spec.type" in message and "Unsupported value" in message


def test_two_config_blocks_are_rejected(k8s: kubernetes.client.ApiClient, namespace: str) -> None:
    spec = {"type": "s3", "s3": {"bucket": "abc"}, "ftp": {"host": "x"}}
    message = rejection(backends(k8s, namespace), spec)
    assert "exactly one backend configuration block" in message


def test_block_not_matching_type_is_rejected(
    k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    message = rejection(backends(k8s, namespace), {"type": "s3", "ftp": {"host": "x"}})
    assert "spec.s3 must be set when type is s3" in message


def test_unknown_field_is_rejected(k8s: kubernetes.client.ApiClient, namespace: str) -> None:
    spec = {"type": "s3", "s3": {"bucket": "abc", "bukket": "typo"}}
    assert 'unknown field "spec.s3.bukket"' in rejection(backends(k8s, namespace), spec)


def test_type_is_immutable(k8s: kubernetes.client.ApiClient, namespace: str) -> None:
    objects = backends(k8s, namespace)
    objects.create("fixed", {"type": "s3", "s3": {"bucket": "abc"}})
    with pytest.raises(ApiException) as caught:
        objects.patch("fixed", {"spec": {"type": "ftp", "s3": None, "ftp": {"host": "h"}}})
    assert "spec.type is immutable" in json.loads(caught.value.body)["message"]


def test_malformed_cid_is_rejected(k8s: kubernetes.client.ApiClient, namespace: str) -> None:
    pinsets = Objects(k8s, namespace, "pinsets")
    message = rejection(pinsets, {"cids": [CID_V1, "not-a-cid"], "backends": ["b"]})
    assert "spec.cids[1]" in message and "should match" in message


def test_a_pinset_too_large_for_etcd_is_refused_by_the_schema(
    k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    """30,000 CIDs are 'etcdserver: request is too large' if the schema lets them through."""
    pinsets = Objects(k8s, namespace, "pinsets")
    message = rejection(pinsets, {"cids": [CID_V1] * 20_001, "backends": ["b"]})
    assert "spec.cids" in message and "at most 20000 items" in message
    long_cid = "b" + "a" * 250  # matches the pattern; 6,000 of them are 1.5 MB of CIDs
    message = rejection(pinsets, {"cids": [long_cid] * 6_000, "backends": ["b"]})
    assert "would not fit etcd's 1.5 MiB object limit" in message


def test_pinset_without_source_is_rejected(
    k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    message = rejection(Objects(k8s, namespace, "pinsets"), {"backends": ["b"]})
    assert (
        "a PinSet needs spec.cids, spec.fromNode, spec.fromCluster or spec.fromBackend" in message
    )


FROM_CLUSTER = {
    "apiUrl": "http://cluster.ipfs:9094",
    "namePrefix": "media/",
    "metadata": {"team": "media"},
    "credentialsSecretRef": {"name": "cluster-api"},
    "peers": [
        {
            "peer": "12D3KooWCFLALxqTwPsS573sqFL3g5vQDtZGgpV9w6CNWLFBjWca",
            "ipfsApiUrl": "http://ipfs-0.ipfs:5001",
        },
        {"peer": "peer-1", "ipfsApiUrl": "https://ipfs-1.ipfs:5001/"},
    ],
}


def test_a_pinset_from_a_cluster_alone_is_accepted(
    k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    created = Objects(k8s, namespace, "pinsets").create(
        "cluster", {"fromCluster": FROM_CLUSTER, "backends": ["b"]}
    )
    assert created["spec"]["fromCluster"] == FROM_CLUSTER
    assert "cids" not in created["spec"] and "fromNode" not in created["spec"]


def test_from_cluster_needs_an_http_api_url_and_distinct_peers(
    k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    pinsets = Objects(k8s, namespace, "pinsets")
    without = {key: value for key, value in FROM_CLUSTER.items() if key != "apiUrl"}
    message = rejection(pinsets, {"fromCluster": without, "backends": ["b"]})
    assert "spec.fromCluster.apiUrl: Required value" in message
    message = rejection(pinsets, {"fromCluster": {"apiUrl": "cluster:9094"}, "backends": ["b"]})
    assert "spec.fromCluster.apiUrl" in message and "should match" in message
    twice = [{"peer": "peer-0", "ipfsApiUrl": f"http://ipfs-{n}:5001"} for n in range(2)]
    spec = {"fromCluster": {**FROM_CLUSTER, "peers": twice}, "backends": ["b"]}
    message = rejection(pinsets, spec)
    assert "spec.fromCluster.peers[1]" in message and "Duplicate value" in message
    many = {f"key{n}": "value" for n in range(17)}
    spec = {"fromCluster": {**FROM_CLUSTER, "metadata": many}, "backends": ["b"]}
    message = rejection(pinsets, spec)
    assert "spec.fromCluster.metadata" in message and "at most 16" in message


def test_valid_cids_of_both_versions_are_accepted(
    k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    created = Objects(k8s, namespace, "pinsets").create(
        "ok", {"cids": [CID_V1, CID_V0], "backends": ["b"]}
    )
    assert created["spec"]["cids"] == [CID_V1, CID_V0]
