"""The github backend end to end: real API server, real Kubo, a real git smart-HTTP server
(lighttpd + ``git http-backend``), the operator.

Configured the way a GitHub user would: ``type: github``, the repository's https-style URL, a
Secret with ``token`` (the server takes it as the password of ``x-access-token``, as GitHub
does).
"""

from __future__ import annotations

import json

import kubernetes
import pytest

from pinsync.backends import layout
from pinsync.devenv import gitserver, kubo
from tests.conftest import Operator
from tests.e2e.filetree import sync_two_pins
from tests.kubetools import Objects, create_secret, eventually

pytestmark = pytest.mark.e2e


def test_pins_are_committed_to_a_git_repository_byte_identical(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    ipfs: kubo.Kubo,
    operator: Operator,
    git_server: gitserver.GitServer,
) -> None:
    repo = git_server.make_repo(namespace)
    create_secret(k8s, namespace, "git", {"token": git_server.token})
    backends = Objects(k8s, namespace, "storagebackends")
    pinsets = Objects(k8s, namespace, "pinsets")
    backends.create(
        "repo",
        {
            "type": "github",
            "github": {"url": git_server.repo_url(namespace), "basePath": "ipfs"},
            "credentialsSecretRef": {"name": "git"},
            # The first audit may run before the PinSet exists (and measure nothing): a short
            # interval has a later one measure the committed pins.
            "audit": {"interval": "2s"},
        },
    )
    cids = sync_two_pins(backends, pinsets, "repo", ipfs)

    ref = "refs/heads/main"
    for cid in cids:
        where = f"ipfs/{layout.shard(cid)}/{cid}"
        car = gitserver.git("show", f"{ref}:{where}.car", cwd=repo)
        assert car == ipfs.export_car(cid)
        sidecar = json.loads(gitserver.git("show", f"{ref}:{where}.json", cwd=repo))
        assert (sidecar["cid"], sidecar["size"]) == (cid, len(car))
    files = gitserver.git("ls-tree", "-r", "--name-only", ref, cwd=repo).decode().split()
    assert len(files) == 4
    # Both pins in one commit on an otherwise empty branch: one batch, one commit.
    assert gitserver.git("rev-list", "--count", ref, cwd=repo).strip() == b"1"
    usage = eventually(lambda: (backends.get("repo")["status"]["usage"] or {})["objects"] == 4)
    assert usage
    usage = backends.get("repo")["status"]["usage"]
    assert usage["bytes"] > sum(len(ipfs.export_car(cid)) for cid in cids)
    assert "freeBytes" not in usage or usage["freeBytes"] is None
    assert git_server.token not in json.dumps(backends.get("repo"))
    assert git_server.token not in operator.log()


def test_a_repository_that_does_not_exist_is_stalled(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    operator: Operator,
    git_server: gitserver.GitServer,
) -> None:
    create_secret(k8s, namespace, "git", {"token": git_server.token})
    backends = Objects(k8s, namespace, "storagebackends")
    backends.create(
        "nowhere",
        {
            "type": "github",
            "github": {"url": git_server.repo_url(f"missing-{namespace}")},
            "credentialsSecretRef": {"name": "git"},
        },
    )
    backends.wait_condition("nowhere", "Healthy", "False", "RepositoryNotFound")
    backends.wait_condition("nowhere", "Stalled", "True", "RepositoryNotFound")
