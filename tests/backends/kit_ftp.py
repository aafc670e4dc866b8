"""The FTP backend in the contract suite: a real pyftpdlib server in a subprocess.

Every location is a fresh directory in the server user's home, so the kit reaches behind the
backend simply through the file system: the server's files are our files.
"""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pinsync.backends import base
from pinsync.devenv import ftpserver
from pinsync.devenv.processes import free_port

from .conftest import FileTreeKit


class FtpKit(FileTreeKit):
    """Plain FTP (passive mode) against the session's pyftpdlib server."""

    type_ = "ftp"
    reasons = {"missing_location": "PathNotFound"}

    def __init__(self, server: ftpserver.FtpServer) -> None:
        self.server = server
        self.wrong_password = f"wrong-{uuid.uuid4().hex}"

    def config(self, base_path: str, port: int | None = None) -> dict[str, Any]:
        return {
            "host": self.server.host,
            "port": port or self.server.port,
            "basePath": base_path,
            "passive": True,
        }

    def credentials(self, password: str | None = None) -> base.Credentials:
        return base.Credentials(
            data={"username": self.server.username, "password": password or self.server.password}
        )

    def fresh_dir(self) -> str:
        name = f"contract-{uuid.uuid4().hex[:12]}"
        (self.server.home / name).mkdir()
        return name

    def good(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(self.fresh_dir()), self.credentials()

    def wrong_credentials(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(self.fresh_dir()), self.credentials(self.wrong_password)

    def unreachable(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config("pinsync", port=free_port()), self.credentials()

    def missing_location(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(f"contract-missing-{uuid.uuid4().hex[:12]}"), self.credentials()

    def secrets(self) -> list[str]:
        return [self.server.password, self.wrong_password]

    def directory(self, backend: base.Backend) -> pathlib.Path:
        return self.server.home / str(backend.config["basePath"])


@pytest.fixture(scope="session")
def ftp_kit(workdir: pathlib.Path) -> Iterator[FtpKit]:
    server = ftpserver.FtpServer(workdir / "ftp")
    try:
        yield FtpKit(server.start())
    finally:
        server.stop()
