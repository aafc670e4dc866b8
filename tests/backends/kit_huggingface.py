"""The huggingface backend in the contract suite, against the Hub *contract fake*
(``pinsync.devenv.hubfake``): no Hub server can be installed here.

Every location is a fresh private dataset repository. The kit claims ``content`` but not
``raw``: the suite's raw tests are about sidecars, which this layout does not have (the LFS
pointer is the record); damage behind the backend's back is tested in ``test_huggingface.py``
through the fake's own controls.
"""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pinsync.backends import base
from pinsync.devenv import hubfake
from pinsync.devenv.processes import free_port

from .conftest import ServerKit


class HuggingfaceKit(ServerKit):
    type_ = "huggingface"
    reasons = {"missing_location": "RepositoryNotFound"}
    capabilities = frozenset({"content"})

    def __init__(self, server: hubfake.HubFake) -> None:
        self.server = server
        self.wrong_token = f"hf_wrong{uuid.uuid4().hex}"

    def config(self, repo: str, endpoint: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"endpoint": endpoint or self.server.endpoint, "repo": repo, **extra}

    def credentials(self, token: str | None = None) -> base.Credentials:
        return base.Credentials(data={"token": token or self.server.token})

    def fresh_repo(self) -> str:
        repo = f"{self.server.user}/contract-{uuid.uuid4().hex[:12]}"
        self.server.make_repo(repo)
        return repo

    def good(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(self.fresh_repo()), self.credentials()

    def wrong_credentials(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(self.fresh_repo()), self.credentials(self.wrong_token)

    def unreachable(self) -> tuple[dict[str, Any], base.Credentials]:
        closed = f"http://127.0.0.1:{free_port()}"
        return self.config("pinsync-test/x", endpoint=closed), self.credentials()

    def missing_location(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(
            f"{self.server.user}/missing-{uuid.uuid4().hex[:12]}"
        ), self.credentials()

    def secrets(self) -> list[str]:
        return [self.server.token, self.server.read_token, self.wrong_token]


@pytest.fixture(scope="session")
def huggingface_kit(workdir: pathlib.Path) -> Iterator[HuggingfaceKit]:
    # The api window is not what the suite's shared account is about (tests that use a quota up
    # run on accounts of their own): a Team organisation's 3,000 would do, a margin costs none.
    server = hubfake.HubFake(workdir / "hub", api=100_000)
    try:
        yield HuggingfaceKit(server.start())
    finally:
        server.stop()
