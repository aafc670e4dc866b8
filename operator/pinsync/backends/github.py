"""Pins in a git repository, over git smart HTTP (type ``github``): GitHub, or any git host.

Layout on the branch (default ``main``, created as a root commit holding only pinsync's files
if it does not exist)::

    <basePath>/<shard>/<cid>.car            the CAR, when it is at most PART_SIZE bytes
    <basePath>/<shard>/<cid>.car.0000 ...    else the CAR cut into PART_SIZE parts, in order
    <basePath>/<shard>/<cid>.json           sidecar: {"cid", "size", "sha256", "pinsets",
                                            "createdAt", "parts": [{"name", "size", "oid"}]}

``<shard>`` is the CID's last two characters, lower-cased (the first ones are the same for
every CIDv1, ``ba...``): 1,024 directories for base32 CIDs, so 100,000 pins make about 100
files a directory. Parts keep every file far below GitHub's 100 MB limit (and its 50 MB
warning); a pin of 2 GiB is 64 files. Git LFS was the alternative: it needs an LFS server
beside the git host and one more protocol, for no gain here, since nothing reads these files
but pinsync and ``ipfs dag import`` (``cat <cid>.car.* | ipfs dag import``).

One commit per batch (``batch.maxPins`` pins, split further at ``batch.maxBytes``), pushed as
a fast-forward of the head it was built on. A pin is present only once its commit is on the
branch; a batch whose push fails leaves none of its pins. A pin over ``maxBytes`` (GitHub
refuses a push over 2 GiB) goes as several commits: its parts in pushes of at most ``maxBytes``
without its sidecar (so it is not listed yet), then the last parts with the sidecar. When the
branch moved meanwhile (another writer), the server refuses the update (its ref lock compares
the old value), and the commit is rebuilt on the new head and pushed again, up to
COMMIT_ATTEMPTS times (:mod:`pinsync.backends.commitstore`, shared with huggingface). Never a
force push: every update names the head it replaces, and the new commit's parent is that head.

Never a clone: the backend holds an in-memory object store of *trees, commits and sidecars
only*. It fetches the branch head with ``depth=1`` and ``filter=blob:none`` (partial clone, as
GitHub serves it), so the CARs already in the repository are never downloaded; sidecars it does
not have yet are fetched by object id, once (objects are immutable). New files are pushed as a
pack holding exactly the new blobs, the rewritten trees on their paths and the commit. Shallow
verification takes the size from the sidecar, which names every part's blob id: where the
tree's entry still has that id, the bytes are the ones written (git addresses content); where
it does not, the blob is fetched to measure it. A deep verify and a fetch read the parts.

The git side -- the remote held in memory, fetching without blobs, pushing a pack of exactly
the new objects, and why dulwich rather than the git CLI -- is :mod:`pinsync.backends.gitremote`,
which knows nothing of pins; this module lays the pins out on it and speaks for GitHub (its
refusals: a file over 100 MB, a push over 2 GiB).

Blocking dulwich calls run in threads (``asyncio.to_thread``); one lock per backend serialises
the steps that touch the object store and the branch.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import re
import tempfile
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, ClassVar

import dulwich.client
import dulwich.errors
import urllib3
from dulwich.objects import Blob, ObjectID, Tree
from dulwich.pack import UnpackedObject, full_unpacked_object, pack_object_header

from pinsync import reasons
from pinsync.backends import base, commitstore, errors, gitremote, layout

PART_SIZE = 32 * 1024 * 1024
"""CARs above this are stored as parts of this size (GitHub: 50 MB warns, 100 MB is refused)."""
DEFAULT_MAX_PINS = 500
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
"""1 GiB per push: half of GitHub's 2 GiB push limit."""
MAX_PUSH_BYTES = 2 * 1024 * 1024 * 1024 - 64 * 1024 * 1024
SPOOL_COMPRESSION = 0


# -- config ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class GithubConfig(base.Config):
    url: str
    """The repository's https (or http) git URL, without credentials or trailing slash."""
    branch: str
    base_path: str
    """Without leading or trailing slashes; empty: the repository's root."""
    max_pins: int
    max_bytes: int
    author: bytes
    """``Name <email>`` for commits."""


# -- the repository as this backend lays it out (synchronous; called in threads) -----------------


