"""A *contract fake* of the Hugging Face Hub: exactly the endpoints the huggingface backend uses.

No Hub server can be installed here (KohakuHub needs LakeFS, ``olah`` is a read-only mirror),
so the huggingface backend is tested against this small aiohttp server instead. It is not a
Hub: it implements the documented HTTP contract that ``huggingface_hub`` speaks for the calls
the backend makes, with the status codes and ``X-Error-Code`` / ``X-Error-Message`` headers the
library's ``hf_raise_for_status`` parses, and it refuses what the Hub refuses:

* ``GET /api/whoami-v2`` -- the token's user and role (401 for an unknown token);
* ``POST /api/repos/create`` -- 409 if the repository exists; a new one has a first commit
  holding ``.gitattributes``, as on the Hub;
* ``GET /api/{type}s/{repo}[/revision/{rev}]`` -- repo info with the head ``sha``;
* ``GET /api/{type}s/{repo}/refs`` -- branches and their head commits;
* ``GET /api/{type}s/{repo}/auth-check[/write]`` -- 403 for a read-only token;
* ``POST /api/{type}s/{repo}/branch/{rev}`` -- 409 if it exists;
* ``POST /api/{type}s/{repo}/preupload/{rev}`` -- ``uploadMode`` per file: ``lfs`` for binary
  samples, files of 10 MiB or more and ``.gitattributes`` LFS patterns (at most 256 files);
* ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` + ``PUT`` + verify -- the LFS batch API:
  basic transfer, or HF's *multipart* transfer for objects over ``multipart_chunk`` (part URLs
  and ``chunk_size`` in the upload action's header, a completion POST naming each part's ETag);
  an upload whose bytes do not hash to the announced oid is refused;
* ``POST /api/{type}s/{repo}/commit/{rev}`` -- the NDJSON commit: a stale ``parentCommit``
  is 412 "A commit has happened since", an ``lfsFile`` whose object was never uploaded is 422,
  more than ``max_commit_files`` operations is 400;
* ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]`` -- paged with a ``Link: rel="next"`` header;
* ``POST /api/{type}s/{repo}/paths-info/{rev}`` -- at most 1,000 paths;
* ``GET /{prefix}{repo}/resolve/{rev}/{path}`` -- the file's bytes;
* ``GET /api/{type}s/{repo}/lfs-files`` (paged) and ``POST .../lfs-files/batch`` -- the LFS
  objects a repository holds, and their permanent deletion (``rewriteHistory``: every commit
  loses its pointers to them, so the commits get new ids and the branches move).

401/403/404/409/412/429 carry the Hub's header shapes. Quirks of the Hub as it answers today,
each from a documented or reported source (the tests of the backend depend on every one):

* Rate limits per account over fixed 5-minute windows, in two buckets (``api``, and
  ``resolvers`` for ``/resolve/``), announced on every answer of the bucket as
  ``RateLimit: "api";r=<remaining>;t=<seconds to reset>`` and ``RateLimit-Policy: "fixed
  window";"api";q=<limit>;w=300``; past the limit a 429 with those headers and *no*
  ``Retry-After`` (hub-docs ``docs/hub/rate-limits.md``: the IETF draft headers, 5-minute
  windows, Free-user defaults 1,000 api / 5,000 resolvers; the 429's text as reported in
  OpenHUTB/hutb#3329).
* Commits per account and hour (``commits_per_hour``, 0: none): a 429 that says so only in
  its body -- its ``RateLimit`` header is the api bucket's, with requests remaining
  (huggingface/datasets#6257 "exceeded our hourly quotas for action: commit"; the rate-limits
  page: commit limits are not documented and change).
* Quotas are the account's, whichever token or repository is used (rate-limits page: per user;
  storage-limits page: storage per account).
* Private storage per account (``private_storage`` bytes, Free: 100 GB): an LFS upload that
  would exceed it is refused 403 "Private repository storage limit reached, please upgrade your
  plan..." (huggingface/huggingface_hub#3048).
* Storage counts every LFS object pushed to a private repository; a commit deleting a pointer
  frees nothing, only the permanent deletion of the object does (hub-docs
  ``storage-limits.md``: "Deleting only LFS pointers doesn't free up space";
  ``HfApi.permanently_delete_lfs_files``, whose test in huggingface_hub shows the files gone
  from the branch afterwards).
* Large files go through HF's multipart LFS transfer when the client offers it, as
  ``huggingface_hub`` does (``lfs.py``: ``transfers=["basic", "multipart"]``; hub-docs
  ``xet/legacy-git-lfs.md``: LFS uploads still work without Xet). The part size and the
  threshold are the Hub's own and undocumented: here both are ``multipart_chunk`` (5 MiB,
  S3's smallest part).

Not implemented: Xet storage, pull requests, copies. Tests look behind the backend through
``/_fake/*`` endpoints, which belong to the fake, not to the contract: the state of a repo and
of an account, more accounts and tokens, injected 429s, and corrupting a stored LFS object.

Run as ``python -m pinsync.devenv.hubfake <config.json>``; :class:`HubFake` writes the config
(tokens included, so in a file of mode 0600 rather than on the command line).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import fnmatch
import hashlib
import itertools
import json
import math
import pathlib
import pickle
import secrets
import sys
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from pinsync.devenv.processes import Process, Server, free_port, http_ok

PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.tar filter=lfs diff=lfs merge=lfs -text\n"
)
WINDOW = 300
"""Seconds of a rate-limit window: fixed 5-minute windows (hub-docs ``rate-limits.md``)."""
FREE_USER = {"api": 1000, "resolvers": 5000, "commits_per_hour": 0, "private_storage": 100 * 10**9}
"""An account's quotas unless configured: the Free user's (rate-limits and storage-limits pages,
September 2025). The commit quota is undocumented; 0 here means none unless a test sets one."""
STORAGE_FULL = "Private repository storage limit reached, please upgrade your plan"
"""The 403's text as huggingface_hub#3048 quotes it (the rest of it cut off there)."""
COMMIT_QUOTA = (
    "You have exceeded our hourly quotas for action: commit. We invite you to retry later."
)
"""The commit quota's 429 as huggingface/datasets#6257 quotes it: no count, no Retry-After."""


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclasses.dataclass
class File:
    size: int
    oid: str
    """The git blob id (of the content, or of the LFS pointer)."""
    sha256: str | None = None
    """LFS files: the object's sha256."""
    content: bytes | None = None
    """Regular files: the bytes."""

    def entry(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.sha256 is not None:
            out["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": 134}
        return out


@dataclasses.dataclass
class LfsObject:
    """An LFS object pushed to a repository, as ``lfs-files`` lists it."""

    size: int
    pushed_at: str
    filename: str = ""
    ref: str | None = None


@dataclasses.dataclass
class Account:
    """A user's quotas and what they used: shared by every token and repository of the user."""

    name: str
    api: int
    resolvers: int
    commits_per_hour: int
    private_storage: int
    windows: dict[str, tuple[float, int]] = dataclasses.field(default_factory=dict)
    """Bucket -> (start of its current window, requests in it)."""
    commit_times: list[float] = dataclasses.field(default_factory=list)
    refused: int = 0
    """429s answered to the account (test control: whether a client waited as told)."""

    @classmethod
    def of(cls, name: str, quotas: Mapping[str, int]) -> Account:
        return cls(
            name=name,
            api=quotas["api"],
            resolvers=quotas["resolvers"],
            commits_per_hour=quotas["commits_per_hour"],
            private_storage=quotas["private_storage"],
        )

    def take(self, bucket: str, now: float) -> tuple[int, int, int]:
        """Count one request: (requests left, may be negative; seconds to reset; limit)."""
        limit = self.api if bucket == "api" else self.resolvers
        start, used = self.windows.get(bucket, (now, 0))
        if now - start >= WINDOW:
            start, used = now, 0
        self.windows[bucket] = (start, used + 1)
        return limit - used - 1, max(1, math.ceil(start + WINDOW - now)), limit


@dataclasses.dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, File]
    summary: str


