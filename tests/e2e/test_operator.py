"""The operator against the real API server: validation conditions, generations, restarts."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

from tests.conftest import Operator
from tests.kubetools import Objects, create_secret, eventually

pytestmark = pytest.mark.e2e

CID_V1 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
S3_SPEC: dict[str, Any] = {
    "type": "s3",
    "s3": {"bucket": "nowhere", "endpoint": "http://127.0.0.1:9", "forcePathStyle": True},
    "credentialsSecretRef": {"name": "creds"},
}


@pytest.fixture
def backends(k8s: kubernetes.client.ApiClient, namespace: str, operator: Operator) -> Objects:
    return Objects(k8s, namespace, "storagebackends")


@pytest.fixture
def pinsets(k8s: kubernetes.client.ApiClient, namespace: str, operator: Operator) -> Objects:
    return Objects(k8s, namespace, "pinsets")


def test_missing_secret_is_reported_and_cleared_when_it_appears(
    k8s: kubernetes.client.ApiClient, namespace: str, backends: Objects
) -> None:
    backends.create("b1", S3_SPEC)
    cond = backends.wait_condition("b1", "Ready", "False", "SecretNotFound")
    assert "creds" in cond["message"]
    assert backends.condition("b1", "Stalled")["status"] == "True"  # type: ignore[index]

    create_secret(k8s, namespace, "creds", {"accessKeyId": "AKIAEXAMPLE"})
    backends.wait_condition("b1", "Ready", "False", "SecretKeyMissing")
    assert "secretAccessKey" in backends.condition("b1", "Ready")["message"]  # type: ignore[index]

    kubernetes.client.CoreV1Api(k8s).patch_namespaced_secret(
        "creds", namespace, {"stringData": {"secretAccessKey": "s3cr3t-value-never-logged"}}
    )
    backends.wait_condition("b1", "Stalled", "False")
    status = backends.get("b1")["status"]
    assert "s3cr3t-value-never-logged" not in json.dumps(status)


def test_a_secret_with_a_token_and_a_username_and_password_is_ambiguous(
    k8s: kubernetes.client.ApiClient, namespace: str, backends: Objects
) -> None:
    """Which one a git backend would use is not for the user to guess: neither is used."""
    values = {"token": "t0ken-never-shown", "username": "u", "password": "pa55-never-shown"}
    create_secret(k8s, namespace, "git", values)
    backends.create(
        "git",
        {
            "type": "github",
            "github": {"url": "https://git.example/acme/pins.git"},
            "credentialsSecretRef": {"name": "git"},
        },
    )
    cond = backends.wait_condition("git", "Stalled", "True", "InvalidConfig")
    assert "holds both token and password/username" in cond["message"]
    assert "never-shown" not in json.dumps(backends.get("git")["status"])
    kubernetes.client.CoreV1Api(k8s).patch_namespaced_secret(
        "git", namespace, {"data": {"username": None, "password": None}}
    )
    eventually(lambda: backends.condition("git", "Stalled")["reason"] != "InvalidConfig")


def test_observed_generation_follows_spec_and_transition_times_stay_stable(
    k8s: kubernetes.client.ApiClient, namespace: str, backends: Objects
) -> None:
    backends.create("b2", S3_SPEC)
    backends.wait_condition("b2", "Ready", "False", "SecretNotFound")
    eventually(lambda: backends.get("b2")["status"].get("observedGeneration") == 1)
    before = backends.condition("b2", "Ready")

    # A label change does not bump the generation and must not move transition times.
    backends.patch("b2", {"metadata": {"labels": {"touch": "1"}}})
    backends.patch("b2", {"spec": {"healthCheck": {"interval": "7m"}}})
    eventually(lambda: backends.get("b2")["status"].get("observedGeneration") == 2)
    after = backends.condition("b2", "Ready")
    assert after is not None and before is not None
    assert after["lastTransitionTime"] == before["lastTransitionTime"]
    assert after["observedGeneration"] == 2


def test_pinset_reports_missing_backends_until_they_exist(
    k8s: kubernetes.client.ApiClient, namespace: str, backends: Objects, pinsets: Objects
) -> None:
    pinsets.create("p1", {"cids": [CID_V1], "backends": ["later"], "ipfs": {"pinTimeout": "1s"}})
    cond = pinsets.wait_condition("p1", "Ready", "False", "BackendNotFound")
    assert "later" in cond["message"]
    create_secret(k8s, namespace, "creds", {"accessKeyId": "a", "secretAccessKey": "b"})
    backends.create("later", S3_SPEC)
    pinsets.wait_condition("p1", "Stalled", "False")
    counts = pinsets.get("p1")["status"]["counts"]
    assert counts["pins"] == 1 and counts["backends"] == 1


def test_operator_restart_rereads_state_from_status(
    k8s: kubernetes.client.ApiClient, namespace: str, backends: Objects, operator: Operator
) -> None:
    backends.create("b3", S3_SPEC)
    first = backends.wait_condition("b3", "Ready", "False", "SecretNotFound")
    operator.stop()
    # While the operator is down, the world changes; after restart it must catch up from state.
    backends.patch("b3", {"spec": {"suspend": True}})
    operator.start()
    backends.wait_condition("b3", "Ready", "False", "Suspended")
    assert backends.get("b3")["status"]["observedGeneration"] == 2
    backends.patch("b3", {"spec": {"suspend": False}})
    again = backends.wait_condition("b3", "Ready", "False", "SecretNotFound")
    assert again["lastTransitionTime"] >= first["lastTransitionTime"]


def test_pinset_with_20000_cids_is_accepted_and_handled(  # the schema allows at most 20,000
    k8s: kubernetes.client.ApiClient, namespace: str, backends: Objects, pinsets: Objects
) -> None:
    from multiformats import CID, multihash

    cids = [
        str(CID("base32", 1, "raw", multihash.digest(i.to_bytes(4, "big"), "sha2-256")))
        for i in range(19_999)
    ]
    create_secret(k8s, namespace, "creds", {"accessKeyId": "a", "secretAccessKey": "b"})
    backends.create("big-target", S3_SPEC)
    spec = {"cids": cids, "backends": ["big-target"], "ipfs": {"pinTimeout": "1s"}}
    pinsets.create("big", spec)
    eventually(lambda: pinsets.get("big")["status"]["counts"]["pins"] == 19_999, timeout=120)
    # Random CIDs nobody provides: the node cannot pin them, which the PinSet reports.
    pinsets.wait_condition("big", "Reconciling", "True")
    # Later updates still go through: kopf's bookkeeping must not exceed the annotation limit.
    pinsets.patch("big", {"spec": {"cids": [*cids, CID_V1]}})
    eventually(lambda: pinsets.get("big")["status"]["counts"]["pins"] == 20_000, timeout=120)
    annotations = pinsets.get("big")["metadata"].get("annotations") or {}
    assert sum(len(k) + len(v) for k, v in annotations.items()) < 256 * 1024 // 16
    pinsets.api.delete_namespaced_custom_object(
        "pinsync.io", "v1alpha1", pinsets.namespace, "pinsets", "big"
    )
    eventually(
        lambda: (
            not pinsets.api.list_namespaced_custom_object(
                "pinsync.io", "v1alpha1", pinsets.namespace, "pinsets"
            )["items"]
        ),
        timeout=60,
    )
