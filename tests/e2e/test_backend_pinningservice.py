"""A ``type: pinningService`` StorageBackend end to end: real API server, Kubo, the operator as a
subprocess, and ipfs-cluster's real Pinning Service API (``pinsvcapi``) as the provider. The
cluster pins on the same Kubo the PinSet's CIDs were added to; the bearer token is the JWT the
cluster issues, so the credentials Secret is part of the path under test. The schema's own
rules for the block (CEL) are checked against the API server too.

Then the same against a provider that answers as Pinata was recorded answering
(:mod:`pinsync.devenv.psafake`): default settings sync without ``INVALID_ORIGINS``, the first
audit finds nothing missing, Prune deletes (``DELETE`` answered ``200 OK`` in text), and a
prune the service fails shows in status and is retried until it succeeds.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from pinsync.devenv import cluster, kubo, psafake
from tests.conftest import Operator
from tests.e2e.test_validation import backends as backend_objects
from tests.e2e.test_validation import rejection
from tests.kubetools import Objects, create_secret, eventually, wait_synced

RECORDED = pathlib.Path(__file__).parents[1] / "backends" / "data" / "psa_recorded.json"

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

    for cid in cids:
        peers = provider.status(cid)["peer_map"].values()
        assert [peer["status"] for peer in peers] == ["pinned"], cid
        pin = provider.allocation(cid)
        assert pin is not None and pin["name"] == prefix + cid
        assert pin["metadata"]["owner"] == "e2e"
        assert pin["metadata"]["pinsync/pinset"] in {"media", f"{namespace}/media"}
        # The node listens on loopback only: no address the API allows as an origin.
        assert pin["origins"] == []
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


@pytest.fixture(scope="module")
def pinata(workdir: pathlib.Path) -> Iterator[psafake.PsaFake]:
    """A provider answering as Pinata was recorded answering; its rate limit (10 listings per
    5 s here) is used up by a sync of 25 pins, so the operator has to wait for its resets."""
    fake = psafake.PsaFake(
        workdir / "pinata", "pinata", recorded=RECORDED, rate_limit=10, rate_window=5.0
    )
    try:
        yield fake.start()
    finally:
        fake.stop()


def test_a_provider_answering_as_pinata_syncs_audits_and_prunes_with_default_settings(
    operator: Operator,
    pinata: psafake.PsaFake,
    ipfs: kubo.Kubo,
    k8s: kubernetes.client.ApiClient,
    namespace: str,
) -> None:
    create_secret(k8s, namespace, "pinata", {"token": pinata.token})
    backends = Objects(k8s, namespace, "storagebackends")
    spec = {"endpoint": pinata.url, "namePrefix": f"pinsync-{namespace}/"}
    sync = {"deletionPolicy": "Prune"}
    backend = {"type": "pinningService", "pinningService": spec, "sync": sync}
    backends.create("pinata", {**backend, "credentialsSecretRef": {"name": "pinata"}})
    cids = [ipfs.add(os.urandom(2000)) for _ in range(25)]
    pinsets = Objects(k8s, namespace, "pinsets")
    pinsets.create("media", {"cids": cids, "backends": ["pinata"]})

    status = wait_synced(backends, "pinata", present=25, timeout=180)
    assert status["counts"]["failed"] == 0 and status["counts"]["pruneFailed"] == 0
    requests = pinata.state()["requests"]
    assert not [r for r in requests if r["status"] in (400, 429)]  # no INVALID_ORIGINS, no 429
    assert sum(r["method"] == "POST" for r in requests) == 25
    mine = [p for p in pinata.state()["pins"] if p["pin"]["name"].startswith(spec["namePrefix"])]
    assert sorted(p["pin"]["cid"] for p in mine) == sorted(cids)

    # The first audit (right after the first sync) lists all 25: nothing missing, no drift.
    audit = eventually(lambda: backends.get("pinata")["status"]["lastAudit"], timeout=120)
    assert (audit["missing"], audit["damaged"]) == (0, 0)
    events = kubernetes.client.CoreV1Api(k8s).list_namespaced_event(namespace).items
    assert not [e for e in events if e.reason == "DriftDetected"]

    # Prune: Pinata answers DELETE with 200 text/plain "OK", which is success.
    keep = cids[:15]
    pinsets.patch("media", {"spec": {"cids": keep}})
    status = wait_synced(backends, "pinata", present=15, timeout=120)
    eventually(lambda: len(held(pinata, spec["namePrefix"])) == 15, timeout=60)
    assert held(pinata, spec["namePrefix"]) == set(keep)
    assert backends.get("pinata")["status"]["counts"]["pruneFailed"] == 0

    # A service that fails deletions: counted, listed with its reason, an event, not Synced.
    pinata.fail_deletes(500)
    pinsets.patch("media", {"spec": {"cids": keep[:12]}})

    def prune_failed() -> dict[str, Any]:
        # Between retries (the pass itself shows Synced False/Syncing while it runs).
        status: dict[str, Any] = backends.get("pinata")["status"]
        assert status["counts"]["pruneFailed"] == 3, status["counts"]
        synced = next(c for c in status["conditions"] if c["type"] == "Synced")
        assert (synced["status"], synced["reason"]) == ("False", "SyncFailed"), synced
        assert "3 pin(s) could not be pruned" in synced["message"]
        return status

    status = eventually(prune_failed, timeout=120)
    failures = {f["cid"]: f for f in status["failures"]}
    assert set(failures) == set(keep[12:])
    assert {f["reason"] for f in failures.values()} == {"PruneFailed"}
    assert all("ServiceError" in f["message"] and f["nextRetryAt"] for f in failures.values())
    events = kubernetes.client.CoreV1Api(k8s).list_namespaced_event(namespace).items
    assert [e for e in events if e.reason == "SyncFailed" and "pruned" in (e.message or "")]

    # Deleting works again: the next retry (backoff, 5-10 s after the first) prunes them.
    pinata.fail_deletes(None)
    status = wait_synced(backends, "pinata", present=12, timeout=120)
    assert status["counts"]["pruneFailed"] == 0 and not status.get("failures")
    assert held(pinata, spec["namePrefix"]) == set(keep[:12])
    assert pinata.token not in operator.log()


def held(fake: psafake.PsaFake, prefix: str) -> set[str]:
    """The CIDs of the pin requests named with ``prefix`` on the stand-in."""
    pins = fake.state()["pins"]
    return {p["pin"]["cid"] for p in pins if p["pin"].get("name", "").startswith(prefix)}