@dataclasses.dataclass(kw_only=True)
class Part:
    name: str
    size: int
    oid: str
    spool: str = ""
    """Temporary file holding the bytes, until pushed."""


@dataclasses.dataclass(kw_only=True)
class Staged:
    """One pin spooled for a commit: its parts and its sidecar."""

    meta: base.PinMeta
    parts: list[Part]
    size: int
    sha256: str
    sidecar: Blob

    def discard(self) -> None:
        commitstore.discard([part.spool for part in self.parts])


@dataclasses.dataclass(kw_only=True)
class Entry:
    """What the tree says of one pin's files."""

    cid: str
    car: dict[str, bytes] = dataclasses.field(default_factory=dict)
    """File name -> blob id of its CAR file(s)."""
    sidecar: bytes | None = None


class Repo(gitremote.Remote):
    """The remote, and the pins' files on its head as this backend lays them out."""

    def __init__(self, url: str, username: str, password: str) -> None:
        super().__init__(url, username, password)
        self._entries: tuple[bytes | None, str, Any] | None = None

    def entries(self, base_path: str) -> tuple[dict[str, Entry], list[tuple[str, bytes]]]:
        """Pins' files under the base path of the current head, and every other file there
        ((path, blob id), for usage); walked once per head."""
        if self._entries is not None and self._entries[:2] == (self.head, base_path):
            cached: tuple[dict[str, Entry], list[tuple[str, bytes]]] = self._entries[2]
            return cached
        found = self._walk(base_path)
        self._entries = (self.head, base_path, found)
        return found

    def _walk(self, base_path: str) -> tuple[dict[str, Entry], list[tuple[str, bytes]]]:
        pins: dict[str, Entry] = {}
        others: list[tuple[str, bytes]] = []
        top = self.tree_at(self.root_tree(), base_path)
        if top is None:
            return pins, others
        for item in top.items():
            directory = item.path.decode()
            if item.mode != gitremote.TREE_MODE:
                others.append((directory, item.sha))
                continue
            sub = self.store[ObjectID(item.sha)]
            assert isinstance(sub, Tree)
            for leaf in sub.items():
                name = leaf.path.decode()
                if leaf.mode == gitremote.TREE_MODE:
                    others.append((f"{directory}/{name}/", leaf.sha))
                    continue
                cid = layout.cid_of(name)
                if cid is None or layout.shard(cid) != directory:
                    others.append((f"{directory}/{name}", leaf.sha))
                    continue
                entry = pins.setdefault(cid, Entry(cid=cid))
                if name.endswith(layout.SIDECAR):
                    entry.sidecar = leaf.sha
                else:
                    entry.car[name] = leaf.sha
        return pins, others


def _read_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as spooled:
        while block := spooled.read(1024 * 1024):
            yield block


# -- the backend ----------------------------------------------------------------------------------