@dataclasses.dataclass
class Repo:
    type_: str
    id: str
    private: bool
    branches: dict[str, str] = dataclasses.field(default_factory=dict)
    commits: dict[str, Commit] = dataclasses.field(default_factory=dict)
    lfs: dict[str, LfsObject] = dataclasses.field(default_factory=dict)
    """sha256 -> the LFS objects pushed here: kept until permanently deleted."""
    stats: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(
            (
                "commits",
                "lfs_files",
                "regular_files",
                "regular_bytes",
                "stale_parents",
                "multipart_uploads",
                "lfs_deleted",
            ),
            0,
        )
    )

    @property
    def owner(self) -> str:
        return self.id.split("/")[0]

    def head(self, rev: str) -> Commit | None:
        oid = self.branches.get(rev, rev)
        return self.commits.get(oid)


def error(status: int, message: str, code: str | None = None, **headers: str) -> web.Response:
    """An error as the Hub answers it: JSON body and the headers the client library parses."""
    hdrs = {"X-Error-Message": message, **headers}
    if code:
        hdrs["X-Error-Code"] = code
    return web.json_response({"error": message}, status=status, headers=hdrs)


class Hub:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.tokens: dict[str, dict[str, str]] = dict(config["tokens"])
        self.objects = pathlib.Path(config["objects"])
        self.objects.mkdir(parents=True, exist_ok=True)
        self.page_size = int(config.get("page_size", 1000))
        self.max_commit_files = int(config.get("max_commit_files", 100))
        self.multipart_chunk = int(config.get("multipart_chunk", 5 * 1024 * 1024))
        self.quotas = {key: int(config.get(key, value)) for key, value in FREE_USER.items()}
        """Every account's quotas unless ``/_fake/account`` set its own."""
        self.state = self.objects.parent / "state.pickle"
        self.repos: dict[str, Repo] = {}
        self.accounts: dict[str, Account] = {}
        if self.state.exists():  # a restarted server keeps its repositories, like a real one
            saved = pickle.loads(self.state.read_bytes())
            self.repos, self.accounts = saved["repos"], saved["accounts"]
            self.tokens.update(saved["tokens"])
        self.injected_429: list[tuple[int, str]] = []
        """(seconds, which headers say so) of the next answers to API calls (test control)."""
        self.counter = itertools.count(1)
        self.requests = 0
        """API requests answered (test control: whether a client waited as asked)."""

    # -- helpers ---------------------------------------------------------------------------------

    def user(self, request: web.Request) -> dict[str, str] | None:
        auth = request.headers.get("Authorization", "")
        return self.tokens.get(auth.removeprefix("Bearer ").strip()) if auth else None

    def account(self, name: str) -> Account:
        if name not in self.accounts:
            self.accounts[name] = Account.of(name, self.quotas)
        return self.accounts[name]

    def private_usage(self, owner: str) -> int:
        """Bytes of LFS objects in the owner's private repositories (what the quota counts)."""
        return sum(
            obj.size
            for repo in self.repos.values()
            if repo.private and repo.owner == owner
            for obj in repo.lfs.values()
        )

    def repo(self, request: web.Request, *, write: bool = False) -> Repo | web.Response:
        auth = request.headers.get("Authorization")
        user = self.user(request)
        if auth and user is None:
            return error(401, "Invalid credentials in Authorization header")
        kind = request.match_info.get("type") or request.match_info.get("kind", "").rstrip("/")
        type_ = kind.removesuffix("s") or "model"
        repo_id = f"{request.match_info['owner']}/{request.match_info['name']}"
        repo = self.repos.get(f"{type_}/{repo_id}")
        if repo is None or (repo.private and user is None):
            return error(404 if user else 401, "Repository not found", "RepoNotFound")
        if write and (user is None or user.get("role") != "write"):
            return error(403, "You don't have the rights to write to this repository")
        return repo

    def commit(self, repo: Repo, parent: Commit | None, files: dict[str, File], msg: str) -> str:
        oid = hashlib.sha1(f"{repo.id}:{next(self.counter)}:{msg}".encode()).hexdigest()
        repo.commits[oid] = Commit(
            oid=oid, parent=parent.oid if parent else None, files=files, summary=msg
        )
        repo.stats["commits"] += 1
        return oid

    def object_path(self, sha256: str) -> pathlib.Path:
        return self.objects / sha256

    # -- middleware: rate limits -----------------------------------------------------------------

    @staticmethod
    def bucket(path: str) -> str | None:
        """The rate-limit bucket of a request (rate-limits page): ``resolvers`` for
        ``/resolve/``, ``api`` for the rest; None for the object store behind LFS (S3 on the Hub,
        presigned URLs, not counted by the Hub) and the test controls."""
        if path.startswith("/_fake/"):
            return None
        if "/resolve/" in path:
            return "resolvers"
        if path.startswith("/_lfs/") and not path.endswith(("/verify", "/complete")):
            return None
        return "api"

    @web.middleware
    async def limits(self, request: web.Request, handler: Any) -> web.StreamResponse:
        bucket = self.bucket(request.path)
        if bucket is None:
            response: web.StreamResponse = await handler(request)
            return self.saved(request, response)
        self.requests += 1
        user = self.user(request)
        account = self.account(user["name"] if user else "anonymous")
        left, reset, limit = account.take(bucket, time.time())
        say = "ratelimit"
        if self.injected_429:
            left, (reset, say) = -1, self.injected_429.pop(0)
        headers = {
            "RateLimit": f'"{bucket}";r={max(0, left)};t={reset}',
            "RateLimit-Policy": f'"fixed window";"{bucket}";q={limit};w={WINDOW}',
        }
        if left < 0:
            account.refused += 1
            # The Hub's 429 names the reset in RateLimit only; Retry-After is absent.
            if say == "retry-after":
                headers = {"Retry-After": str(reset)}
            elif say == "both":
                headers["Retry-After"] = str(reset)
            return error(
                429,
                f"We had to rate limit you, you hit the quota of {limit} {bucket} requests per "
                "5 minutes period. See https://huggingface.co/docs/hub/rate-limits",
                **headers,
            )
        response = await handler(request)
        response.headers.update(headers)
        return self.saved(request, response)

    def saved(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        if request.method != "GET" and response.status < 300:
            partial = self.state.with_suffix(".partial")
            state = {"repos": self.repos, "accounts": self.accounts, "tokens": self.tokens}
            partial.write_bytes(pickle.dumps(state))
            partial.replace(self.state)
        return response

    # -- account and repositories ----------------------------------------------------------------

    async def whoami(self, request: web.Request) -> web.Response:
        user = self.user(request)
        if user is None:
            return error(401, "Invalid credentials in Authorization header")
        token = {"displayName": "pinsync-test", "role": user.get("role", "read")}
        body = {"type": "user", "name": user["name"], "auth": {"accessToken": token}}
        return web.json_response(body)

    async def create_repo(self, request: web.Request) -> web.Response:
        user = self.user(request)
        if user is None:
            return error(401, "Invalid credentials in Authorization header")
        body = await request.json()
        owner = body.get("organization") or user["name"]
        if owner != user["name"] or user.get("role") != "write":
            return error(403, "You don't have the rights to create a repository here")
        type_ = body.get("type") or "model"
        key = f"{type_}/{owner}/{body['name']}"
        if key in self.repos:
            return error(409, "You already created this repo")
        private = body.get("private") or body.get("visibility") == "private"
        repo = Repo(type_=type_, id=f"{owner}/{body['name']}", private=bool(private))
        self.repos[key] = repo
        attrs = File(size=len(GITATTRIBUTES), oid=git_oid(GITATTRIBUTES), content=GITATTRIBUTES)
        repo.branches["main"] = self.commit(repo, None, {".gitattributes": attrs}, "initial commit")
        url = f"{request.url.origin()}/{PREFIXES[type_]}{repo.id}"
        return web.json_response({"url": url, "name": repo.id})

    async def repo_info(self, request: web.Request) -> web.Response:
        repo = self.repo(request)
        if isinstance(repo, web.Response):
            return repo
        rev = request.match_info.get("rev", "main")
        head = repo.head(rev)
        if head is None:
            return error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        siblings = [{"rfilename": p} for p in sorted(head.files)]
        body = {"id": repo.id, "sha": head.oid, "private": repo.private, "siblings": siblings}
        return web.json_response(body)

    async def refs(self, request: web.Request) -> web.Response:
        repo = self.repo(request)
        if isinstance(repo, web.Response):
            return repo
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in sorted(repo.branches.items())
        ]
        return web.json_response({"branches": branches, "converts": [], "tags": []})

    async def auth_check(self, request: web.Request) -> web.Response:
        repo = self.repo(request, write=request.path.endswith("/write"))
        return repo if isinstance(repo, web.Response) else web.json_response({})

    async def create_branch(self, request: web.Request) -> web.Response:
        repo = self.repo(request, write=True)
        if isinstance(repo, web.Response):
            return repo
        branch = urllib.parse.unquote(request.match_info["rev"])
        if branch in repo.branches:
            return error(409, "Reference already exists")
        body = await request.json() if request.can_read_body else {}
        start = repo.head(body.get("startingPoint") or "main")
        if start is None:
            return error(404, "Invalid starting point", "RevisionNotFound")
        repo.branches[branch] = start.oid
        return web.json_response({})

    # -- uploads ---------------------------------------------------------------------------------

    async def preupload(self, request: web.Request) -> web.Response:
        repo = self.repo(request, write=True)
        if isinstance(repo, web.Response):
            return repo
        head = repo.head(urllib.parse.unquote(request.match_info["rev"]))
        if head is None:
            return error(404, "Invalid rev id", "RevisionNotFound")
        files = (await request.json())["files"]
        if len(files) > 256:
            return error(400, "At most 256 files per preupload request")
        attrs = head.files.get(".gitattributes")
        lines = (attrs.content or b"").decode().splitlines() if attrs else []
        patterns = [line.split()[0] for line in lines if "filter=lfs" in line]
        answers = []
        for f in files:
            sample = base64.b64decode(f.get("sample", ""))
            binary = b"\0" in sample or not _is_text(sample)
            lfs = (
                binary
                or int(f.get("size", 0)) >= LFS_THRESHOLD
                or any(fnmatch.fnmatch(f["path"].rsplit("/", 1)[-1], p) for p in patterns)
            )
            old = head.files.get(f["path"])
            answers.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": (old.sha256 or old.oid) if old else None,
                }
            )
        return web.json_response({"files": answers})

    async def lfs_batch(self, request: web.Request) -> web.Response:
        repo = self.repo(request, write=True)
        if isinstance(repo, web.Response):
            return repo
        body = await request.json()
        if body.get("operation") != "upload":
            return error(400, "Only uploads are implemented by this fake")
        new = sum(int(o["size"]) for o in body["objects"] if o["oid"] not in repo.lfs)
        quota = self.account(repo.owner).private_storage
        # #3048 says "when trying to push", not at which request: here, where sizes are known.
        if repo.private and self.private_usage(repo.owner) + new > quota:
            return error(403, STORAGE_FULL)
        multipart = "multipart" in body.get("transfers", ["basic"])
        ref = urllib.parse.quote((body.get("ref") or {}).get("name") or "main", safe="")
        base = f"{request.url.origin()}/_lfs/{repo.type_}/{repo.id}"
        objects = []
        for obj in body["objects"]:
            oid, size = obj["oid"], int(obj["size"])
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self.object_path(oid).exists():
                upload: dict[str, Any] = {"href": f"{base}/{oid}?ref={ref}", "header": {}}
                if multipart and size > self.multipart_chunk:
                    # HF's multipart adapter (huggingface_hub lfs.py): numbered part URLs and
                    # the part size in the header; href is where the parts' ETags are posted.
                    parts = math.ceil(size / self.multipart_chunk)
                    upload = {
                        "href": f"{base}/{oid}/complete?ref={ref}",
                        "header": {
                            "chunk_size": str(self.multipart_chunk),
                            **{f"{n:05d}": f"{base}/{oid}/part/{n}" for n in range(1, parts + 1)},
                        },
                    }
                entry["actions"] = {
                    "upload": upload,
                    "verify": {"href": f"{base}/{oid}/verify", "header": {}},
                }
            objects.append(entry)
        transfer = "multipart" if multipart else "basic"
        return web.json_response({"transfer": transfer, "objects": objects})

    def lfs_repo(self, request: web.Request) -> Repo | None:
        """The repository an object-store URL (``/_lfs/{type}/{owner}/{name}/...``) is for."""
        info = request.match_info
        return self.repos.get(f"{info['type']}/{info['owner']}/{info['name']}")

    @staticmethod
    def pushed(repo: Repo | None, oid: str, size: int, ref: str | None) -> None:
        """An LFS object arrived for ``repo``: it counts from now on."""
        if repo is not None and oid not in repo.lfs:
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            repo.lfs[oid] = LfsObject(size=size, pushed_at=now, ref=ref)

    async def stored(self, request: web.Request, oid: str, parts: list[pathlib.Path]) -> str:
        """Write the object from ``parts`` (or the request body); an error text, or ''."""
        target = self.object_path(oid)
        partial = target.with_suffix(".partial")
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            if parts:
                for part in parts:
                    data = part.read_bytes()
                    digest.update(data)
                    out.write(data)
            else:
                async for chunk in request.content.iter_chunked(1024 * 1024):
                    digest.update(chunk)
                    out.write(chunk)
        if digest.hexdigest() != oid:
            partial.unlink()
            return "The uploaded content does not match its oid"
        partial.replace(target)
        self.pushed(self.lfs_repo(request), oid, target.stat().st_size, request.query.get("ref"))
        return ""

    async def lfs_put(self, request: web.Request) -> web.Response:
        refused = await self.stored(request, request.match_info["oid"], [])
        return error(400, refused) if refused else web.Response(status=200)

    def part_path(self, oid: str, number: int) -> pathlib.Path:
        return self.objects / f"{oid}.part{number:05d}"

    async def lfs_part(self, request: web.Request) -> web.Response:
        """One part of a multipart upload, answered with its ETag as S3 does."""
        data = await request.read()
        self.part_path(request.match_info["oid"], int(request.match_info["n"])).write_bytes(data)
        return web.Response(status=200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    async def lfs_complete(self, request: web.Request) -> web.Response:
        oid = request.match_info["oid"]
        body = await request.json()
        parts = [self.part_path(oid, int(p["partNumber"])) for p in body.get("parts", [])]
        for part, said in zip(parts, body.get("parts", []), strict=True):
            if (
                not part.exists()
                or f'"{hashlib.md5(part.read_bytes()).hexdigest()}"' != said["etag"]
            ):
                return error(400, f"Part {said['partNumber']} is missing or its ETag differs")
        refused = await self.stored(request, oid, parts)
        for part in parts:
            part.unlink()
        if refused:
            return error(400, refused)
        repo = self.lfs_repo(request)
        if repo is not None:
            repo.stats["multipart_uploads"] += 1
        return web.json_response({})

    async def lfs_verify(self, request: web.Request) -> web.Response:
        body = await request.json()
        path = self.object_path(request.match_info["oid"])
        if not path.exists() or path.stat().st_size != int(body.get("size", -1)):
            return error(404, "Object not found or of another size")
        return web.json_response({})

    # -- LFS storage -----------------------------------------------------------------------------

    async def lfs_files(self, request: web.Request) -> web.Response:
        repo = self.repo(request)
        if isinstance(repo, web.Response):
            return repo
        listed = [
            {
                "fileOid": sha,
                "oid": sha,
                "filename": obj.filename,
                "pushedAt": obj.pushed_at,
                "ref": obj.ref,
                "size": obj.size,
            }
            for sha, obj in sorted(repo.lfs.items())
        ]
        start = int(request.query.get("cursor", "0"))
        headers = {}
        if start + self.page_size < len(listed):
            query = {**request.query, "cursor": str(start + self.page_size)}
            headers["Link"] = f'<{request.url.with_query(query)}>; rel="next"'
        return web.json_response(listed[start : start + self.page_size], headers=headers)

    async def lfs_delete(self, request: web.Request) -> web.Response:
        """Permanent deletion: the objects no longer count; with ``rewriteHistory`` no commit
        points at them any more (each such commit, and every later one, gets a new id)."""
        repo = self.repo(request, write=True)
        if isinstance(repo, web.Response):
            return repo
        deletions = (await request.json())["deletions"]
        gone = {sha for sha in deletions["sha"] if repo.lfs.pop(sha, None) is not None}
        repo.stats["lfs_deleted"] += len(gone)
        for sha in gone:
            if not any(sha in other.lfs for other in self.repos.values()):
                self.object_path(sha).unlink(missing_ok=True)
        if deletions.get("rewriteHistory", True) and gone:
            self.rewrite(repo, gone)
        return web.json_response({})

    def rewrite(self, repo: Repo, gone: set[str]) -> None:
        renamed: dict[str, str] = {}
        for oid, commit in list(repo.commits.items()):  # in the order made: parents first
            files = {p: f for p, f in commit.files.items() if f.sha256 not in gone}
            parent = renamed.get(commit.parent or "", commit.parent)
            if len(files) == len(commit.files) and parent == commit.parent:
                continue
            new = hashlib.sha1(f"{repo.id}:{next(self.counter)}:rewritten".encode()).hexdigest()
            repo.commits[new] = Commit(oid=new, parent=parent, files=files, summary=commit.summary)
            renamed[oid] = new
        for oid in renamed:
            del repo.commits[oid]
        repo.branches = {name: renamed.get(oid, oid) for name, oid in repo.branches.items()}

    async def commit_api(self, request: web.Request) -> web.Response:
        repo = self.repo(request, write=True)
        if isinstance(repo, web.Response):
            return repo
        rev = urllib.parse.unquote(request.match_info["rev"])
        head = repo.head(rev)
        if head is None or rev not in repo.branches:
            return error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        user = self.user(request)
        account = self.account(user["name"] if user else "anonymous")
        if account.commits_per_hour:  # the account's, whichever repository: body only
            hour_ago = time.time() - 3600
            account.commit_times = [t for t in account.commit_times if t > hour_ago]
            if len(account.commit_times) >= account.commits_per_hour:
                account.refused += 1
                return error(429, COMMIT_QUOTA)
        lines = [json.loads(line) for line in (await request.read()).splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return error(400, "The first line must be the commit header")
        header = lines[0]["value"]
        operations = lines[1:]
        if len(operations) > self.max_commit_files:
            return error(400, f"Too many files in one commit (at most {self.max_commit_files})")
        parent = header.get("parentCommit")
        if parent is not None and parent != head.oid:
            repo.stats["stale_parents"] += 1
            return error(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for op in operations:
            key, value = op["key"], op["value"]
            path = value["path"]
            if key == "file":
                data = base64.b64decode(value["content"])
                files[path] = File(size=len(data), oid=git_oid(data), content=data)
                repo.stats["regular_files"] += 1
                repo.stats["regular_bytes"] += len(data)
            elif key == "lfsFile":
                stored = self.object_path(value["oid"])
                if not stored.exists() or stored.stat().st_size != int(value["size"]):
                    return error(422, f"LFS object of {path} was not uploaded")
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{value['oid']}"
                files[path] = File(
                    size=int(value["size"]), oid=git_oid(pointer.encode()), sha256=value["oid"]
                )
                repo.stats["lfs_files"] += 1
                if value["oid"] not in repo.lfs:  # uploaded through another repository
                    self.pushed(repo, value["oid"], int(value["size"]), rev)
                if not repo.lfs[value["oid"]].filename:
                    repo.lfs[value["oid"]].filename = path
            elif key == "deletedFile":
                if path not in files:
                    return error(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                files = {p: f for p, f in files.items() if not p.startswith(path.rstrip("/") + "/")}
            else:
                return error(400, f"Unknown commit operation {key!r}")
        oid = self.commit(repo, head, files, str(header.get("summary", "")))
        repo.branches[rev] = oid
        account.commit_times.append(time.time())
        url = f"{request.url.origin()}/{PREFIXES[repo.type_]}{repo.id}/commit/{oid}"
        return web.json_response({"commitUrl": url, "commitOid": oid, "success": True})

    # -- reading ---------------------------------------------------------------------------------

    def _head_or_error(self, request: web.Request) -> tuple[Repo, Commit] | web.Response:
        repo = self.repo(request)
        if isinstance(repo, web.Response):
            return repo
        head = repo.head(urllib.parse.unquote(request.match_info["rev"]))
        if head is None:
            return error(404, "Invalid rev id", "RevisionNotFound")
        return repo, head

    async def tree(self, request: web.Request) -> web.Response:
        found = self._head_or_error(request)
        if isinstance(found, web.Response):
            return found
        _, head = found
        prefix = urllib.parse.unquote(request.match_info.get("path", "")).strip("/")
        recursive = request.query.get("recursive", "").lower() in ("1", "true")
        base = f"{prefix}/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, file in head.files.items():
            if not path.startswith(base):
                continue
            rest = path[len(base) :].split("/")
            for depth in range(1, len(rest)):  # the directories on the way
                directory = base + "/".join(rest[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        directory, {"type": "directory", "oid": "", "path": directory}
                    )
            if recursive or len(rest) == 1:
                entries[path] = file.entry(path)
        if prefix and not entries and prefix not in head.files:
            return error(404, f"{prefix} does not exist", "EntryNotFound")
        ordered = [entries[k] for k in sorted(entries)]
        start = int(request.query.get("cursor", "0"))
        page = ordered[start : start + self.page_size]
        headers = {}
        if start + self.page_size < len(ordered):
            query = {**request.query, "cursor": str(start + self.page_size)}
            headers["Link"] = f'<{request.url.with_query(query)}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def paths_info(self, request: web.Request) -> web.Response:
        found = self._head_or_error(request)
        if isinstance(found, web.Response):
            return found
        _, head = found
        form = await request.post()
        paths = [str(p) for p in form.getall("paths", [])]
        if len(paths) > 1000:
            return error(400, "At most 1000 paths per request")
        out = [head.files[p].entry(p) for p in paths if p in head.files]
        return web.json_response(out)

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        found = self._head_or_error(request)
        if isinstance(found, web.Response):
            return found
        _, head = found
        path = urllib.parse.unquote(request.match_info["path"])
        file = head.files.get(path)
        if file is None:
            return error(404, "Entry not found", "EntryNotFound")
        if file.content is not None:
            return web.Response(body=file.content, headers={"X-Repo-Commit": head.oid})
        return web.FileResponse(self.object_path(file.sha256 or ""))

    # -- test controls (not part of the contract) ------------------------------------------------

    async def fake_state(self, request: web.Request) -> web.Response:
        info = request.match_info
        key = f"{info['type']}/{info['owner']}/{info['name']}"
        repo = self.repos.get(key)
        if repo is None:
            return web.json_response({}, status=404)
        branch = request.query.get("branch", "main")
        head = repo.head(branch)
        files = {p: f.entry(p) for p, f in (head.files if head else {}).items()}
        return web.json_response(
            {
                "stats": repo.stats,
                "head": head.oid if head else None,
                "files": files,
                "lfs": {sha: obj.size for sha, obj in repo.lfs.items()},
                "private_usage": self.private_usage(repo.owner),
            }
        )

    async def fake_rate_limit(self, request: web.Request) -> web.Response:
        """The next ``count`` answers are 429s, their reset in ``retryAfter`` seconds, said in
        ``header`` (``ratelimit`` as the Hub does, ``retry-after`` or ``both``)."""
        body = await request.json()
        said = (int(body.get("retryAfter", 1)), str(body.get("header", "ratelimit")))
        self.injected_429 += [said] * int(body.get("count", 1))
        return web.json_response({})

    async def fake_account_state(self, request: web.Request) -> web.Response:
        account = self.account(request.match_info["name"])
        used = {bucket: count for bucket, (_, count) in account.windows.items()}
        body = {"refused": account.refused, "used": used, "commits": len(account.commit_times)}
        return web.json_response({**body, "private_usage": self.private_usage(account.name)})

    async def fake_account(self, request: web.Request) -> web.Response:
        """A token for an account (created with the given quotas if new): tests that exhaust a
        quota use an account of their own, as quotas are per account."""
        body = await request.json()
        name = body["name"]
        quotas = {key: int(body.get(key, value)) for key, value in self.quotas.items()}
        self.accounts.setdefault(name, Account.of(name, quotas))
        self.tokens[body["token"]] = {"name": name, "role": body.get("role", "write")}
        return web.json_response({})

    async def fake_corrupt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.object_path(body["sha256"]).write_bytes(base64.b64decode(body["content"]))
        return web.json_response({})

    async def fake_commit(self, request: web.Request) -> web.Response:
        """Another writer: add a regular file on a branch, moving its head."""
        body = await request.json()
        repo = self.repos[body["repo"]]
        head = repo.head(body.get("branch", "main"))
        data = base64.b64decode(body["content"])
        files = {
            **(head.files if head else {}),
            body["path"]: File(len(data), git_oid(data), content=data),
        }
        repo.branches[body.get("branch", "main")] = self.commit(repo, head, files, "another writer")
        return web.json_response({})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "requests": self.requests})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.limits], client_max_size=1024**3)
        api = "/api/{type:models|datasets|spaces}/{owner}/{name}"
        prefix = "/{kind:datasets/|spaces/|}{owner}/{name}"
        store = "/_lfs/{type}/{owner}/{name}"  # the object store (S3 behind the Hub)
        app.add_routes(
            [
                web.get("/_fake/health", self.health),
                web.get("/_fake/state/{type}/{owner}/{name}", self.fake_state),
                web.post("/_fake/rate-limit", self.fake_rate_limit),
                web.post("/_fake/corrupt", self.fake_corrupt),
                web.post("/_fake/commit", self.fake_commit),
                web.post("/_fake/account", self.fake_account),
                web.get("/_fake/account/{name}", self.fake_account_state),
                web.get("/api/whoami-v2", self.whoami),
                web.post("/api/repos/create", self.create_repo),
                web.get(api, self.repo_info),
                web.get(api + "/revision/{rev}", self.repo_info),
                web.get(api + "/refs", self.refs),
                web.get(api + "/auth-check", self.auth_check),
                web.get(api + "/auth-check/write", self.auth_check),
                web.post(api + "/branch/{rev}", self.create_branch),
                web.post(api + "/preupload/{rev}", self.preupload),
                web.post(api + "/commit/{rev}", self.commit_api),
                web.get(api + "/tree/{rev}", self.tree),
                web.get(api + "/tree/{rev}/{path:.+}", self.tree),
                web.post(api + "/paths-info/{rev}", self.paths_info),
                web.get(api + "/lfs-files", self.lfs_files),
                web.post(api + "/lfs-files/batch", self.lfs_delete),
                web.post(prefix + ".git/info/lfs/objects/batch", self.lfs_batch),
                web.put(store + "/{oid}", self.lfs_put),
                web.put(store + "/{oid}/part/{n}", self.lfs_part),
                web.post(store + "/{oid}/complete", self.lfs_complete),
                web.post(store + "/{oid}/verify", self.lfs_verify),
                web.get(prefix + "/resolve/{rev}/{path:.+}", self.resolve),
            ]
        )
        return app


def _is_text(sample: bytes) -> bool:
    try:
        sample.decode()
    except UnicodeDecodeError:
        return False
    return True


class HubFake(Server):
    """The contract fake in a subprocess on a free loopback port, with a write and a read token."""

    user = "pinsync-test"

    def __init__(self, workdir: pathlib.Path, **options: Any) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.token = f"hf_{secrets.token_hex(16)}"
        self.read_token = f"hf_{secrets.token_hex(16)}"
        self.options = options

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubFake:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "hubfake.json"
        tokens = {
            self.token: {"name": self.user, "role": "write"},
            self.read_token: {"name": self.user, "role": "read"},
        }
        body = {"tokens": tokens, "objects": str(self.workdir / "objects"), **self.options}
        config.touch(mode=0o600)
        config.write_text(json.dumps(body))
        argv = [sys.executable, "-m", "pinsync.devenv.hubfake", str(config), str(self.port)]
        self.process = Process("hubfake", argv, workdir=self.workdir).start()
        self.process.wait_until(
            http_ok(f"{self.endpoint}/_fake/health"), timeout=30, what="HTTP answers"
        )
        return self

    def make_repo(
        self, repo: str, *, type_: str = "dataset", private: bool = True, token: str = ""
    ) -> None:
        import httpx

        owner, name = repo.split("/")
        body = {"name": name, "organization": owner, "type": type_, "private": private}
        headers = {"Authorization": f"Bearer {token or self.token}"}
        httpx.post(
            f"{self.endpoint}/api/repos/create", json=body, headers=headers
        ).raise_for_status()

    def account(self, name: str, *, role: str = "write", **quotas: int) -> str:
        """A new token of account ``name`` (with these quotas, if the account is new)."""
        token = f"hf_{secrets.token_hex(16)}"
        self.control("account", {"name": name, "token": token, "role": role, **quotas})
        return token

    def account_state(self, name: str) -> dict[str, Any]:
        """What account ``name`` used: ``refused`` 429s, requests ``used`` per bucket in the
        current window, ``commits`` in the hour, ``private_usage`` bytes."""
        import httpx

        state: dict[str, Any] = httpx.get(f"{self.endpoint}/_fake/account/{name}").json()
        return state

    def control(self, what: str, body: Mapping[str, Any]) -> None:
        import httpx

        httpx.post(f"{self.endpoint}/_fake/{what}", json=dict(body)).raise_for_status()

    def requests(self) -> int:
        """API requests the fake answered so far."""
        import httpx

        count: int = httpx.get(f"{self.endpoint}/_fake/health").json()["requests"]
        return count

    def state(self, repo: str, *, type_: str = "dataset", branch: str = "main") -> dict[str, Any]:
        import httpx

        url = f"{self.endpoint}/_fake/state/{type_}/{repo}"
        response = httpx.get(url, params={"branch": branch})
        if response.status_code == 404:
            return {}
        state: dict[str, Any] = response.json()
        return state


def main() -> None:
    config = json.loads(pathlib.Path(sys.argv[1]).read_text())
    port = int(sys.argv[2])
    hub = Hub(config)
    asyncio.run(_serve(hub, port))


async def _serve(hub: Hub, port: int) -> None:
    runner = web.AppRunner(hub.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    main()
