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
COMMIT_ATTEMPTS times, then ``BranchMoved`` as for github. LFS uploads of a batch run outside
the commit lock; commits are serialised per backend. The library uploads a large CAR through
the Hub's multipart LFS transfer when the Hub offers it.

Quotas are the account's, not the repository's (hub-docs ``rate-limits.md``): every backend
using one token draws on one :class:`Budget` per process, keyed by a hash of the token.

* Rate limits: the Hub announces ``RateLimit: "api";r=<remaining>;t=<seconds>`` over fixed
  5-minute windows, read with the library's parser. With none remaining (on any answer) or
  after a 429, the token's calls of that bucket (``api``, ``resolvers`` for downloads) fail
  ``RateLimited`` until the reset, without a request; the pins' backoff honours the wait.
  ``Retry-After``, which the Hub often leaves out, counts when ``RateLimit`` names no reset.
  ``huggingface_hub`` would otherwise sleep and retry in its own worker thread (5 times,
  blocking the batch); a response hook on the library's HTTP client (``set_client_factory``,
  process-wide: the operator is the only user of the library in its process) records the
  headers and turns a 429 into an exception the library does not retry. The same client gets
  timeouts, which the library's default lacks.
* Commits: at most ``maxCommitsPerHour`` in any hour for the token (default 100), checked
  before a batch is staged. The Hub's own commit quota (undocumented; one answer said 128 an
  hour) answers 429 saying so only in its body: the token then waits until its oldest commit
  of the hour ages out, and a count the body names becomes the token's limit.
* Private storage: a full quota answers 403 "Private repository storage limit reached":
  ``StorageFull``/``QuotaExceeded``, retried, not ``PermissionDenied``. It counts every LFS
  object pushed; deleting a pointer frees nothing (hub-docs ``storage-limits.md``), so Prune
  deletes the pins' files in one commit per ``batch.maxPins`` and then their LFS objects for
  good (``permanently_delete_lfs_files``, history rewritten: the branch gets a new head),
  except objects another branch or tag holds at the same path.

Xet: ``huggingface_hub`` uploads through Xet storage whenever ``hf_xet`` is installed. pinsync
turns that off (``HF_HUB_DISABLE_XET``) unless the operator setting ``PINSYNC_HF_XET=1`` asks
for it: LFS works against every Hub-compatible server, Xet only against the real Hub. The
library reads the flag at each upload, so this module sets it on import.

Blocking library calls run in threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import httpx

from pinsync import reasons
from pinsync.backends import base, commitstore, errors, layout

