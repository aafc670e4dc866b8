"""The huggingface backend end to end: real API server, real Kubo, the operator, and the Hub
*contract fake* (``pinsync.devenv.hubfake``; no Hub server can be installed here).

Configured as a Hub user would: ``type: huggingface``, ``repo: owner/name``, a Secret with
``token``; the fake stands in for ``endpoint``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
from collections.abc import Iterator

import httpx
import kubernetes
import pytest
import yaml

from pinsync.backends import layout
from pinsync.devenv import hubfake, kubo
from tests.conftest import Operator
from tests.e2e.filetree import sync_two_pins
from tests.kubetools import Objects, create_secret, wait_synced

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hub(workdir: pathlib.Path) -> Iterator[hubfake.HubFake]:
    server = hubfake.HubFake(workdir / "hub-e2e")
    try:
        yield server.start()
    finally:
        server.stop()


def hub_backend(
    backends: Objects,
    hub: hubfake.HubFake,
    name: str,
    repo: str,
    sync: dict[str, object] | None = None,
    **spec: object,
) -> None:
    """A huggingface StorageBackend on the fake, with the Secret ``hf`` of the test."""
    block = {"repo": repo, "endpoint": hub.endpoint, **spec}
    backend = {"type": "huggingface", "huggingface": block, "credentialsSecretRef": {"name": "hf"}}
    backends.create(name, {**backend, **({"sync": sync} if sync else {})})


def made_repo(
    k8s: kubernetes.client.ApiClient, namespace: str, hub: hubfake.HubFake, name: str, token: str
) -> tuple[str, Objects]:
    """A fresh repository on the fake and the Secret ``hf`` holding ``token``."""
    repo = f"{hub.user}/{name}-{namespace}"
    hub.make_repo(repo)
    create_secret(k8s, namespace, "hf", {"token": token})
    return repo, Objects(k8s, namespace, "storagebackends")


def test_pins_are_committed_to_a_hub_dataset_byte_identical(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    ipfs: kubo.Kubo,
    operator: Operator,
    hub: hubfake.HubFake,
) -> None:
    repo = f"{hub.user}/{namespace}"
    create_secret(k8s, namespace, "hf", {"token": hub.token})
    backends = Objects(k8s, namespace, "storagebackends")
    pinsets = Objects(k8s, namespace, "pinsets")
    hub_backend(backends, hub, "hub", repo=repo, createRepo=True)
    cids = sync_two_pins(backends, pinsets, "hub", ipfs)

    state = hub.state(repo)
    for cid in cids:
        path = f"pinsync/{layout.shard(cid)}/{cid}.car"
        url = f"{hub.endpoint}/datasets/{repo}/resolve/main/{path}"
        car = httpx.get(url, headers={"Authorization": f"Bearer {hub.token}"}).content
        assert car == ipfs.export_car(cid)
        assert state["files"][path]["lfs"]["size"] == len(car)
    # Created private, both pins in one commit after the repository's first, all through LFS.
    assert state["stats"]["commits"] == 2
    assert (state["stats"]["lfs_files"], state["stats"]["regular_files"]) == (2, 0)
    assert httpx.get(f"{hub.endpoint}/api/datasets/{repo}").status_code == 401
    assert hub.token not in json.dumps(backends.get("hub"))
    assert hub.token not in operator.log()


def test_a_read_only_token_is_stalled_permission_denied(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    operator: Operator,
    hub: hubfake.HubFake,
) -> None:
    repo, backends = made_repo(k8s, namespace, hub, "ro", hub.read_token)
    hub_backend(backends, hub, "ro", repo=repo)
    backends.wait_condition("ro", "Healthy", "False", "PermissionDenied")
    backends.wait_condition("ro", "Stalled", "True", "PermissionDenied")
    assert hub.read_token not in json.dumps(backends.get("ro"))


def test_a_missing_repository_without_create_repo_is_stalled(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    operator: Operator,
    hub: hubfake.HubFake,
) -> None:
    create_secret(k8s, namespace, "hf", {"token": hub.token})
    backends = Objects(k8s, namespace, "storagebackends")
    hub_backend(backends, hub, "nowhere", repo=f"{hub.user}/missing-{namespace}")
    backends.wait_condition("nowhere", "Stalled", "True", "RepositoryNotFound")


def test_a_429_is_reported_and_its_reset_waited_out_before_the_sync(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    ipfs: kubo.Kubo,
    operator: Operator,
    hub: hubfake.HubFake,
) -> None:
    repo, backends = made_repo(k8s, namespace, hub, "limited", hub.token)
    pinsets = Objects(k8s, namespace, "pinsets")
    hub.control("rate-limit", {"retryAfter": 20, "count": 1})
    hub_backend(backends, hub, "limited", repo=repo)
    cid = ipfs.add(os.urandom(50_000))
    pinsets.create("one", {"cids": [cid], "backends": ["limited"]})
    backends.wait_condition("limited", "Ready", "False", "RateLimited")
    started, asked = time.monotonic(), hub.requests()
    time.sleep(12)  # inside the 20 s the Hub asked for: nobody asks it anything
    assert hub.requests() == asked
    wait_synced(backends, "limited", present=1, timeout=120)
    assert time.monotonic() - started >= 8  # not before the RateLimit reset (no Retry-After)
    backends.wait_condition("limited", "Ready", "True")


@pytest.fixture
def pruning(
    k8s: kubernetes.client.ApiClient, namespace: str, operator: Operator, hub: hubfake.HubFake
) -> tuple[str, Objects]:
    """A StorageBackend ``pruned`` (deletionPolicy Prune) on a fresh repository of the fake."""
    repo, backends = made_repo(k8s, namespace, hub, "pruned", hub.token)
    hub_backend(backends, hub, "pruned", repo=repo, sync={"deletionPolicy": "Prune"})
    return repo, backends


def test_a_prune_is_one_commit_and_gives_the_storage_back(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    ipfs: kubo.Kubo,
    hub: hubfake.HubFake,
    pruning: tuple[str, Objects],
) -> None:
    """Pins no PinSet wants any more leave in one commit, and their LFS objects with them:
    the account's private storage holds the kept pin only."""
    repo, backends = pruning
    pinsets = Objects(k8s, namespace, "pinsets")
    cids = [ipfs.add(os.urandom(30_000)) for _ in range(3)]
    pinsets.create("p", {"cids": cids, "backends": ["pruned"]})
    wait_synced(backends, "pruned", present=3)
    before = hub.state(repo)["stats"]["commits"]
    pinsets.patch("p", {"spec": {"cids": cids[:1]}})
    wait_synced(backends, "pruned", present=1)
    state = hub.state(repo)
    assert state["stats"]["commits"] == before + 1
    assert state["stats"]["lfs_deleted"] == 2
    kept = ipfs.export_car(cids[0])
    assert state["lfs"] == {hashlib.sha256(kept).hexdigest(): len(kept)}  # what storage counts


def test_the_example_is_accepted_by_the_crd_with_its_defaults(
    k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    example = yaml.safe_load(
        (pathlib.Path(__file__).parents[2] / "examples/backends/huggingface.yaml").read_text()
    )
    backends = Objects(k8s, namespace, "storagebackends")
    backends.create(example["metadata"]["name"], example["spec"])
    block = backends.get("hub-mirror")["spec"]["huggingface"]
    assert (block["revision"], block["basePath"], block["private"]) == ("main", "pinsync", True)
    assert block["batch"] == {"maxPins": 100, "maxBytes": 4294967296}
