"""The FTP backend in the contract suite: a real pyftpdlib server in a subprocess.

Every location is a fresh directory in the server user's home, so the kit reaches behind the
backend simply through the file system: the server's files are our files.
"""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from pinsync.backends import base
from pinsync.devenv import ftpserver
from pinsync.devenv.processes import free_port

from .conftest import Kit


class FtpKit(Kit):
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

    def write_raw(self, backend: base.Backend, name: str, data: bytes) -> None:
        (self.directory(backend) / name).write_bytes(data)

    def read_raw(self, backend: base.Backend, name: str) -> bytes:
        return (self.directory(backend) / name).read_bytes()

    def list_raw(self, backend: base.Backend) -> dict[str, int]:
        """Regular files at the top of the base path (``.tmp`` is a directory: not listed)."""
        return {
            path.name: path.stat().st_size
            for path in self.directory(backend).iterdir()
            if path.is_file()
        }

    def incomplete_uploads(self, backend: base.Backend, names: Iterable[str]) -> list[str]:
        tmp = self.directory(backend) / ".tmp"
        left = [path.name for path in tmp.iterdir()] if tmp.is_dir() else []
        return [name for name in names if any(entry.startswith(f"{name}.") for entry in left)]

    def server_running(self) -> bool:
        return self.server.running

    def stop_server(self) -> None:
        self.server.stop()

    def start_server(self) -> None:
        self.server.start()


@pytest.fixture(scope="session")
def ftp_kit(workdir: pathlib.Path) -> Iterator[FtpKit]:
    server = ftpserver.FtpServer(workdir / "ftp")
    try:
        yield FtpKit(server.start())
    finally:
        server.stop()
