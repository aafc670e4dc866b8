"""A real git smart-HTTP server on a free loopback port: Debian's lighttpd running Debian's
``git http-backend`` (git's own smart-HTTP server) as CGI, behind HTTP basic auth.

This is the set-up ``git help http-backend`` documents for lighttpd (``alias.url`` onto the
backend, ``cgi.assign``, ``GIT_PROJECT_ROOT``), with ``mod_auth`` requiring a login for every
request, as a private GitHub repository does. Repositories are bare repositories under
``<workdir>/repos`` (``make_repo``); each gets GitHub's rules where they matter to a client:

* a ``pre-receive`` hook refusing any pushed file over 100 MB (GitHub's hard limit), with
  GitHub's wording (``GH001: Large files detected``). The limit is the repository's git config
  ``pinsync.maxfilesize`` (bytes), so a test can lower it instead of pushing 100 MB;
* the same hook refusing a push that brings more than 2 GiB of blobs (GitHub's push limit; the
  blobs the pushed commits add, as ``git rev-list --objects old..new`` lists them, not the pack's
  exact size), with GitHub's wording (``fatal: pack exceeds maximum allowed size``). The limit is
  the git config ``pinsync.maxpushsize`` (bytes);
* ``uploadpack.allowFilter`` (partial clone / ``--filter=blob:none``, which GitHub serves) and
  ``uploadpack.allowAnySHA1InWant`` (fetching a blob by id, as a partial clone does lazily);
* ``receive.denyNonFastForwards``, so a force push would be refused, not silently taken.

``make_repo(writable=False)`` makes a repository whose ``http.receivepack`` is off: the
backend answers a push with 403, as GitHub does to a token without write access. A missing
repository answers 404.

Two logins: ``username``/``password``, and ``x-access-token``/``token`` (how GitHub takes a
token over HTTPS). Run it with ``GitServer(workdir).start()``; ``stop()``/``start()`` keep the
port and the data.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import socket
import subprocess
from collections.abc import Mapping

from pinsync.devenv.processes import Process, Server, free_port

LIGHTTPD = "/usr/sbin/lighttpd"
HTTP_BACKEND_CANDIDATES = (
    "/usr/lib/git-core/git-http-backend",
    "/usr/libexec/git-core/git-http-backend",
)
MAX_FILE_SIZE = 100 * 1024 * 1024
"""GitHub's per-file limit (100 MiB as GitHub counts it)."""
MAX_PUSH_SIZE = 2 * 1024 * 1024 * 1024
"""GitHub's per-push limit (2 GiB)."""

PRE_RECEIVE = r"""#!/bin/sh
# GitHub's limits: refuse a push that adds a blob larger than the file limit, or more bytes of
# blobs in all than the push limit.
limit=$(git config --int pinsync.maxfilesize || echo {default})
push_limit=$(git config --int pinsync.maxpushsize || echo {default_push})
zero=0000000000000000000000000000000000000000
status=0
pushed=0
while read old new ref; do
  [ "$new" = "$zero" ] && continue
  if [ "$old" = "$zero" ]; then range="$new --not --all"; else range="$old..$new"; fi
  objects=$(git rev-list --objects $range |
            git cat-file --batch-check='%(objecttype) %(objectsize) %(rest)')
  big=$(echo "$objects" |
        awk -v limit="$limit" '$1 == "blob" && $2 > limit {{ print $3 " is " $2 " bytes" }}')
  if [ -n "$big" ]; then
    echo "error: GH001: Large files detected. You may want to try Git Large File Storage."
    echo "$big" | sed "s/^/error: File /; s/\$/; this exceeds the file size limit of $limit bytes/"
    status=1
  fi
  pushed=$((pushed + $(echo "$objects" | awk '$1 == "blob" {{ n += $2 }} END {{ print n + 0 }}')))
done
if [ "$pushed" -gt "$push_limit" ]; then
  echo "fatal: pack exceeds maximum allowed size ($pushed bytes of blobs; limit $push_limit bytes)"
  status=1
fi
exit $status
"""


class GitServerError(RuntimeError):
    pass


def http_backend() -> str:
    for path in HTTP_BACKEND_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=False
    ).stdout.strip()
    candidate = os.path.join(found, "git-http-backend")
    if found and os.access(candidate, os.X_OK):
        return candidate
    raise GitServerError("git http-backend not found: install git")


