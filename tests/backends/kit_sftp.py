"""The SFTP backend in the contract suite, against a real OpenSSH ``sshd`` on this machine.

The server's files are on the local disk, so reaching behind the backend (corrupting a CAR,
looking for leftover temporary files) is plain filesystem access.
"""

from __future__ import annotations

import os
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pinsync.backends import base
from pinsync.devenv import sshd
from pinsync.devenv.processes import free_port

from .conftest import FileTreeKit


class SftpKit(FileTreeKit):
    """SFTP against the session's sshd: a fresh directory (owned by the login user) per location;
    key authentication, except where a password is the point."""

    type_ = "sftp"
    reasons = {"missing_location": "PathNotFound"}

    def __init__(self, server: sshd.SSHD) -> None:
        self.server = server
        self.wrong_password = f"wrong-{uuid.uuid4().hex}"

    def config(self, base_path: str, *, port: int | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "host": self.server.host,
            "port": port or self.server.port,
            "username": self.server.username,
            "basePath": base_path,
            "knownHosts": self.server.known_hosts,
            **extra,
        }

    def key_credentials(self) -> base.Credentials:
        return base.Credentials(data={"privateKey": self.server.private_key})

    def password_credentials(self, password: str | None = None) -> base.Credentials:
        secret = password or self.server.password
        if secret is None:
            pytest.skip("the test sshd has no password login (not run as root)")
        return base.Credentials(data={"password": secret})

    def fresh_dir(self, mode: int = 0o755) -> pathlib.Path:
        return self.server.make_dir(f"contract-{uuid.uuid4().hex[:12]}", mode)

    def good(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(str(self.fresh_dir())), self.key_credentials()

    def wrong_credentials(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(str(self.fresh_dir())), self.password_credentials(self.wrong_password)

    def unreachable(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(str(self.fresh_dir()), port=free_port()), self.key_credentials()

    def missing_location(self) -> tuple[dict[str, Any], base.Credentials]:
        missing = self.server.root / f"contract-missing-{uuid.uuid4().hex[:12]}"
        return self.config(str(missing)), self.key_credentials()

    def secrets(self) -> list[str]:
        key_lines = self.server.private_key.strip().splitlines()[1:-1]
        return [
            self.server.private_key,
            *[line for line in key_lines if len(line) >= 32],
            *([self.server.password] if self.server.password else []),
            self.wrong_password,
        ]

    # -- behind the backend ----------------------------------------------------------------------

    def free_bytes(self, backend: base.Backend) -> int:
        vfs = os.statvfs(self.directory(backend))
        return vfs.f_bavail * vfs.f_frsize

    def directory(self, backend: base.Backend) -> pathlib.Path:
        return pathlib.Path(str(backend.config["basePath"]))

    def own(self, path: pathlib.Path) -> None:
        os.chown(path, self.server.uid, self.server.gid)


@pytest.fixture(scope="session")
def sftp_kit(workdir: pathlib.Path) -> Iterator[SftpKit]:
    """A real OpenSSH server on a free loopback port (see ``pinsync.devenv.sshd``), once per
    session. (Only ``*_kit`` names of this module reach the suite's conftest.)"""
    server = sshd.SSHD(workdir / "sshd")
    try:
        yield SftpKit(server.start())
    finally:
        server.cleanup()
