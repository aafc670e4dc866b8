"""The contract-suite kit for ``type: pinningService``: the real IPFS Pinning Service API that
``ipfs-cluster-service`` serves (``pinsvcapi``), on the contract suite's own cluster peer.

It shares the ``ipfsCluster`` kit's peer (one cluster daemon for both suites) and its way of
putting content on the cluster's Kubo. The token is the JWT the cluster issues for its
basic-auth user, sent as a bearer token like any provider's API key; a wrong token is one
signed with another key. A "location" is a fresh ``namePrefix``; the "missing location" an
endpoint path where no API answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest

from pinsync.backends import base
from pinsync.devenv.processes import free_port
from tests.backends import kit_ipfscluster


def forged_token(issuer: str) -> str:
    """A well-formed HS256 JWT for ``issuer`` signed with a key the cluster does not know."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps({"iss": issuer}).encode())
    key = uuid.uuid4().hex.encode()
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(signature)}"


class PinningserviceKit(kit_ipfscluster.IpfsclusterKit):
    type_ = "pinningService"
    capabilities = frozenset()

    def __init__(self, shared: kit_ipfscluster.IpfsclusterKit) -> None:
        super().__init__(shared.cluster, shared.kubo)
        assert shared.cluster.username is not None
        self.token = shared.cluster.token()
        self.wrong_token = forged_token(shared.cluster.username)

    def psa_config(self, *, endpoint: str | None = None) -> dict[str, Any]:
        return {
            "endpoint": endpoint or self.cluster.pinsvc_url,
            "namePrefix": f"contract-{uuid.uuid4().hex[:12]}/",
        }

    def bearer(self, token: str | None = None) -> base.Credentials:
        return base.Credentials(data={"token": token or self.token})

    def good(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.psa_config(), self.bearer()

    def wrong_credentials(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.psa_config(), self.bearer(self.wrong_token)

    def unreachable(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.psa_config(endpoint=f"http://127.0.0.1:{free_port()}"), self.bearer()

    def missing_location(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.psa_config(endpoint=f"{self.cluster.pinsvc_url}/no-such-api"), self.bearer()

    def secrets(self) -> list[str]:
        assert self.cluster.password is not None
        return [self.token, self.wrong_token, self.cluster.password]

    def free_bytes(self, backend: base.Backend) -> int | None:
        return None  # the Pinning Service API reports no space


@pytest.fixture(scope="session")
def pinningservice_kit(ipfscluster_kit: kit_ipfscluster.IpfsclusterKit) -> PinningserviceKit:
    return PinningserviceKit(ipfscluster_kit)
