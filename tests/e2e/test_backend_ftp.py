"""The FTP backend end to end: real API server, real Kubo, a real FTP server, the operator."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import kubernetes
import pytest

from pinsync.devenv import ftpserver, kubo
from tests.conftest import Operator
from tests.e2e.filetree import assert_pins_stored_as_files, sync_two_pins
from tests.kubetools import Objects, create_secret

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ftp(workdir: pathlib.Path) -> Iterator[ftpserver.FtpServer]:
    server = ftpserver.FtpServer(workdir / "ftp-e2e", name="ftp-e2e")
    try:
        yield server.start()
    finally:
        server.stop()


def test_pins_are_stored_on_an_ftp_server_byte_identical(
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    ipfs: kubo.Kubo,
    operator: Operator,
    ftp: ftpserver.FtpServer,
) -> None:
    directory = ftp.home / namespace
    directory.mkdir()  # the base path must exist, as a bucket must
    create_secret(k8s, namespace, "ftp", {"username": ftp.username, "password": ftp.password})
    backends = Objects(k8s, namespace, "storagebackends")
    pinsets = Objects(k8s, namespace, "pinsets")
    backends.create(
        "ftp",
        {
            "type": "ftp",
            "ftp": {"host": ftp.host, "port": ftp.port, "basePath": namespace},
            "credentialsSecretRef": {"name": "ftp"},
        },
    )
    cids = sync_two_pins(backends, pinsets, "ftp", ipfs)

    assert_pins_stored_as_files(directory, cids, ipfs)
    assert ftp.password not in json.dumps(backends.get("ftp"))
    assert ftp.password not in operator.log()