class GithubBackend(commitstore.CommitStore[Staged]):
    spool_prefix: ClassVar[str] = "pinsync-git-"
    credential_keys: ClassVar[base.CredentialKeys] = base.CredentialKeys(
        alternatives=(frozenset({"token"}), frozenset({"username", "password"})), exclusive=True
    )
    conf: GithubConfig
    part_size: int = PART_SIZE
    """Instances may lower it (tests of the parts layout without 100 MB of data)."""

    @classmethod
    def validate(cls, spec: Mapping[str, Any], credentials: base.Credentials) -> GithubConfig:
        fields = base.Fields("github", spec)
        url = fields.url("url")
        if not url:
            raise fields.invalid("url", "is required")
        parsed = urllib.parse.urlsplit(url)
        if parsed.username or parsed.password:
            raise fields.invalid("url", "must not hold credentials: put them in the Secret")
        if not parsed.hostname or parsed.query or parsed.fragment:
            raise fields.invalid("url", "must be a git repository URL (https://host/owner/repo)")
        batch = fields.section("batch")
        author = fields.section("author")
        name = author.text("name", "pinsync", empty=False)
        email = author.text("email", "pinsync@localhost", empty=False)
        if any(c in name + email for c in "<>\n"):
            raise author.invalid("name", "and email must not contain <, > or newlines")
        return GithubConfig(
            url=url,
            branch=gitremote.check_branch(fields, fields.text("branch", "main", empty=False)),
            base_path="/".join(p for p in fields.text("basePath", "pinsync").split("/") if p),
            max_pins=batch.integer("maxPins", DEFAULT_MAX_PINS, low=1, high=10_000),
            max_bytes=batch.integer("maxBytes", DEFAULT_MAX_BYTES, low=1, high=MAX_PUSH_BYTES),
            author=f"{name} <{email}>".encode(),
        )

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        self.batch_size = self.conf.max_pins
        token = credentials.get("token")
        self._username = "x-access-token" if token else credentials.get("username") or ""
        self._password = token or credentials.get("password") or ""
        self._repo: Repo | None = None
        self._sidecars: dict[bytes, dict[str, Any]] = {}

    @property
    def location(self) -> str:
        where = f"{self.conf.url}@{self.conf.branch}"
        return f"{where}:{self.conf.base_path}" if self.conf.base_path else where

    def repo(self) -> Repo:
        if self._repo is None:
            self._repo = Repo(self.conf.url, self._username, self._password)
        return self._repo

    @property
    def bytes_fetched(self) -> int:
        return self._repo.fetched if self._repo is not None else 0

    async def aclose(self) -> None:
        if self._repo is not None:
            with contextlib.suppress(Exception):
                self._repo.client.pool_manager.clear()
            self._repo = None
        await super().aclose()

    # -- errors ----------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        for secret in (self._password, urllib.parse.quote(self._password, safe="")):
            if secret:
                text = text.replace(secret, "***")
        return text

    def translate(self, exc: Exception, what: str, *, writing: bool = False) -> errors.BackendError:
        if isinstance(exc, dulwich.client.HTTPUnauthorized):
            return errors.AuthFailed(f"{what}: the server rejected the credentials (401)")
        if isinstance(exc, dulwich.errors.NotGitRepository):
            return errors.LocationNotFound(
                f"{what}: no such repository (404), or it is hidden from these credentials",
                reason=reasons.REPOSITORY_NOT_FOUND,
            )
        if isinstance(exc, gitremote.Rejected):
            text = self.scrub(exc.text)
            if "large file" in text.lower() or "GH001" in text:
                return errors.BackendError(
                    f"{what}: refused: {text}", reason=reasons.FILE_TOO_LARGE
                )
            if "pack exceeds maximum allowed size" in text:  # GitHub's 2 GiB a push
                return errors.BackendError(
                    f"{what}: refused: {text}; lower batch.maxBytes (now {self.conf.max_bytes})",
                    reason=reasons.PUSH_TOO_LARGE,
                )
            return errors.PermissionDenied(f"{what}: the server refused the push: {text}")
        if isinstance(exc, gitremote.Moved):
            return errors.BranchMoved(
                f"{what}: the branch kept moving ({commitstore.COMMIT_ATTEMPTS} attempts); "
                "tried again later"
            )
        cause = exc.__cause__ or exc.__context__
        if isinstance(exc, dulwich.errors.GitProtocolError):
            text = self.scrub(str(exc))
            status = re.search(r"unexpected http resp (\d+)", text)
            if status and status.group(1) == "403":
                return errors.PermissionDenied(f"{what}: the server answered 403 (forbidden)")
            if status and status.group(1) in {"413"}:
                return errors.StorageFull(f"{what}: the server answered 413 (too large)")
            if status:
                return errors.BackendError(f"{what}: the server answered {status.group(1)}")
            if (
                isinstance(exc, dulwich.errors.HangupException)
                or isinstance(cause, urllib3.exceptions.HTTPError | OSError)
                or "Max retries" in text
                or "Connection" in text
            ):
                return errors.Unreachable(f"{what}: cannot reach {self.host}")
            return errors.BackendError(f"{what}: git protocol error")
        if isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError):
            return errors.Unreachable(f"{what}: cannot reach {self.host} ({type(exc).__name__})")
        return errors.BackendError(f"{what}: {type(exc).__name__}")

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.conf.url).netloc

    async def git(self, what: str, call: Callable[[], Any], *, writing: bool = False) -> Any:
        with self.translating(what, writing=writing):
            return await asyncio.to_thread(call)

    # -- reading ---------------------------------------------------------------------------------

    async def refresh(self) -> Repo:
        repo = self.repo()
        await self.git(f"fetch {self.location}", lambda: repo.refresh(self.conf.branch))
        return repo

    async def snapshot(
        self, *, refresh: bool = True
    ) -> tuple[dict[str, Entry], list[tuple[str, bytes]]]:
        """The pins' files on the branch, and their sidecars read. ``refresh=False``: as of the
        head last seen (this pass's listing, or our own last push), without asking the server."""
        async with self._lock:
            repo = self.repo()
            if refresh or repo.head is None:
                await self.refresh()
            pins, others = repo.entries(self.conf.base_path)
            wanted = [
                e.sidecar for e in pins.values() if e.sidecar and e.sidecar not in self._sidecars
            ]
            if wanted:
                found = await self.git(
                    f"read sidecars in {self.location}", lambda: repo.blobs(wanted, keep=True)
                )
                for oid, data in found.items():
                    self._sidecars[oid] = self._parse(data)
        return pins, others

    @staticmethod
    def _parse(data: bytes) -> dict[str, Any]:
        try:
            sidecar = json.loads(data)
        except ValueError:
            return {"invalid": True}
        return sidecar if isinstance(sidecar, dict) else {"invalid": True}

    def _described(self, entry: Entry) -> dict[str, Any] | None:
        """The sidecar of a pin, if its CAR files are exactly the ones it names."""
        if entry.sidecar is None:
            return None
        sidecar = self._sidecars.get(entry.sidecar) or {"invalid": True}
        parts = sidecar.get("parts")
        if sidecar.get("invalid") or not isinstance(parts, list):
            return None
        named = {str(p.get("name")): str(p.get("oid", "")).encode() for p in parts}
        return sidecar if named == entry.car else None

    async def list_pins(self) -> AsyncIterator[base.PinInfo]:
        pins, _ = await self.snapshot()
        for cid in sorted(pins):
            entry = pins[cid]
            if entry.sidecar is None or not entry.car:
                continue
            sidecar = self._described(entry)
            size = sidecar.get("size") if sidecar else None
            yield base.PinInfo(
                cid=cid,
                size=size if isinstance(size, int) else None,
                sha256=sidecar.get("sha256") if sidecar else None,
            )

    async def usage(self) -> base.Usage:
        pins, others = await self.snapshot()
        total = count = 0
        unknown: list[bytes] = []
        for entry in pins.values():
            sidecar = self._described(entry)
            if entry.sidecar is not None:
                total += len(await self._blob(entry.sidecar))
                count += 1
            if sidecar is not None:
                total += sum(int(p["size"]) for p in sidecar["parts"])
                count += len(entry.car)
            else:
                unknown += entry.car.values()
        unknown += [oid for path, oid in others if not path.endswith("/")]
        for oid in unknown:  # files the sidecars do not describe: measured (rare)
            total += await self._blob_size(oid)
            count += 1
        return base.Usage(bytes=total, objects=count)

    async def _blob(self, oid: bytes, *, keep: bool = True) -> bytes:
        repo = self.repo()
        found = await self.git(
            f"read {oid.decode()} in {self.location}", lambda: repo.blobs([oid], keep=keep)
        )
        if oid not in found:
            raise errors.BackendError(
                f"{self.location}: the server did not send blob {oid.decode()}"
            )
        data: bytes = found[oid]
        return data

    async def _blob_size(self, oid: bytes) -> int:
        return len(await self._blob(oid, keep=False))

    async def _entry(self, cid: str, *, refresh: bool = True) -> Entry:
        pins, _ = await self.snapshot(refresh=refresh)
        entry = pins.get(cid)
        if entry is None or entry.sidecar is None or not entry.car:
            raise errors.PinNotFound(f"{cid}: not in {self.location}")
        return entry

    async def verify_pin(
        self, cid: str, *, deep: bool = False, listed: base.PinInfo | None = None
    ) -> base.PinInfo:
        # With this pass's listing in hand, the head it was listed from will do: a full sync
        # verifying 20,000 pins asks the server nothing more (a deep verify reads the bytes).
        entry = await self._entry(cid, refresh=listed is None)
        assert entry.sidecar is not None
        sidecar = self._sidecars.get(entry.sidecar) or {"invalid": True}
        if sidecar.get("invalid") or not isinstance(sidecar.get("parts"), list):
            raise errors.Damaged(f"{cid}: the sidecar is not valid")
        expected = {str(p.get("name")): p for p in sidecar["parts"]}
        if set(expected) != set(entry.car):
            raise errors.Damaged(f"{cid}: the CAR files are not the ones the sidecar names")
        size = 0
        for name, oid in sorted(entry.car.items()):
            part = expected[name]
            # Same blob id: the same bytes (git addresses content), no need to measure them.
            size += (
                int(part["size"]) if part.get("oid") == oid.decode() else await self._blob_size(oid)
            )
        if size != sidecar.get("size"):
            raise errors.Damaged(f"{cid}: CAR is {size} bytes, sidecar says {sidecar.get('size')}")
        if deep:
            await base.reread(cid, self._read(entry), sha256=sidecar.get("sha256"))
        return base.PinInfo(cid=cid, size=size, sha256=sidecar.get("sha256"))

    async def _read(self, entry: Entry) -> AsyncIterator[bytes]:
        for _, oid in sorted(entry.car.items()):
            data = await self._blob(oid, keep=False)
            for start in range(0, len(data), 1024 * 1024):
                yield data[start : start + 1024 * 1024]

    async def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        entry = await self._entry(cid)
        async for chunk in self._read(entry):
            yield chunk

    # -- health ----------------------------------------------------------------------------------

    async def health(self) -> None:
        """Reachable, the credentials accepted, the repository there (the upload-pack
        advertisement), and pushing allowed: the receive-pack advertisement, which hosts
        answer with 401/403 when the credentials may not write. Nothing is written."""
        repo = self.repo()
        await self.git(f"read {self.location}", repo.refs)

        def may_push() -> None:
            repo.client.send_pack("", lambda refs: refs, lambda *a, **k: (0, iter(())))

        await self.git(f"push access to {self.location}", may_push, writing=True)

    # -- writing ---------------------------------------------------------------------------------

    @property
    def max_commit_bytes(self) -> int:
        return self.conf.max_bytes

    async def stage(self, meta: base.PinMeta, source: base.Source) -> Staged:
        """Read a pin's stream into part files (one part in memory at a time)."""
        hashed = base.Hashing(aiter(source))
        parts: list[Part] = []
        spooled: list[str] = []
        pending: list[bytes] = []
        pending_size = 0
        directory = self.spool_dir()

        def write(data: bytes) -> Part:
            # Spooled as the pack entry it will be pushed as (header + zlib stream), so the push
            # only copies it. Stored, not compressed: CARs are mostly compressed media, and
            # level 1 cost 18.5 CPU-s per GiB more (16.9 vs 27.0 MiB/s into the test server).
            oid = Blob.from_string(data).id.decode()
            fd, path = tempfile.mkstemp(dir=directory)
            spooled.append(path)
            with os.fdopen(fd, "wb") as out:
                out.write(
                    bytes(pack_object_header(gitremote.BLOB, None, len(data), gitremote.FORMAT))
                )
                out.write(zlib.compress(data, SPOOL_COMPRESSION))
            return Part(name="", size=len(data), oid=oid, spool=path)

        with commitstore.discarded_on_failure(spooled):
            async for chunk in hashed:
                pending.append(chunk)
                pending_size += len(chunk)
                while pending_size >= self.part_size:
                    data = b"".join(pending)
                    head, rest = data[: self.part_size], data[self.part_size :]
                    parts.append(await asyncio.to_thread(write, head))
                    pending, pending_size = ([rest] if rest else []), len(rest)
            if pending or not parts:
                parts.append(await asyncio.to_thread(write, b"".join(pending)))
        total, sha256 = hashed.size, hashed.sha256
        if len(parts) == 1:
            parts[0].name = layout.car(meta.cid)
        else:
            for number, part in enumerate(parts):
                part.name = layout.part(meta.cid, number)
        sidecar = {
            "cid": meta.cid,
            "size": total,
            "sha256": sha256,
            "pinsets": list(meta.pinsets),
            "createdAt": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "parts": [{"name": p.name, "size": p.size, "oid": p.oid} for p in parts],
        }
        blob = Blob.from_string(json.dumps(sidecar).encode())
        return Staged(meta=meta, parts=parts, size=total, sha256=sha256, sidecar=blob)

    async def commit_staged(self, staged: list[tuple[int, Staged]], results: base.Results) -> None:
        try:
            await self._commit([pin for _, pin in staged])
        except Exception as exc:
            for index, _ in staged:
                results[index] = exc
        else:
            for index, pin in staged:
                results[index] = base.PinInfo(
                    cid=pin.meta.cid, size=pin.size, sha256=pin.sha256, verified=True
                )

    async def _commit(self, pins: list[Staged]) -> None:
        """One commit of the pins; a pin over ``batch.maxBytes`` (alone in its batch) has its
        parts pushed ahead, in commits of at most maxBytes *without* its sidecar, so it stays
        absent until the last commit adds the remaining parts and the sidecar. A failure midway
        leaves sidecar-less parts, which a retry writes again under the same names and ids."""
        runs: list[list[Part]] = [[]]
        size = 0
        for part in (part for pin in pins for part in pin.parts):
            if runs[-1] and size + part.size > self.conf.max_bytes:
                runs.append([])
                size = 0
            runs[-1].append(part)
            size += part.size
        subject = (
            f"pinsync: add {pins[0].meta.cid}"
            if len(pins) == 1
            else f"pinsync: add {len(pins)} pins"
        )
        for number, run in enumerate(runs[:-1], 1):
            await self._push(f"{subject}: parts, push {number} of {len(runs) - 1}", pins, run)
        for pin in pins:  # known already: never fetched back (harmless if the push fails)
            self._sidecars[pin.sidecar.id] = self._parse(pin.sidecar.as_raw_string())
            self.repo().store.add_object(pin.sidecar)
        await self._push(subject, pins, runs[-1], final=True)

    async def _push(
        self, message: str, pins: list[Staged], sent: list[Part], *, final: bool = False
    ) -> None:
        """A commit of the ``sent`` parts (the pack's blobs) and, ``final``, of every part and
        sidecar of the pins: its tree names the parts pushed ahead too (the server has them)."""

        def blobs() -> Iterator[UnpackedObject]:
            for part in sent:
                entry = UnpackedObject(gitremote.BLOB, sha=binascii.unhexlify(part.oid))
                entry.comp_chunks = _read_chunks(part.spool)  # type: ignore[assignment]
                yield entry
            for pin in pins if final else ():
                yield full_unpacked_object(pin.sidecar)

        def files(existing: Mapping[str, Entry]) -> dict[str, dict[str, bytes | None]]:
            changes: dict[str, dict[str, bytes | None]] = {}
            for pin in pins:
                cid = pin.meta.cid
                names = changes.setdefault(layout.shard(cid), {})
                old = existing.get(cid)
                for name in old.car if old and final else ():  # an earlier layout of the pin
                    names[name] = None
                for part in [p for p in pin.parts if final or p in sent]:
                    names[part.name] = part.oid.encode()
                if final:
                    names[layout.sidecar(cid)] = pin.sidecar.id
            return changes

        await self._write(message, files, blobs, len(sent) + (len(pins) if final else 0))

    async def _write(
        self,
        message: str,
        files: Callable[[Mapping[str, Entry]], Mapping[str, Mapping[str, bytes | None]]],
        blobs: Callable[[], Iterator[UnpackedObject]],
        count: int,
    ) -> None:
        """Build a commit on the branch's head and push it; rebuilt on a moved branch."""

        async def attempt() -> None:
            repo = await self.refresh()
            pins, _ = repo.entries(self.conf.base_path)
            push = functools.partial(
                repo.commit,
                branch=self.conf.branch,
                base_path=self.conf.base_path,
                files=files(pins),
                message=message,
                author=self.conf.author,
                blobs=blobs,
                blob_count=count,
            )
            await self.git(f"push to {self.location}", push, writing=True)

        await self.rebuilt_while_moving(attempt)

    async def remove_pin(self, cid: str) -> None:
        pins, _ = await self.snapshot()
        if cid not in pins:
            return

        def files(existing: Mapping[str, Entry]) -> dict[str, dict[str, bytes | None]]:
            entry = existing.get(cid)
            if entry is None:
                return {}
            names: dict[str, bytes | None] = dict.fromkeys(entry.car, None)
            if entry.sidecar is not None:
                names[layout.sidecar(cid)] = None
            return {layout.shard(cid): names}

        await self._write(f"pinsync: remove {cid}", files, lambda: iter(()), 0)
