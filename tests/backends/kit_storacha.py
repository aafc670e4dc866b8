"""The storacha backend in the contract suite, against the real upload service logic of npm
``@storacha/upload-api`` behind a contract fake of Storacha's HTTP bridge
(``pinsync.devenv.storacha``).

Every location is a fresh provisioned space with its own bridge tokens. Wrong credentials are
another agent's ``X-Auth-Secret`` with the space's ``Authorization`` (the delegation is then
to someone else); the missing location is a space the tokens grant nothing on. The kit claims
``content`` but not ``raw``: the raw tests are about sidecars, which uploads do not have.
"""

from __future__ import annotations

import pathlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from pinsync.backends import base, storacha
from pinsync.devenv import storacha as service
from pinsync.devenv.processes import free_port

from .conftest import ServerKit


class StorachaKit(ServerKit):
    type_ = "storacha"
    reasons = {"missing_location": "SpaceNotDelegated"}
    capabilities = frozenset({"content"})

    def __init__(self, server: service.StorachaService) -> None:
        self.server = server
        self.wrong_secret = storacha.encode_secret(secrets.token_bytes(32))
        self.handed: list[str] = [self.wrong_secret]

    def config(self, space: str, endpoint: str | None = None) -> dict[str, Any]:
        url = endpoint or self.server.url
        return {
            "spaceDid": space,
            "endpoint": url,
            "gateway": self.server.url,
            "serviceDid": service.SERVICE_DID,
        }

    def credentials(self, space: service.Space, secret: str | None = None) -> base.Credentials:
        self.handed += [space.x_auth_secret, space.authorization]
        return base.Credentials(
            data={
                "xAuthSecret": secret or space.x_auth_secret,
                "authorization": space.authorization,
            }
        )

    def good(self) -> tuple[dict[str, Any], base.Credentials]:
        space = self.server.space()
        return self.config(space.did), self.credentials(space)

    def wrong_credentials(self) -> tuple[dict[str, Any], base.Credentials]:
        space = self.server.space()
        return self.config(space.did), self.credentials(space, self.wrong_secret)

    def unreachable(self) -> tuple[dict[str, Any], base.Credentials]:
        space = self.server.space()
        return self.config(space.did, f"http://127.0.0.1:{free_port()}"), self.credentials(space)

    def missing_location(self) -> tuple[dict[str, Any], base.Credentials]:
        space, other = self.server.space(), self.server.space()
        return self.config(other.did), self.credentials(space)

    def secrets(self) -> list[str]:
        return list(self.handed)


@pytest.fixture(scope="session")
def storacha_kit(workdir: pathlib.Path) -> Iterator[StorachaKit]:
    with service.running(workdir / "storacha") as server:
        yield StorachaKit(server)