def lighttpd_binary() -> str:
    path = os.environ.get("PINSYNC_LIGHTTPD") or shutil.which("lighttpd") or LIGHTTPD
    if not os.access(path, os.X_OK):
        raise GitServerError(f"{path} not found: install lighttpd (apt-get install lighttpd)")
    return path


def git(
    *args: str,
    cwd: pathlib.Path | None = None,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> bytes:
    """Run git with a clean identity (plus ``env``); raise with its stderr on failure."""
    full = {
        **os.environ,
        "GIT_AUTHOR_NAME": "pinsync tests",
        "GIT_AUTHOR_EMAIL": "tests@pinsync.invalid",
        "GIT_COMMITTER_NAME": "pinsync tests",
        "GIT_COMMITTER_EMAIL": "tests@pinsync.invalid",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": os.environ.get("HOME", "/tmp"),
        **(env or {}),
    }
    done = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, env=full)
    if done.returncode:
        raise GitServerError(f"git {' '.join(args[:2])}: {done.stderr.decode(errors='replace')}")
    return done.stdout


class GitServer(Server):
    """lighttpd + ``git http-backend`` serving ``<workdir>/repos`` at ``<url>/<name>.git``."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.root = workdir / "repos"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.username = "pinsync"
        self.password = secrets.token_urlsafe(18)
        self.token = f"ghp_{secrets.token_hex(18)}"
        """A second login, ``x-access-token`` with this password: GitHub's form for tokens."""
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/git"

    def repo_url(self, name: str, *, credentials: bool = False) -> str:
        auth = f"{self.username}:{self.password}@" if credentials else ""
        return f"http://{auth}{self.host}:{self.port}/git/{name}.git"

    def repo_path(self, name: str) -> pathlib.Path:
        return self.root / f"{name}.git"

    # -- set-up --------------------------------------------------------------------------------

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(exist_ok=True)
        (self.workdir / "uploads").mkdir(exist_ok=True)
        users = self.workdir / "users"
        fd = os.open(users, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{self.username}:{self.password}\nx-access-token:{self.token}\n")
        config = f"""
server.modules = ("mod_access", "mod_alias", "mod_auth", "mod_authn_file", "mod_setenv", "mod_cgi")
server.bind = "{self.host}"
server.port = {self.port}
server.document-root = "{self.root}"
server.errorlog = "{self.workdir / "lighttpd-error.log"}"
server.upload-dirs = ("{self.workdir / "uploads"}")
server.max-request-size = 0
server.stream-response-body = 1
auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
auth.require = ("/" => ("method" => "basic", "realm" => "pinsync git", "require" => "valid-user"))
# Request bodies are buffered (in upload-dirs) before the CGI runs: CGI needs CONTENT_LENGTH,
# and git clients send large pushes chunked, as dulwich sends every push.
alias.url = ("/git" => "{http_backend()}")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{self.root}", "GIT_HTTP_EXPORT_ALL" => "1")
}}
"""
        (self.workdir / "lighttpd.conf").write_text(config)

    def make_repo(self, name: str, *, writable: bool = True) -> pathlib.Path:
        """A fresh, empty bare repository with GitHub's rules (see the module docstring)."""
        path = self.repo_path(name)
        git("init", "-q", "--bare", "--initial-branch=main", str(path))
        settings = {
            "uploadpack.allowFilter": "true",
            "uploadpack.allowAnySHA1InWant": "true",
            "receive.denyNonFastForwards": "true",
            "http.receivepack": "true" if writable else "false",
            "pinsync.maxfilesize": str(MAX_FILE_SIZE),
            "pinsync.maxpushsize": str(MAX_PUSH_SIZE),
        }
        for key, value in settings.items():
            git("config", key, value, cwd=path)
        hook = path / "hooks" / "pre-receive"
        hook.write_text(PRE_RECEIVE.format(default=MAX_FILE_SIZE, default_push=MAX_PUSH_SIZE))
        hook.chmod(0o755)
        return path

    # -- running -------------------------------------------------------------------------------

    def start(self) -> GitServer:
        self.write_config()
        self.process = Process(
            "lighttpd",
            [lighttpd_binary(), "-D", "-f", str(self.workdir / "lighttpd.conf")],
            workdir=self.workdir,
        ).start()
        self.process.wait_until(self.listening, timeout=30, what="an HTTP listener")
        return self

    def listening(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=2):
            return True

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
