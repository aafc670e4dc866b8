"""Pins in a Hugging Face Hub repository (type ``huggingface``): a dataset (or model) repo.

Layout on the revision (a branch, default ``main``)::

    <basePath>/<shard>/<cid>.car        the CAR, always through the LFS path (never base64)

``<shard>`` is the CID's last two characters, lower-cased, as for the ``github`` type: 1,024
folders for base32 CIDs, so the Hub's recommendations (< 10k entries per folder, < 100k files
per repo) hold up to the repo's limit. There is no sidecar: the tree's LFS entry of each CAR
carries its size and sha256, computed by this backend's client from the bytes it sent and
checked by the Hub's LFS verify step, so a shallow verify compares those with what was
uploaded (kept in memory for pins this process wrote) and downloads nothing; a deep verify
downloads the CAR and re-hashes it. One file per pin keeps the repo's capacity at ``maxFiles``
pins (default 90,000, 10,000 below the Hub's recommended 100,000 files for anything else in
the repo); past it a batch fails with ``RepositoryFull`` before the Hub is asked.

One commit per batch (``batch.maxPins`` <= 100 files, the Hub's recommendation; split further at
``batch.maxBytes``), made with ``parent_commit`` = the head it was built on, so that another
writer is detected (the Hub answers 412); the commit is then rebuilt on the new head, up to
COMMIT_ATTEMPTS times. LFS uploads of a batch run outside the commit lock; commits are
serialised per backend. Commits per hour are bounded by ``maxCommitsPerHour`` (the Hub limits
commit rate; one observed 429 said 128 an hour): when the window is full the batch fails with
``RateLimited`` and a retry time, without a request.

Rate limits: every HTTP 429 of the Hub becomes ``RateLimited`` carrying its ``Retry-After``,
which the pins' backoff honours, and the backend answers later calls with the same error
until then without asking the Hub. ``huggingface_hub`` would otherwise sleep and retry in its
own worker thread (5 times, blocking the batch); a response hook on the library's HTTP
client (``set_client_factory``, process-wide: the operator is the only user of the library in
its process) turns a 429 into an exception the library does not retry. The same client gets
timeouts, which the library's default lacks.

Xet: ``huggingface_hub`` uploads through Xet storage whenever ``hf_xet`` is installed. pinsync
turns that off (``HF_HUB_DISABLE_XET``) unless the operator setting ``PINSYNC_HF_XET=1`` asks
for it: LFS works against every Hub-compatible server, Xet only against the real Hub. The
library reads the flag at each upload, so this module sets it on import.

Blocking library calls run in threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import httpx

from pinsync import reasons
from pinsync.backends import base, errors

os.environ.setdefault("HF_HUB_DISABLE_XET", "0" if os.environ.get("PINSYNC_HF_XET") else "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # tqdm bars in an operator's log

# After the Xet switch above, which the library reads on import:
import httpx2
import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.errors
from huggingface_hub import utils as hub_utils
from huggingface_hub.utils import _http as hub_http

huggingface_hub.constants.HF_HUB_DISABLE_XET = os.environ["HF_HUB_DISABLE_XET"] == "1"

T = TypeVar("T")

MAX_FILES_PER_COMMIT = 100
"""The Hub recommends fewer than 100 files per commit."""
DEFAULT_MAX_BYTES = 4 * 1024**3
DEFAULT_MAX_FILES = 90_000
DEFAULT_COMMITS_PER_HOUR = 100
COMMIT_ATTEMPTS = 5
DEFAULT_RETRY_AFTER = 60.0
"""Seconds to wait after a 429 that names no Retry-After."""
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 300.0
CAR = ".car"
CHUNK = 1024 * 1024


def shard(cid: str) -> str:
    return cid[-2:].lower()


# -- the library's HTTP client: timeouts, and 429 as an exception it does not retry --------------


class HubRateLimited(Exception):
    """Raised by the response hook on a 429, before the library's own retry loop sees it."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.0f}s")
        self.retry_after = retry_after


