"""The SFTP backend end to end: real API server, real Kubo, a real OpenSSH sshd, the operator.

Configured the way a user would: ``type: sshfs`` (the alias), key login from a Secret, the
server's host key pinned with a known_hosts line.
"""

from __future__ import annotations

import json
import os

import kubernetes
import pytest

from pinsync.devenv import kubo, sshd
from tests.conftest import Operator
from tests.e2e.filetree import assert_pins_stored_as_files, sync_two_pins
from tests.kubetools import Objects, create_secret, eventually

pytestmark = pytest.mark.e2e


def test_pins_are_stored_on_an_sftp_server_byte_identical(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    ipfs: kubo.Kubo,
    operator: Operator,
    ssh_server: sshd.SSHD,
) -> None:
    directory = ssh_server.make_dir(namespace)  # the base path must exist, as a bucket must
    create_secret(k8s, namespace, "ssh", {"privateKey": ssh_server.private_key})
    backends = Objects(k8s, namespace, "storagebackends")
    pinsets = Objects(k8s, namespace, "pinsets")
    backends.create(
        "box",
        {
            "type": "sshfs",
            "sftp": {
                "host": ssh_server.host,
                "port": ssh_server.port,
                "username": ssh_server.username,
                "basePath": str(directory),
                "knownHosts": ssh_server.known_hosts,
            },
            "credentialsSecretRef": {"name": "ssh"},
        },
    )
    cids = sync_two_pins(backends, pinsets, "box", ipfs)

    assert_pins_stored_as_files(directory, cids, ipfs)
    # The audit after the first sync measures usage, free space from OpenSSH's statvfs.
    usage = eventually(lambda: backends.get("box")["status"]["usage"])
    assert usage["objects"] == 4
    vfs = os.statvfs(directory)
    assert usage["freeBytes"] == pytest.approx(vfs.f_bavail * vfs.f_frsize, rel=0.01)
    key_body = ssh_server.private_key.strip().splitlines()[1]
    assert key_body not in json.dumps(backends.get("box"))
    assert key_body not in operator.log()


def test_a_host_key_trusted_on_first_use_is_kept_and_held_to_across_restarts(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    operator: Operator,
    ssh_server: sshd.SSHD,
) -> None:
    directory = ssh_server.make_dir(namespace)
    create_secret(k8s, namespace, "ssh", {"privateKey": ssh_server.private_key})
    backends = Objects(k8s, namespace, "storagebackends")
    sftp = {
        "host": ssh_server.host,
        "port": ssh_server.port,
        "username": ssh_server.username,
        "basePath": str(directory),
    }
    backends.create("tofu", {"type": "sftp", "sftp": sftp, "credentialsSecretRef": {"name": "ssh"}})
    cond = backends.wait_condition("tofu", "Healthy", "False", "HostKeyUnknown")
    assert ssh_server.host_key_fingerprint in cond["message"]  # what to pin, verified elsewhere

    backends.patch("tofu", {"spec": {"sftp": {"trustOnFirstUse": True}}})
    backends.wait_condition("tofu", "Healthy", "True")
    learned = backends.get("tofu")["status"]["learned"]
    assert learned == {"hostKeyFingerprint": ssh_server.host_key_fingerprint}

    # A new key after a restart (nothing in memory) is refused: the first one was recorded.
    ssh_server.rotate_host_key()
    operator.restart()
    backends.patch("tofu", {"metadata": {"annotations": {"pinsync.io/mark-dirty": "recheck"}}})
    backends.wait_condition("tofu", "Healthy", "False", "HostKeyMismatch")