os.environ.setdefault("HF_HUB_DISABLE_XET", "0" if os.environ.get("PINSYNC_HF_XET") else "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # tqdm bars in an operator's log

# After the Xet switch above, which the library reads on import:
import httpx2
import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.errors
import huggingface_hub.hf_api
from huggingface_hub import utils as hub_utils
from huggingface_hub.utils import _http as hub_http

huggingface_hub.constants.HF_HUB_DISABLE_XET = os.environ["HF_HUB_DISABLE_XET"] == "1"

# Documented (rate-limits page, "since 1.2.0"), but exported lazily, which mypy cannot see:
parse_ratelimit_headers: Callable[[Mapping[str, str]], hub_http.RateLimitInfo | None] = (
    hub_utils.parse_ratelimit_headers  # type: ignore[attr-defined]
)

T = TypeVar("T")
logger = logging.getLogger(__name__)

MAX_FILES_PER_COMMIT = 100
"""The Hub recommends fewer than 100 files per commit."""
DEFAULT_MAX_BYTES = 4 * 1024**3
DEFAULT_MAX_FILES = 90_000
DEFAULT_COMMITS_PER_HOUR = 100
DEFAULT_RETRY_AFTER = 60.0
"""Seconds to wait after a 429 that names neither a reset nor a Retry-After."""
COMMIT_QUOTA_WAIT = 900.0
"""Seconds to wait after the commit quota's 429 when this process made no commit in the hour."""
PATHS_PER_REQUEST = 1000
"""Paths in one ``paths-info`` request."""
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 300.0
CHUNK = 1024 * 1024


# -- quotas: the token's, shared by every backend of this process that uses it -------------------


@dataclasses.dataclass
class Budget:
    """What the Hub still allows one token, as far as this process knows: the rate-limit
    buckets it asked to wait for (``api``, ``resolvers``) and the commits of the last hour.

    The Hub counts per account, not per repository (rate-limits page: "per user"; its commit
    quota likewise), so every backend with the same token draws on one Budget (:func:`budget`).
    Read and written from the event loop and from the library's worker threads (the response
    hook), hence the lock.
    """

    key: str
    """A hash of the token: printable, unlike the token."""
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    waits: dict[str, float] = dataclasses.field(default_factory=dict)
    """Bucket -> monotonic time until which the Hub asked to wait."""
    commits: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    """Monotonic times of the commits made with the token in the last hour."""
    commits_blocked: float = 0.0
    """Until when the Hub's commit quota refused (monotonic)."""
    hub_commits_per_hour: int | None = None
    """The commit quota, when a 429 named it."""

    def wait(self, bucket: str) -> float:
        return max(0.0, self.waits.get(bucket, 0.0) - time.monotonic())

    def block(self, bucket: str, seconds: float) -> None:
        with self.lock:
            until = time.monotonic() + seconds
            self.waits[bucket] = max(self.waits.get(bucket, 0.0), until)

    def commit_wait(self, limit: int) -> tuple[int, float]:
        """(commits in the last hour, seconds until one more is allowed; 0: now)."""
        now = time.monotonic()
        with self.lock:
            while self.commits and self.commits[0] <= now - 3600:
                self.commits.popleft()
            limit = min(limit, self.hub_commits_per_hour or limit)
            wait = self.commits[0] + 3600 - now if len(self.commits) >= limit else 0.0
            return len(self.commits), max(wait, self.commits_blocked - now)

    def committed(self) -> None:
        with self.lock:
            self.commits.append(time.monotonic())

    def commits_refused(self, per_hour: int | None) -> float:
        """The Hub's commit quota refused: seconds to wait, and no commit asked until then.
        The quota is hourly: the wait ends when the oldest commit this process made in the
        hour leaves it; when it made none (another process used the token) a quarter hour."""
        now = time.monotonic()
        with self.lock:
            if per_hour:
                self.hub_commits_per_hour = per_hour
            recent = [t for t in self.commits if t > now - 3600]
            wait = recent[0] + 3600 - now if recent else COMMIT_QUOTA_WAIT
            self.commits_blocked = max(self.commits_blocked, now + wait)
            return wait


_budgets: dict[str, Budget] = {}
_budgets_lock = threading.Lock()


def budget(token: str) -> Budget:
    """The process-wide Budget of ``token``, keyed by a hash of it (never the token)."""
    key = hashlib.sha256(token.encode()).hexdigest()[:16]
    with _budgets_lock:
        return _budgets.setdefault(key, Budget(key=key))


class HubRateLimited(Exception):
    """Raised by the response hook on a 429, before the library's own retry loop sees it."""

    def __init__(self, retry_after: float, what: str) -> None:
        super().__init__(f"{what}: wait {retry_after:.0f}s")
        self.retry_after = retry_after
        self.what = what


COMMIT_QUOTA = re.compile(r"quota[^.]*\bcommit|\bcommits? per hour", re.IGNORECASE)
"""A 429 of the commit quota, known only by its text: "You have exceeded our hourly quotas for
action: commit" (huggingface/datasets#6257); another answer said "128 per hour"."""
PER_HOUR = re.compile(r"(\d+)\s+(?:commits?\s+)?per\s+hour", re.IGNORECASE)


def rate_limit(
    status: int, headers: Mapping[str, str], path: str, token: str, body: str
) -> HubRateLimited | None:
    """Record what an answer of the Hub says of the token's quotas; for a 429, the exception.

    ``RateLimit: "<bucket>";r=<remaining>;t=<seconds>`` (read by the library's own parser)
    comes with every answer; with none remaining, the bucket waits out its window, even after
    a 2xx (the next request would be refused). A 429 waits ``t`` when ``r`` is 0, as the
    library's retry loop does, else ``Retry-After``, which the Hub often leaves out, else the
    default. The commit quota's 429 says so only in its body.
    """
    info = parse_ratelimit_headers(headers)
    bucket = info.resource_type if info else ("resolvers" if "/resolve/" in path else "api")
    spent = budget(token) if token else None
    if info is not None and info.remaining == 0 and spent is not None:
        spent.block(bucket, info.reset_in_seconds)
    if status != 429:
        return None
    if COMMIT_QUOTA.search(body):
        said = PER_HOUR.search(body)
        per_hour = int(said.group(1)) if said else None
        wait = spent.commits_refused(per_hour) if spent else COMMIT_QUOTA_WAIT
        return HubRateLimited(wait, "the hourly commit quota is used up")
    if info is not None and info.remaining == 0:
        wait = float(info.reset_in_seconds)
    else:
        wait = errors.retry_after(headers.get("Retry-After")) or DEFAULT_RETRY_AFTER
    if spent is not None:
        spent.block(bucket, wait)
    return HubRateLimited(wait, f"the {bucket} rate limit is reached")


# -- the library's HTTP client: timeouts, quotas recorded, a 429 as an exception it does not retry


def _token_of(headers: Mapping[str, str]) -> str:
    return headers.get("authorization", "").removeprefix("Bearer ").strip()


def _observe(response: httpx2.Response) -> None:
    """The response hook: quotas recorded, a 429 raised as HubRateLimited."""
    body = ""
    if response.status_code == 429:
        response.read()
        body = response.text[:2000]
    request = response.request
    limited = rate_limit(
        response.status_code, response.headers, request.url.path, _token_of(request.headers), body
    )
    if limited is not None:
        raise limited


def _cause(exc: Exception) -> Exception:
    """What the Hub answered under the library's wrapping: it re-raises an LFS upload's error
    as ``RuntimeError(...) from`` it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen, HubRateLimited | HubUnreachable | huggingface_hub.errors.HfHubHTTPError
        ):
            return seen
        seen = seen.__cause__
    return exc


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
    the quota hook."""
    return httpx2.Client(
        event_hooks={"request": [hub_http.hf_request_event_hook], "response": [_observe]},
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
        commitstore.discard([self.spool])


class HuggingfaceBackend(commitstore.CommitStore[Staged]):
    spool_prefix: ClassVar[str] = "pinsync-hf-"
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
        self.budget = budget(self._token)
        """The token's quotas, shared with every backend using it."""
        self._head: str | None = None
        self._listed: tuple[str, dict[str, base.PinInfo]] | None = None
        """(head commit, the pins listed at it)."""
        """The revision's head as this backend's last commit left it."""
        self._files: int | None = None
        """CARs under the base path, as of the last listing plus what was committed since."""
        self._uploaded: dict[str, tuple[int, str]] = {}
        """cid -> (size, sha256) of what this process committed, for shallow verification."""
        self._unfreed: dict[str, tuple[str, int]] = {}
        """sha256 -> (cid, size) of the LFS objects of removed pins not yet deleted for good."""
        self.commits_made = 0

    @property
    def location(self) -> str:
        where = f"{self.conf.endpoint}/{self.conf.repo}@{self.conf.revision}"
        return f"{where}:{self.conf.base_path}" if self.conf.base_path else where

    def path(self, cid: str) -> str:
        name = layout.sharded(cid, layout.car(cid))
        return f"{self.conf.base_path}/{name}" if self.conf.base_path else name

    def cid_of(self, path: str) -> str | None:
        prefix = f"{self.conf.base_path}/" if self.conf.base_path else ""
        rest = path[len(prefix) :] if path.startswith(prefix) else None
        if rest is None or rest.count("/") != 1 or not rest.endswith(layout.CAR):
            return None
        folder, name = rest.split("/")
        cid = name[: -len(layout.CAR)]
        return cid if cid and layout.shard(cid) == folder else None

    # -- calls and errors ------------------------------------------------------------------------

    def _check_blocked(self, what: str, bucket: str = "api") -> None:
        wait = self.budget.wait(bucket)
        if wait > 0:
            raise errors.RateLimited(
                f"{what}: the Hub's {bucket} rate limit for this token; {wait:.0f}s left",
                retry_after=wait,
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
        exc = _cause(exc)
        if isinstance(exc, HubRateLimited):  # the Budget has it recorded already
            return errors.RateLimited(
                f"{what}: the Hub answered 429: {exc.what}; retry after {exc.retry_after:.0f}s",
                retry_after=exc.retry_after,
            )
        if isinstance(exc, huggingface_hub.errors.RepositoryNotFoundError):
            return self._no_repo(what)
        if isinstance(exc, huggingface_hub.errors.RevisionNotFoundError):
            return self._no_revision(what)
        if isinstance(exc, huggingface_hub.errors.HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            return self._answer(status, what, exc.server_message or "")
        if isinstance(exc, HubUnreachable | OSError | TimeoutError | httpx2.TransportError):
            return errors.Unreachable(f"{what}: cannot reach {self.conf.endpoint}")
        if isinstance(exc, httpx.TransportError):  # fetch_pin's own client
            return errors.Unreachable(f"{what}: cannot reach {self.conf.endpoint}")
        return errors.BackendError(f"{what}: {type(exc).__name__}: {self.scrub(str(exc))[:200]}")

    def _answer(self, status: int, what: str, said: str = "") -> errors.BackendError:
        """An error answer of the Hub by its status (and, for a 403, its text), where
        ``X-Error-Code`` said nothing more."""
        if status == 401:
            return errors.AuthFailed(f"{what}: the Hub rejected the token (401)")
        if status == 403 and "storage limit" in said.lower():
            # The account's private storage is full (huggingface_hub#3048): capacity, not
            # permission; pruning frees it (the LFS objects are deleted for good).
            return errors.StorageFull(
                f"{what}: the Hub refused it: the account's private storage quota is full "
                "(403 'Private repository storage limit reached')",
                reason=reasons.QUOTA_EXCEEDED,
            )
        if status == 403:
            return errors.PermissionDenied(f"{what}: the token may not do this (403)")
        if status == 404:
            return errors.PinNotFound(f"{what}: not found (404)")
        if status == 412:  # the parent commit is not the head any more: another writer
            return errors.BranchMoved(
                f"{what}: {self.conf.revision} kept moving ({commitstore.COMMIT_ATTEMPTS} attempts)"
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
        pin = (await self._infos(f"read {cid} in {self.location}", [cid])).get(cid)
        if pin is None:
            raise errors.PinNotFound(f"{cid}: not in {self.location}")
        return pin

    async def _infos(
        self, what: str, cids: Sequence[str], revision: str | None = None
    ) -> dict[str, base.PinInfo]:
        """Those of ``cids`` present on the revision (or another), from their tree entries:
        ``paths-info`` for PATHS_PER_REQUEST at a time, never a walk of the whole tree."""
        paths = [self.path(cid) for cid in cids]
        found: dict[str, base.PinInfo] = {}
        for start in range(0, len(paths), PATHS_PER_REQUEST):
            entries = await self.call(
                what,
                self.api.get_paths_info,
                paths=paths[start : start + PATHS_PER_REQUEST],
                revision=revision or self.conf.revision,
                **self._kw(),
            )
            found.update((pin.cid, pin) for pin in map(self._pin, entries) if pin is not None)
        return found

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
            await base.reread(
                cid,
                self.fetch_pin(cid),
                sha256=info.sha256,
                size=info.size,
                mismatch="the downloaded CAR does not match its LFS pointer",
            )
        return info

    async def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        self._check_blocked(f"download {cid}", "resolvers")
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
                status, body = response.status_code, ""
                if status == 429:  # the commit quota's is known by its text only
                    body = (await response.aread()).decode(errors="replace")[:2000]
                limited = rate_limit(status, response.headers, url, self._token, body)
                if limited is not None:
                    raise limited
                if response.status_code != 200:
                    raise self._refused(response, what)
                async for chunk in response.aiter_bytes(CHUNK):
                    yield chunk

    def _refused(self, response: httpx.Response, what: str) -> errors.BackendError:
        """A download's error answer, read as the library reads one (``X-Error-Code``)."""
        status, code = response.status_code, response.headers.get("X-Error-Code")
        if code == "RepoNotFound":
            return self._no_repo(what)
        if code == "RevisionNotFound":
            return self._no_revision(what)
        return self._answer(status, what)

    # -- writing ---------------------------------------------------------------------------------

    @property
    def max_commit_bytes(self) -> int:
        return self.conf.max_bytes

    async def stage(self, meta: base.PinMeta, source: base.Source) -> Staged:
        """The pin's stream into a spool file (LFS needs its sha256 before the upload)."""
        hashed = base.Hashing(aiter(source))
        fd, spool = tempfile.mkstemp(dir=self.spool_dir(), suffix=layout.CAR)
        with commitstore.discarded_on_failure([spool]), os.fdopen(fd, "wb") as out:
            async for chunk in hashed:
                await asyncio.to_thread(out.write, chunk)
        path = self.path(meta.cid)
        return Staged(meta=meta, path=path, spool=spool, size=hashed.size, sha256=hashed.sha256)

    async def put_pins(self, uploads: Sequence[base.Upload]) -> list[base.PinInfo | Exception]:
        """Nothing staged while the token must wait: no stream opened, nothing asked."""
        try:
            self._check_blocked(f"write to {self.location}")
            self._rate()
        except errors.RateLimited as exc:
            return [exc] * len(uploads)
        return await super().put_pins(uploads)

    async def commit_staged(self, staged: list[tuple[int, Staged]], results: base.Results) -> None:
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
        """At most ``maxCommitsPerHour`` commits in any hour, counted for the token (every
        backend using it), fewer if the Hub's commit quota said so."""
        made, wait = self.budget.commit_wait(self.conf.commits_per_hour)
        if wait > 0:
            raise errors.RateLimited(
                f"{self.location}: {made} commits with this token in the last hour "
                f"(maxCommitsPerHour {self.conf.commits_per_hour}, or the Hub's commit quota); "
                f"{wait:.0f}s to wait",
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
        what = f"read back {len(pins)} pins in {self.location}"
        return await self._infos(what, [pin.meta.cid for pin in pins])

    async def _write(self, message: str, ops: list[Any]) -> None:
        """One commit on the head it was built on; rebuilt on a moved head (412)."""

        async def attempt() -> None:
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
            except errors.BackendError:
                self._head = None  # moved, or unknown after a failure: ask again
                raise
            self._head = str(made.oid)
            self.budget.committed()
            self.commits_made += 1

        await self.rebuilt_while_moving(attempt)

    async def remove_pin(self, cid: str) -> None:
        failed = (await self.remove_pins([cid]))[0]
        if failed is not None:
            raise failed

    async def remove_pins(self, cids: Sequence[str]) -> list[errors.BackendError | None]:
        """Prune: one commit deleting the pins' files (per ``batch.maxPins``), then their LFS
        objects deleted for good, since deleting a pointer frees no storage (hub-docs
        ``storage-limits.md``) and the private storage quota counts every object pushed."""
        if not cids:
            return []
        results: list[errors.BackendError | None] = [None] * len(cids)
        listed = await self._infos(f"read {len(cids)} pins in {self.location}", cids)
        present = [(i, cid) for i, cid in enumerate(cids) if cid in listed]
        for start in range(0, len(present), self.conf.max_pins):
            chunk = present[start : start + self.conf.max_pins]
            ops = [
                huggingface_hub.CommitOperationDelete(path_in_repo=self.path(cid))
                for _, cid in chunk
            ]
            message = (
                f"pinsync: remove {chunk[0][1]}"
                if len(chunk) == 1
                else f"pinsync: remove {len(chunk)} pins"
            )
            try:
                await self._write(message, ops)
            except errors.BackendError as exc:
                self._listed = None  # some may be gone meanwhile: the next pass lists again
                for i, _ in chunk:
                    results[i] = exc
                continue
            for _, cid in chunk:
                self._uploaded.pop(cid, None)
                pin = listed[cid]
                if pin.sha256 is not None:
                    self._unfreed[pin.sha256] = (cid, pin.size or 0)
            if self._files:
                self._files = max(0, self._files - len(chunk))
        await self._free()
        return results

    async def _free(self) -> None:
        """Delete for good the LFS objects of removed pins, except those a branch or tag of the
        repository holds at the same path: another backend's revision, or this one's when a pin
        was put back since. ``rewriteHistory``: old commits lose their pointers too, which gives
        the branch a new head, so it runs under the commit lock. A failure is logged and tried
        again at the next prune: the pins are removed either way."""
        if not self._unfreed:
            return
        what = f"free the storage of {len(self._unfreed)} removed pins in {self.location}"
        try:
            async with self._lock:  # no commit between the check and the deletion
                refs = await self.call(what, self.api.list_repo_refs, **self._kw())
                cids = sorted(cid for cid, _ in self._unfreed.values())
                for ref in [*refs.branches, *refs.tags]:
                    for pin in (await self._infos(what, cids, ref.name)).values():
                        self._unfreed.pop(pin.sha256 or "", None)  # still used there
                if not self._unfreed:
                    return
                # The deletion names objects by their sha256 (``fileOid``; the rest of the
                # record is not sent), which the tree's LFS pointers gave: no listing of every
                # LFS object of the repository (paged, at the api rate limit) is needed.
                now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())  # as the Hub's
                gone = [
                    huggingface_hub.hf_api.LFSFileInfo(
                        fileOid=sha, oid=sha, filename=self.path(cid), pushedAt=now, size=size
                    )
                    for sha, (cid, size) in self._unfreed.items()
                ]
                await self.call(
                    what,
                    self.api.permanently_delete_lfs_files,
                    lfs_files=gone,
                    rewrite_history=True,
                    writing=True,
                    **self._kw(),
                )
        except errors.BackendError as exc:
            self._head = self._listed = None
            logger.warning("%s", exc)
            return
        self._head = self._listed = None  # history rewritten: a new head
        self._unfreed.clear()