def retry_after(headers: Mapping[str, str]) -> float:
    """Seconds a 429 asks to wait (the shared parser), or the default when it names none."""
    wait = errors.retry_after(headers.get("Retry-After"))
    return DEFAULT_RETRY_AFTER if wait is None else wait


def _refuse_429(response: Any) -> None:
    if response.status_code == 429:
        raise HubRateLimited(retry_after(response.headers))


class HubUnreachable(Exception):
    """A connection to the Hub failed; raised by the transport so that the library does not
    retry it for half a minute in a worker thread (the pin's backoff retries it instead)."""


class _Transport(httpx2.HTTPTransport):
    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return super().handle_request(request)
        except httpx2.ConnectError as exc:
            raise HubUnreachable(type(exc).__name__) from None


def _client() -> httpx2.Client:
    """The library's default client (its own request hook; no public way to extend it, and
    the unit tests notice if the private name goes away), with timeouts, our transport and
    the 429 hook."""
    return httpx2.Client(
        event_hooks={"request": [hub_http.hf_request_event_hook], "response": [_refuse_429]},
        follow_redirects=True,
        timeout=httpx2.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
        transport=_Transport(),
    )


huggingface_hub.set_client_factory(_client)


# -- config ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class HuggingfaceConfig(base.Config):
    endpoint: str
    repo: str
    repo_type: str
    revision: str
    base_path: str
    private: bool
    create_repo: bool
    max_pins: int
    max_bytes: int
    max_files: int
    commits_per_hour: int


@dataclasses.dataclass(kw_only=True)
class Staged:
    meta: base.PinMeta
    path: str
    spool: str
    size: int
    sha256: str

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.spool)


