"""The FTP backend end to end: real API server, real Kubo, a real FTP server, the operator."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from pinsync.devenv import ftpserver, kubo
from tests.conftest import Operator
from tests.kubetools import Objects, create_secret, eventually

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
    cids = [ipfs.add(os.urandom(size)) for size in (200_000, 3_000_000)]
    pinsets.create("media", {"cids": cids, "backends": ["ftp"]})

    def synced() -> dict[str, Any]:
        status = backends.get("ftp").get("status") or {}
        assert not status["dirty"]["dirty"], status
        assert status.get("counts", {}).get("present") == 2, status
        return status

    status = eventually(synced, timeout=120)
    assert status["counts"] == {"desired": 2, "present": 2, "missing": 0, "failed": 0}
    backends.wait_condition("ftp", "Synced", "True")
    backends.wait_condition("ftp", "Ready", "True")
    backends.wait_condition("ftp", "Healthy", "True")
    pinsets.wait_condition("media", "Ready", "True")

    for cid in cids:
        car = (directory / f"{cid}.car").read_bytes()
        assert car == ipfs.export_car(cid)
        sidecar = json.loads((directory / f"{cid}.json").read_text())
        assert (sidecar["cid"], sidecar["size"]) == (cid, len(car))
    assert sorted(p.name for p in directory.iterdir() if p.is_file()) == sorted(
        f"{cid}{ext}" for cid in cids for ext in (".car", ".json")
    )
    assert list((directory / ".tmp").iterdir()) == []  # no temporary file left behind
    assert ftp.password not in json.dumps(backends.get("ftp"))
    assert ftp.password not in operator.log()
