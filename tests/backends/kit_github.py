"""The github backend in the contract suite, against a real git smart-HTTP server: Debian's
lighttpd running ``git http-backend`` with basic auth (``pinsync.devenv.gitserver``).

Every location is a fresh bare repository. Reaching behind the backend is git on the server's
bare repository: plumbing commits a file at the pin's sharded path (another writer, as far as
the backend can tell), ``ls-tree`` lists what the branch holds. Names the suite uses
(``<cid>.car``) are mapped to the sharded layout (``<basePath>/<shard>/<cid>.car``) here.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from pinsync.backends import base, layout
from pinsync.devenv import gitserver
from pinsync.devenv.processes import free_port

from .conftest import ServerKit


def cid_of(name: str) -> str:
    for suffix in (".car", ".json"):
        if suffix in name:
            return name[: name.index(suffix)]
    return name


class GithubKit(ServerKit):
    """Username + password logins against the session's git server; a fresh repo per location."""

    type_ = "github"
    reasons = {"missing_location": "RepositoryNotFound"}

    def __init__(self, server: gitserver.GitServer) -> None:
        self.server = server
        self.wrong_password = f"wrong-{uuid.uuid4().hex}"

    def config(self, url: str, **extra: Any) -> dict[str, Any]:
        return {"url": url, "branch": "main", "basePath": "pinsync", **extra}

    def credentials(self, password: str | None = None) -> base.Credentials:
        return base.Credentials(
            data={"username": self.server.username, "password": password or self.server.password}
        )

    def fresh_repo(self, **options: Any) -> str:
        name = f"contract-{uuid.uuid4().hex[:12]}"
        self.server.make_repo(name, **options)
        return self.server.repo_url(name)

    def good(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(self.fresh_repo()), self.credentials()

    def wrong_credentials(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(self.fresh_repo()), self.credentials(self.wrong_password)

    def unreachable(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(f"http://127.0.0.1:{free_port()}/git/x.git"), self.credentials()

    def missing_location(self) -> tuple[dict[str, Any], base.Credentials]:
        missing = self.server.repo_url(f"contract-missing-{uuid.uuid4().hex[:12]}")
        return self.config(missing), self.credentials()

    def secrets(self) -> list[str]:
        return [self.server.password, self.server.token, self.wrong_password]

    # -- behind the backend ----------------------------------------------------------------------

    def repo_dir(self, backend: base.Backend) -> pathlib.Path:
        name = str(backend.config["url"]).rsplit("/", 1)[1].removesuffix(".git")
        return self.server.repo_path(name)

    def ref(self, backend: base.Backend) -> str:
        return f"refs/heads/{backend.config.get('branch', 'main')}"

    def path(self, backend: base.Backend, name: str) -> str:
        prefix = str(backend.config.get("basePath", "pinsync")).strip("/")
        return f"{prefix}/{layout.shard(cid_of(name))}/{name}"

    def head(self, backend: base.Backend) -> str | None:
        try:
            out = gitserver.git(
                "rev-parse", "--verify", "-q", self.ref(backend), cwd=self.repo_dir(backend)
            )
        except gitserver.GitServerError:
            return None
        return out.decode().strip()

    def write_raw(self, backend: base.Backend, name: str, data: bytes) -> None:
        """Commit ``data`` at the pin file's path on the branch, as another writer would."""
        self.commit_files(backend, {self.path(backend, name): data})

    def commit_files(self, backend: base.Backend, files: dict[str, bytes]) -> str:
        repo, ref = self.repo_dir(backend), self.ref(backend)
        head = self.head(backend)
        with tempfile.TemporaryDirectory() as scratch:
            env = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
            if head:
                gitserver.git("read-tree", head, cwd=repo, env=env)
            for path, data in files.items():
                oid = gitserver.git("hash-object", "-w", "--stdin", cwd=repo, input=data)
                entry = f"100644,{oid.decode().strip()},{path}"
                gitserver.git("update-index", "--add", "--cacheinfo", entry, cwd=repo, env=env)
            tree = gitserver.git("write-tree", cwd=repo, env=env).decode().strip()
        parents = ["-p", head] if head else []
        commit = gitserver.git("commit-tree", tree, *parents, "-m", "another writer", cwd=repo)
        new = commit.decode().strip()
        gitserver.git("update-ref", ref, new, *([head] if head else []), cwd=repo)
        return new

    def list_raw(self, backend: base.Backend) -> dict[str, int]:
        """{file name: size} of every file under the base path on the branch (shards folded)."""
        if self.head(backend) is None:
            return {}
        prefix = str(backend.config.get("basePath", "pinsync")).strip("/")
        out = gitserver.git(
            "ls-tree", "-r", "-l", self.ref(backend), "--", f"{prefix}/", cwd=self.repo_dir(backend)
        )
        found: dict[str, int] = {}
        for line in out.decode().splitlines():
            meta, path = line.split("\t", 1)
            found[path.rsplit("/", 1)[1]] = int(meta.split()[3])
        return found

    def incomplete_uploads(self, backend: base.Backend, names: Iterable[str]) -> list[str]:
        """Spooled parts left behind by a failed put (nothing partial can reach the repo)."""
        spool = getattr(backend, "_spool_dir", None)
        left = os.listdir(spool.name) if spool is not None else []
        return list(names) if left else []


@pytest.fixture(scope="session")
def github_kit(workdir: pathlib.Path) -> Iterator[GithubKit]:
    """lighttpd + git http-backend on a free loopback port, once per session."""
    server = gitserver.GitServer(workdir / "git")
    try:
        yield GithubKit(server.start())
    finally:
        server.cleanup()