class HuggingfaceBackend(base.Backend):
    credential_keys: ClassVar[base.CredentialKeys] = base.CredentialKeys(
        alternatives=(frozenset({"token"}),)
    )
    conf: HuggingfaceConfig

    @classmethod
    def validate(cls, spec: Mapping[str, Any], credentials: base.Credentials) -> HuggingfaceConfig:
        fields = base.Fields("huggingface", spec)
        repo = fields.text("repo", empty=False).strip()
        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise fields.invalid("repo", f"must be owner/name, not {repo!r}")
        repo_type = fields.text("repoType", "dataset")
        if repo_type not in ("dataset", "model"):
            raise fields.invalid("repoType", f"must be dataset or model, not {repo_type!r}")
        endpoint = fields.url("endpoint", "https://huggingface.co")
        if not endpoint:
            raise fields.invalid("endpoint", "must not be empty")
        batch = fields.section("batch")
        return HuggingfaceConfig(
            endpoint=endpoint,
            repo=repo,
            repo_type=repo_type,
            revision=fields.text("revision", "main", empty=False),
            base_path="/".join(p for p in fields.text("basePath", "pinsync").split("/") if p),
            private=fields.flag("private", True),
            create_repo=fields.flag("createRepo", False),
            max_pins=batch.integer(
                "maxPins", MAX_FILES_PER_COMMIT, low=1, high=MAX_FILES_PER_COMMIT
            ),
            max_bytes=batch.integer("maxBytes", DEFAULT_MAX_BYTES, low=1),
            max_files=fields.integer("maxFiles", DEFAULT_MAX_FILES, low=1, high=100_000),
            commits_per_hour=fields.integer(
                "maxCommitsPerHour", DEFAULT_COMMITS_PER_HOUR, low=1, high=10_000
            ),
        )

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        self.batch_size = self.conf.max_pins
        self._token = credentials.get("token") or ""
        self.api = huggingface_hub.HfApi(
            endpoint=self.conf.endpoint, token=self._token, library_name="pinsync"
        )
        self._lock = asyncio.Lock()
        self._commits: collections.deque[float] = collections.deque()
        self._blocked_until = 0.0
        self._head: str | None = None
        self._listed: tuple[str, dict[str, base.PinInfo]] | None = None
        """(head commit, the pins listed at it)."""
        """The revision's head as this backend's last commit left it."""
        self._files: int | None = None
        """CARs under the base path, as of the last listing plus what was committed since."""
        self._uploaded: dict[str, tuple[int, str]] = {}
        """cid -> (size, sha256) of what this process committed, for shallow verification."""
        self._spool_dir: tempfile.TemporaryDirectory[str] | None = None
        self.commits_made = 0

    @property
    def location(self) -> str:
        where = f"{self.conf.endpoint}/{self.conf.repo}@{self.conf.revision}"
        return f"{where}:{self.conf.base_path}" if self.conf.base_path else where

    def path(self, cid: str) -> str:
        name = f"{shard(cid)}/{cid}{CAR}"
        return f"{self.conf.base_path}/{name}" if self.conf.base_path else name

    def cid_of(self, path: str) -> str | None:
        prefix = f"{self.conf.base_path}/" if self.conf.base_path else ""
        rest = path[len(prefix) :] if path.startswith(prefix) else None
        if rest is None or rest.count("/") != 1 or not rest.endswith(CAR):
            return None
        folder, name = rest.split("/")
        cid = name[: -len(CAR)]
        return cid if cid and shard(cid) == folder else None

    async def aclose(self) -> None:
        if self._spool_dir is not None:
            self._spool_dir.cleanup()
            self._spool_dir = None

    # -- calls and errors ------------------------------------------------------------------------

    def _check_blocked(self, what: str) -> None:
        wait = self._blocked_until - time.monotonic()
        if wait > 0:
            raise errors.RateLimited(
                f"{what}: the Hub asked to wait; {wait:.0f}s left", retry_after=wait
            )

    async def call(
        self, what: str, fn: Callable[..., T], *args: Any, writing: bool = False, **kwargs: Any
    ) -> T:
        """A blocking library call in a thread, its errors translated."""
        self._check_blocked(what)
        with self.translating(what, writing=writing):
            return await asyncio.to_thread(fn, *args, **kwargs)

    def scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def translate(self, exc: Exception, what: str, *, writing: bool = False) -> errors.BackendError:
        if isinstance(exc, HubRateLimited):
            self._blocked_until = max(self._blocked_until, time.monotonic() + exc.retry_after)
            return errors.RateLimited(
                f"{what}: the Hub answered 429; retry after {exc.retry_after:.0f}s",
                retry_after=exc.retry_after,
            )
        if isinstance(exc, huggingface_hub.errors.RepositoryNotFoundError):
            return self._no_repo(what)
        if isinstance(exc, huggingface_hub.errors.RevisionNotFoundError):
            return self._no_revision(what)
        if isinstance(exc, huggingface_hub.errors.HfHubHTTPError):
            return self._answer(exc.response.status_code if exc.response is not None else 0, what)
        if isinstance(exc, HubUnreachable | OSError | TimeoutError | httpx2.TransportError):
            return errors.Unreachable(f"{what}: cannot reach {self.conf.endpoint}")
        if isinstance(exc, httpx.TransportError):  # fetch_pin's own client
            return errors.Unreachable(f"{what}: cannot reach {self.conf.endpoint}")
        return errors.BackendError(f"{what}: {type(exc).__name__}: {self.scrub(str(exc))[:200]}")

    def _answer(self, status: int, what: str) -> errors.BackendError:
        """An error answer of the Hub by its status, where ``X-Error-Code`` said nothing more."""
        if status == 401:
            return errors.AuthFailed(f"{what}: the Hub rejected the token (401)")
        if status == 403:
            return errors.PermissionDenied(f"{what}: the token may not do this (403)")
        if status == 404:
            return errors.PinNotFound(f"{what}: not found (404)")
        if status == 412:  # the parent commit is not the head any more: another writer
            return errors.BackendError(
                f"{what}: {self.conf.revision} kept moving ({COMMIT_ATTEMPTS} attempts)",
                reason=reasons.BRANCH_MOVED,
            )
        if status in (413, 507):
            return errors.StorageFull(f"{what}: the Hub refused it as too large ({status})")
        return errors.BackendError(f"{what}: the Hub answered {status}")

    def _no_repo(self, what: str) -> errors.BackendError:
        return errors.LocationNotFound(
            f"{what}: no such {self.conf.repo_type} repository {self.conf.repo} "
            "(or hidden from this token)",
            reason=reasons.REPOSITORY_NOT_FOUND,
        )

    def _no_revision(self, what: str) -> errors.BackendError:
        return errors.LocationNotFound(
            f"{what}: {self.conf.repo} has no revision {self.conf.revision}"
        )

    def _kw(self) -> dict[str, Any]:
        return {"repo_id": self.conf.repo, "repo_type": self.conf.repo_type}

    # -- health ----------------------------------------------------------------------------------

    async def health(self) -> None:
        """The token valid (whoami, cached: the Hub rate-limits it strictly), the repository
        and revision there (created when ``createRepo``), and write access (auth-check)."""
        await self.call(f"log in to {self.conf.endpoint}", self.api.whoami, cache=True)
        try:
            await self.head()
        except errors.LocationNotFound as exc:
            if not self.conf.create_repo:
                raise
            if exc.reason == reasons.REPOSITORY_NOT_FOUND.name:
                await self.call(
                    f"create {self.conf.repo}",
                    self.api.create_repo,
                    private=self.conf.private,
                    exist_ok=True,
                    writing=True,
                    **self._kw(),
                )
            if self.conf.revision != "main":
                await self.call(
                    f"create branch {self.conf.revision}",
                    self.api.create_branch,
                    branch=self.conf.revision,
                    exist_ok=True,
                    writing=True,
                    **self._kw(),
                )
        await self.call(
            f"write access to {self.conf.repo}",
            self.api.auth_check,
            write=True,
            writing=True,
            **self._kw(),
        )

    async def head(self) -> str:
        """The revision's head commit, from the refs list: a few hundred bytes, where repo info
        would also list every file of the repository (tens of thousands)."""
        what = f"read {self.location}"
        refs = await self.call(what, self.api.list_repo_refs, **self._kw())
        for branch in refs.branches:
            if branch.name == self.conf.revision:
                return str(branch.target_commit)
        raise self._no_revision(what)

    # -- reading ---------------------------------------------------------------------------------

    async def _listing(self) -> dict[str, base.PinInfo]:
        """Every pin under the base path, walked at the head commit -- once per head: a pass
        over an unchanged repository costs one refs request, not a walk of every file."""
        head = self._head = await self.head()  # also what the next commit builds on
        if self._listed is not None and self._listed[0] == head:
            return self._listed[1]

        def walk() -> list[Any]:
            try:
                return list(
                    self.api.list_repo_tree(
                        path_in_repo=self.conf.base_path or None,
                        recursive=True,
                        revision=head,
                        **self._kw(),
                    )
                )
            except huggingface_hub.errors.RemoteEntryNotFoundError:
                return []  # nothing under the base path yet

        entries = await self.call(f"list {self.location}", walk)
        pins = {pin.cid: pin for pin in map(self._pin, entries) if pin is not None}
        self._files = len(pins)
        self._listed = (head, pins)
        return pins

    def _pin(
        self, entry: huggingface_hub.RepoFile | huggingface_hub.RepoFolder
    ) -> base.PinInfo | None:
        """A tree entry as a pin: a file at a pin's path (its LFS pointer's sha256, if any)."""
        cid = self.cid_of(entry.path) if isinstance(entry, huggingface_hub.RepoFile) else None
        if cid is None or not isinstance(entry, huggingface_hub.RepoFile):
            return None
        sha256 = entry.lfs.sha256 if entry.lfs is not None else None
        return base.PinInfo(cid=cid, size=entry.size, sha256=sha256)

    async def list_pins(self) -> AsyncIterator[base.PinInfo]:
        for _, info in sorted((await self._listing()).items()):
            yield info

    async def usage(self) -> base.Usage:
        pins = await self._listing()
        return base.Usage(bytes=sum(p.size or 0 for p in pins.values()), objects=len(pins))

    async def _info(self, cid: str) -> base.PinInfo:
        found = await self.call(
            f"read {cid} in {self.location}",
            self.api.get_paths_info,
            paths=[self.path(cid)],
            revision=self.conf.revision,
            **self._kw(),
        )
        for pin in map(self._pin, found):
            if pin is not None and pin.cid == cid:
                return pin
        raise errors.PinNotFound(f"{cid}: not in {self.location}")

    async def verify_pin(
        self, cid: str, *, deep: bool = False, listed: base.PinInfo | None = None
    ) -> base.PinInfo:
        info = listed if listed is not None else await self._info(cid)
        if info.sha256 is None:
            raise errors.Damaged(f"{cid}: stored as a regular file, not through LFS")
        written = self._uploaded.get(cid)
        if written is not None and written != (info.size, info.sha256):
            raise errors.Damaged(f"{cid}: the repository's file is not the one uploaded")
        if deep:
            digest, size = hashlib.sha256(), 0
            async for chunk in self.fetch_pin(cid):
                digest.update(chunk)
                size += len(chunk)
            if (size, digest.hexdigest()) != (info.size, info.sha256):
                raise errors.Damaged(f"{cid}: the downloaded CAR does not match its LFS pointer")
        return info

    async def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        self._check_blocked(f"download {cid}")
        url = huggingface_hub.hf_hub_url(
            self.conf.repo,
            self.path(cid),
            repo_type=self.conf.repo_type,
            revision=self.conf.revision,
            endpoint=self.conf.endpoint,
        )
        # Documented, but exported lazily, which mypy cannot see:
        build: Callable[..., dict[str, str]] = hub_utils.build_hf_headers  # type: ignore[attr-defined]
        headers = build(token=self._token, library_name="pinsync")
        timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
        what = f"download {cid} from {self.location}"
        with self.translating(what):
            async with (
                httpx.AsyncClient(follow_redirects=True, timeout=timeout) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code == 429:
                    raise HubRateLimited(retry_after(response.headers))
                if response.status_code != 200:
                    raise self._refused(response, what)
                    raise errors.BackendError(f"{what}: the Hub answered {response.status_code}")
                async for chunk in response.aiter_bytes(CHUNK):
                    yield chunk

    def _refused(self, response: httpx.Response, what: str) -> errors.BackendError:
        """A download's error answer, read as the library reads one (``X-Error-Code``)."""
        status, code = response.status_code, response.headers.get("X-Error-Code")
        if status == 429:
            raise HubRateLimited(retry_after(response.headers))
        if code == "RepoNotFound":
            return self._no_repo(what)
        if code == "RevisionNotFound":
            return self._no_revision(what)
        return self._answer(status, what)

    # -- writing ---------------------------------------------------------------------------------

    def _spool(self) -> str:
        if self._spool_dir is None:
            self._spool_dir = tempfile.TemporaryDirectory(prefix="pinsync-hf-")
        return self._spool_dir.name

    async def _stage(self, meta: base.PinMeta, source: base.Source) -> Staged:
        """The pin's stream into a spool file (LFS needs its sha256 before the upload)."""
        digest, size = hashlib.sha256(), 0
        fd, spool = tempfile.mkstemp(dir=self._spool(), suffix=CAR)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in source:
                    digest.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(out.write, chunk)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(spool)
            raise
        return Staged(
            meta=meta, path=self.path(meta.cid), spool=spool, size=size, sha256=digest.hexdigest()
        )

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
        return await self.put_one(meta, content)

    async def put_pins(self, uploads: Sequence[base.Upload]) -> list[base.PinInfo | Exception]:
        """Spool the batch, then commit it: one commit per ``maxBytes`` of it (normally one)."""
        try:
            self._check_blocked(f"write to {self.location}")
        except errors.RateLimited as exc:
            return [exc] * len(uploads)  # no stream opened, nothing asked
        return await self.commit_batch(
            uploads, stage=self._stage, commit=self._commit_staged, max_bytes=self.conf.max_bytes
        )

    async def _commit_staged(self, staged: list[tuple[int, Staged]], results: base.Results) -> None:
        pins = [pin for _, pin in staged]
        try:
            stored = await self._commit(pins)
        except Exception as exc:
            for index, _ in staged:
                results[index] = exc
            return
        for index, pin in staged:
            info = stored.get(pin.meta.cid)
            if info is None or (info.size, info.sha256) != (pin.size, pin.sha256):
                results[index] = errors.BackendError(
                    f"{pin.meta.cid}: the committed file is not the one uploaded",
                    reason=reasons.VERIFY_FAILED,
                )
            else:
                self._uploaded[pin.meta.cid] = (pin.size, pin.sha256)
                results[index] = dataclasses.replace(info, verified=True)

    def _room(self, adding: int) -> None:
        if self._files is not None and self._files + adding > self.conf.max_files:
            raise errors.BackendError(
                f"{self.location}: {self._files} pins stored, maxFiles is {self.conf.max_files}",
                reason=reasons.REPOSITORY_FULL,
            )

    def _rate(self) -> None:
        """At most ``maxCommitsPerHour`` commits in any hour, counted by this backend."""
        hour_ago = time.monotonic() - 3600
        while self._commits and self._commits[0] <= hour_ago:
            self._commits.popleft()
        if len(self._commits) >= self.conf.commits_per_hour:
            wait = self._commits[0] - hour_ago
            raise errors.RateLimited(
                f"{self.location}: {len(self._commits)} commits in the last hour "
                f"(maxCommitsPerHour {self.conf.commits_per_hour}); {wait:.0f}s to wait",
                retry_after=wait,
            )

    async def _commit(self, pins: list[Staged]) -> dict[str, base.PinInfo]:
        """Upload the batch's CARs (LFS), commit them, read their tree entries back."""
        if self._files is None:
            await self._listing()
        self._room(len(pins))
        self._rate()

        def operations() -> list[Any]:
            # Built from the spool files' paths: the library hashes them itself (again).
            return [
                huggingface_hub.CommitOperationAdd(path_in_repo=p.path, path_or_fileobj=p.spool)
                for p in pins
            ]

        ops = await self.call("hash the batch", operations)
        await self.call(
            f"upload {len(pins)} CARs to {self.location}",
            self.api.preupload_lfs_files,
            additions=ops,
            revision=self.conf.revision,
            writing=True,
            **self._kw(),
        )
        message = (
            f"pinsync: add {pins[0].meta.cid}"
            if len(pins) == 1
            else f"pinsync: add {len(pins)} pins"
        )
        await self._write(message, ops)
        self._files = (self._files or 0) + len(pins)
        found = await self.call(
            f"read back {len(pins)} pins in {self.location}",
            self.api.get_paths_info,
            paths=[p.path for p in pins],
            revision=self.conf.revision,
            **self._kw(),
        )
        return {pin.cid: pin for pin in map(self._pin, found) if pin is not None}

    async def _write(self, message: str, ops: list[Any]) -> None:
        """One commit on the head it was built on; rebuilt on a moved head (412)."""
        async with self._lock:
            for attempt in range(COMMIT_ATTEMPTS):
                # The head our last commit made, while nobody else moves it: no request.
                parent = self._head or await self.head()
                self._rate()
                try:
                    made = await self.call(
                        f"commit to {self.location}",
                        self.api.create_commit,
                        operations=ops,
                        commit_message=message,
                        revision=self.conf.revision,
                        parent_commit=parent,
                        writing=True,
                        **self._kw(),
                    )
                except errors.BackendError as exc:
                    self._head = None  # ask again: moved, or unknown after a failure
                    if exc.reason != reasons.BRANCH_MOVED.name or attempt == COMMIT_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.1 * (attempt + 1))
                    continue
                self._head = str(made.oid)
                self._commits.append(time.monotonic())
                self.commits_made += 1
                return

    async def remove_pin(self, cid: str) -> None:
        try:
            await self._info(cid)
        except errors.PinNotFound:
            return
        op = huggingface_hub.CommitOperationDelete(path_in_repo=self.path(cid))
        try:
            await self._write(f"pinsync: remove {cid}", [op])
        except errors.PinNotFound:
            return  # removed meanwhile by someone else
        self._uploaded.pop(cid, None)
        if self._files:
            self._files -= 1
