"""The contract-suite kit for ``type: ipfsCluster``: a real single-peer IPFS Cluster.

The cluster pins on the session's Kubo, so content a test puts must really be on that Kubo:
:meth:`IpfsclusterKit.prepare_content` writes the bytes there as one raw block (the same CID
the suite would compute for an object store). A "location" is a fresh ``pinNamePrefix``, which
is what scopes a backend's pins on a cluster; the "missing location" is an ``apiUrl`` path
where no REST API answers. The REST API wants basic auth, so wrong credentials are testable.
"""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pinsync.backends import base
from pinsync.devenv import cluster, kubo
from pinsync.devenv.processes import free_port
from tests.backends.conftest import Kit


class IpfsclusterKit(Kit):
    type_ = "ipfsCluster"
    capabilities = frozenset()

    def __init__(self, peer: cluster.IpfsCluster, node: kubo.Kubo) -> None:
        self.cluster, self.kubo = peer, node
        self.wrong_password = f"wrong-{uuid.uuid4().hex}"

    def config(self, *, prefix: str | None = None, api_url: str | None = None) -> dict[str, Any]:
        return {
            "apiUrl": api_url or self.cluster.api_url,
            "replicationFactorMin": -1,
            "replicationFactorMax": -1,
            "pinNamePrefix": prefix or f"contract-{uuid.uuid4().hex[:12]}/",
        }

    def credentials(self, password: str | None = None) -> base.Credentials:
        assert self.cluster.username is not None and self.cluster.password is not None
        return base.Credentials(
            data={
                "username": self.cluster.username,
                "password": password or self.cluster.password,
            }
        )

    def good(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(), self.credentials()

    def wrong_credentials(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(), self.credentials(self.wrong_password)

    def unreachable(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(api_url=f"http://127.0.0.1:{free_port()}"), self.credentials()

    def missing_location(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(api_url=f"{self.cluster.api_url}/no-such-api"), self.credentials()

    def secrets(self) -> list[str]:
        assert self.cluster.password is not None
        return [self.cluster.password, self.wrong_password]

    def free_bytes(self, backend: base.Backend) -> int:
        """The peer's own ``freespace`` metric (one peer: it is also the smallest)."""
        (metric,) = self.cluster.get("/monitor/metrics/freespace").json()
        return int(metric["value"])

    def prepare_content(self, data: bytes) -> str:
        """Put ``data`` on the cluster's Kubo as a single raw block; its CID is the raw CID.

        One block, however large (``allow-big-block``): the cluster then pins something whose
        CID the suite could also have computed, and no network fetch is involved.
        """
        response = httpx.post(
            f"{self.kubo.api_url}/api/v0/block/put",
            params={"cid-codec": "raw", "mhtype": "sha2-256", "allow-big-block": "true"},
            files={"data": ("data", data)},
            timeout=120,
        )
        response.raise_for_status()
        cid: str = response.json()["Key"]
        return cid


@pytest.fixture(scope="session")
def ipfscluster_kit(workdir: pathlib.Path, ipfs: kubo.Kubo) -> Iterator[IpfsclusterKit]:
    with cluster.running(workdir / "ipfscluster", ipfs.api_url) as peer:
        yield IpfsclusterKit(peer, ipfs)
