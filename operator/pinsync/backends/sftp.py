"""A directory on an SSH server, reached over SFTP with asyncssh (type ``sftp``, alias ``sshfs``).

Objects are plain files directly under the base path. SFTP has no atomic upload, so an object
is written to ``<basePath>/.tmp/<name>.<random>`` and then renamed into place (OpenSSH's
``posix-rename``, which replaces the target atomically; elsewhere remove-then-rename). Readers
therefore never see a partial object under its final name, and a temporary file an interrupted
upload leaves behind lives where listings do not look (only the base path's top level is
listed); ``health`` sweeps the old ones away.

Host keys are verified, never silently accepted: the policy is :mod:`.hostkeys`.

The base path is the user's to create: a missing one is reported (``PathNotFound``) rather than
made, since the operator should not invent directories on somebody else's host. Only the
``.tmp`` directory under it is created as needed.

One SSH connection per backend instance, shared by concurrent operations (SFTP multiplexes
requests), opened on first use and again after it was lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import posixpath
import secrets
import stat
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import asyncssh

from pinsync import reasons
from pinsync.backends import base, errors, hostkeys, layout, objectstore

CONNECT_TIMEOUT = 15.0
LOGIN_TIMEOUT = 30.0
KEEPALIVE_INTERVAL = 15.0
"""A server that stops answering is given up on after ``KEEPALIVE_COUNT`` missed keepalives,
so an operation never hangs on a dead connection forever."""
KEEPALIVE_COUNT = 4
STALE_TEMP_SECONDS = 24 * 3600
"""Temporary files older than this are leftovers of interrupted uploads; ``health`` removes
them. (Generous, so that a slow upload by another operator replica is never swept away.)"""


# -- pipelined I/O --------------------------------------------------------------------------------

IN_FLIGHT_BYTES = 4 * 1024 * 1024
"""About how many bytes of requests are in flight per transfer (and held in memory for it)."""


def io_limits(server_max: int) -> tuple[int, int]:
    """(bytes per request, requests in flight) for the server's per-request limit.

    We pipeline requests ourselves (files are opened with ``block_size=0``, one request per
    call) rather than through asyncssh's parallel I/O, which leaves sibling requests with
    unretrieved exceptions ("Task exception was never retrieved") when the connection drops.
    """
    piece = max(1, min(server_max or 16 * 1024, 256 * 1024))
    return piece, max(16, min(IN_FLIGHT_BYTES // piece, 128))


async def settle(pending: set[asyncio.Future[int]], when: str) -> None:
    """Wait for some (or all) requests; raise the first error, having retrieved every one."""
    done, rest = await asyncio.wait(pending, return_when=when)
    pending.clear()
    pending.update(rest)
    failures = [task.exception() for task in done]
    for failure in failures:
        if failure is not None:
            raise failure


async def drain(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel requests still in flight and collect their outcomes, whatever they are."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def read_range(file: asyncssh.SFTPClientFile, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset``, fewer only at the end of the file (servers may answer a
    read with less than was asked, so ask again for the rest)."""
    parts: list[bytes] = []
    while length > 0:
        data = await file.read(length, offset)
        if not data:
            break
        assert isinstance(data, bytes)
        parts.append(data)
        offset += len(data)
        length -= len(data)
    return b"".join(parts)


# -- errors ---------------------------------------------------------------------------------------

FULL_WORDS = ("no space", "quota", "disk full", "file too large")


def translate(exc: BaseException, what: str, *, writing: bool = False) -> errors.BackendError:
    """Map asyncssh's exceptions onto the backend error vocabulary.

    OpenSSH's sftp-server speaks SFTP version 3, which has no "no space" status: ENOSPC and
    EDQUOT arrive as a bare ``FX_FAILURE``. A failure while writing is therefore reported as
    StorageFull (retryable: space may be freed), elsewhere as a generic error.
    Messages carry the server's status text and the path, never credentials.
    """
    if isinstance(exc, errors.BackendError):
        return exc
    if isinstance(exc, asyncssh.SFTPError):
        reason = str(exc.reason or "").strip()
        text = f"{what}: {reason or type(exc).__name__}"
        if isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
            return errors.LocationNotFound(text, reason=reasons.PATH_NOT_FOUND)
        if isinstance(exc, asyncssh.SFTPPermissionDenied | asyncssh.SFTPWriteProtect):
            return errors.PermissionDenied(text)
        if isinstance(exc, asyncssh.SFTPNoSpaceOnFilesystem | asyncssh.SFTPQuotaExceeded):
            return errors.StorageFull(text)
        if any(word in reason.lower() for word in FULL_WORDS) or (
            writing and isinstance(exc, asyncssh.SFTPFailure)
        ):
            return errors.StorageFull(f"{text} (no space left or quota exceeded?)")
        if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
            return errors.Unreachable(text)
        return errors.BackendError(text)
    if isinstance(exc, asyncssh.PermissionDenied):
        return errors.AuthFailed(f"{what}: the server rejected the credentials")
    if isinstance(exc, asyncssh.ChannelOpenError):
        return errors.InvalidConfig(
            f"{what}: the server refused an SFTP session ({exc.reason})",
            reason=reasons.SFTP_UNAVAILABLE,
        )
    if isinstance(exc, asyncssh.DisconnectError):
        return errors.Unreachable(f"{what}: {type(exc).__name__}: {exc.reason}")
    if isinstance(exc, OSError | TimeoutError | asyncio.TimeoutError | EOFError):
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return errors.Unreachable(f"{what}: {detail}")
    return errors.BackendError(f"{what}: {type(exc).__name__}")


def clean_base_path(value: str) -> str:
    """``basePath`` as an SFTP path: relative ones (also ``~/...``) resolve against the login
    directory, as the SFTP server does for any relative path."""
    value = value.strip()
    if value == "~" or value.startswith("~/"):
        value = value[2:]
    return posixpath.normpath(value) if value else "."


@dataclasses.dataclass(frozen=True, kw_only=True)
class SftpConfig(base.Config):
    host: str
    port: int
    username: str
    base_path: str
    """As an SFTP path (see :func:`clean_base_path`)."""
    known_hosts: hostkeys.KnownHosts
    fingerprint: str
    trust_on_first_use: bool


class SftpBackend(objectstore.ObjectStoreBackend):
    credential_keys: ClassVar[base.CredentialKeys] = base.CredentialKeys(
        alternatives=(frozenset({"password"}), frozenset({"privateKey"}))
    )
    conf: SftpConfig

    @classmethod
    def validate(cls, spec: Mapping[str, Any], credentials: base.Credentials) -> SftpConfig:
        fields = base.Fields("sftp", spec)
        return SftpConfig(
            host=fields.text("host", empty=False),
            port=fields.integer("port", 22, low=0, high=65535) or 22,
            username=fields.text("username"),
            base_path=clean_base_path(fields.text("basePath", "pinsync")),
            known_hosts=hostkeys.parse_known_hosts(fields.text("knownHosts", "")),
            fingerprint=fields.text("hostKeyFingerprint", ""),
            trust_on_first_use=fields.flag("trustOnFirstUse", False),
        )

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        conf = self.conf
        self.host, self.port, self.username = conf.host, conf.port, conf.username
        self.base_path = conf.base_path
        self.address = f"sftp://{self.username}@{self.host}:{self.port}"
        self.host_key_fingerprint: str | None = None
        """SHA256 fingerprint of the host key the server presented on the last connection."""
        self._policy = hostkeys.HostKeyPolicy(
            known=conf.known_hosts,
            fingerprint=conf.fingerprint,
            trust_on_first_use=conf.trust_on_first_use,
            address=(self.host, self.port),
        )
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._base_ok = False
        self._tmp_ok = False
        self._lock = asyncio.Lock()

    @property
    def location(self) -> str:
        return f"{self.address}/{self.base_path}"

    def translate(self, exc: Exception, what: str, *, writing: bool = False) -> errors.BackendError:
        return translate(exc, what, writing=writing)

    def path(self, key: str) -> str:
        return posixpath.join(self.base_path, key)

    def temp_path(self, key: str) -> str:
        return posixpath.join(self.base_path, layout.temporary(key, secrets.token_hex(8)))

    # -- the connection -----------------------------------------------------------------------

    def client_keys(self) -> Sequence[asyncssh.SSHKey] | None:
        """The Secret's private key, or None: asyncssh's default would read ~/.ssh instead."""
        pem = self.credentials.get("privateKey")
        if pem is None:
            return None
        try:
            return [asyncssh.import_private_key(pem, self.credentials.get("passphrase"))]
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
            # asyncssh's messages name the problem, never the key or the passphrase; still,
            # only the one that needs telling apart is passed on.
            if "bcrypt" in str(exc):
                message = (
                    "the Secret's privateKey is an encrypted OpenSSH-format key, which needs "
                    "the bcrypt package this operator build lacks: use an unencrypted key or "
                    "PKCS#8 encryption (ssh-keygen -p -m PKCS8)"
                )
            else:
                message = (
                    "the Secret's privateKey cannot be read: not an OpenSSH/PEM private key, "
                    "or its passphrase is missing or wrong"
                )
            raise errors.InvalidConfig(message, reason=reasons.PRIVATE_KEY_INVALID) from None

    async def _connect(self) -> asyncssh.SSHClientConnection:
        policy = self._policy
        check = hostkeys.HostKeyCheck(policy)
        try:
            conn = await asyncssh.connect(
                self.host,
                self.port,
                username=self.username,
                password=self.credentials.get("password"),
                client_keys=self.client_keys(),
                client_factory=lambda: check,
                known_hosts=policy.known_hosts(),
                # Hermetic: no ~/.ssh/config, agent, default keys, GSSAPI or X.509 bundles of
                # whatever account the operator runs as.
                config=None,
                agent_path=None,
                gss_auth=False,
                gss_kex=False,
                x509_trusted_certs=None,
                connect_timeout=CONNECT_TIMEOUT,
                login_timeout=LOGIN_TIMEOUT,
                keepalive_interval=KEEPALIVE_INTERVAL,
                keepalive_count_max=KEEPALIVE_COUNT,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise policy.refusal(self.address, check.presented) from None
        except asyncssh.KeyExchangeFailed as exc:
            if (policy.trusted or policy.authorities) and "host key" in str(exc.reason).lower():
                raise errors.InvalidConfig(
                    f"{self.address}: the server offers no host key of the types in knownHosts",
                    reason=reasons.HOST_KEY_MISMATCH,
                ) from None
            raise errors.InvalidConfig(
                f"{self.address}: key exchange failed: {exc.reason}",
                reason=reasons.KEY_EXCHANGE_FAILED,
            ) from None
        except Exception as exc:
            raise translate(exc, self.address) from None

        key = conn.get_server_host_key()
        if key is not None:
            presented = hostkeys.sha256_fingerprint(key)
            if policy.fingerprint and not hostkeys.fingerprint_matches(key, policy.fingerprint):
                conn.close()  # trusted by knownHosts, but the fingerprint pins another key
                await conn.wait_closed()
                raise policy.refusal(self.address, key)
            policy.remember(presented)
            self.host_key_fingerprint = presented
        return conn

    def learned(self) -> Mapping[str, str]:
        """The host key accepted by trust-on-first-use, to be pinned from now on."""
        policy = self._policy
        if policy.pinned or not policy.trust_on_first_use:
            return {}
        return (
            {"hostKeyFingerprint": self.host_key_fingerprint} if self.host_key_fingerprint else {}
        )

    async def client(self) -> asyncssh.SFTPClient:
        """The SFTP session, connecting (again) if needed, once the base path is known to exist."""
        async with self._lock:
            if self._conn is not None and self._conn.is_closed():
                await self._drop()
            if self._conn is None or self._sftp is None:
                conn = await self._connect()
                try:
                    self._sftp = await conn.start_sftp_client()
                except Exception as exc:
                    conn.close()
                    raise translate(exc, f"{self.address}: SFTP session") from None
                self._conn = conn
                self._base_ok = self._tmp_ok = False
            sftp = self._sftp
            if not self._base_ok:
                await self._check_base(sftp)
                self._base_ok = True
            return sftp

    async def _check_base(self, sftp: asyncssh.SFTPClient) -> None:
        with self.translating(f"base path {self.location}"):
            attrs = await sftp.stat(self.base_path)
        if attrs.permissions is not None and not stat.S_ISDIR(attrs.permissions):
            raise errors.LocationNotFound(
                f"base path {self.location} is not a directory", reason=reasons.PATH_NOT_FOUND
            )

    async def _missing(self, sftp: asyncssh.SFTPClient) -> None:
        """After a "no such file": raise if the whole base path is gone, not just the object."""
        self._base_ok = False
        await self._check_base(sftp)
        self._base_ok = True

    async def _drop(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()

    # -- health -------------------------------------------------------------------------------

    async def _reach(self) -> None:
        await self.client()

    async def _tidy(self) -> None:
        """Remove temporary files that interrupted uploads left (best effort)."""
        sftp = await self.client()
        cutoff = time.time() - STALE_TEMP_SECONDS
        with contextlib.suppress(Exception):
            async for entry in sftp.scandir(self.path(layout.TMP_DIR)):
                mtime = entry.attrs.mtime
                if entry.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR and mtime and mtime < cutoff:
                    with contextlib.suppress(Exception):
                        await sftp.remove(self.path(f"{layout.TMP_DIR}/{entry.filename!s}"))

    # -- object primitives --------------------------------------------------------------------

    async def _ensure_tmp(self, sftp: asyncssh.SFTPClient) -> None:
        if self._tmp_ok:
            return
        tmp = self.path(layout.TMP_DIR)
        with self.translating(f"create {self.address}/{tmp}"):
            try:
                await sftp.mkdir(tmp)
            except asyncssh.SFTPError:
                # SFTP v3 reports "exists" as a bare failure: it is fine if a directory is there.
                try:
                    attrs = await sftp.stat(tmp)
                except Exception:
                    attrs = None
                if (
                    attrs is None
                    or attrs.permissions is None
                    or not stat.S_ISDIR(attrs.permissions)
                ):
                    raise
        self._tmp_ok = True

    async def _open_temp(
        self, sftp: asyncssh.SFTPClient, key: str
    ) -> tuple[str, asyncssh.SFTPClientFile]:
        await self._ensure_tmp(sftp)
        temp = self.temp_path(key)
        try:
            return temp, await sftp.open(temp, "wb", block_size=0)
        except asyncssh.SFTPNoSuchFile:
            # Someone removed .tmp (or the base path) while we were connected: once more.
            self._tmp_ok = False
            await self._missing(sftp)
            await self._ensure_tmp(sftp)
        return temp, await sftp.open(temp, "wb", block_size=0)

    async def _put_object(self, key: str, content: AsyncIterator[bytes]) -> None:
        """Stream to a temporary file chunk by chunk, then rename it over the final name.

        Write requests are pipelined (a bounded window, so memory stays bounded however large
        the CAR): one request per round trip would make uploads over a WAN crawl.
        """
        sftp = await self.client()
        final = self.path(key)
        temp, file = await self._open_temp(sftp, key)
        piece, window = io_limits(sftp.limits.max_write_len)
        pending: set[asyncio.Future[int]] = set()
        closed, offset = False, 0
        try:
            async for chunk in content:
                for start in range(0, len(chunk), piece):
                    if len(pending) >= window:
                        await settle(pending, asyncio.FIRST_COMPLETED)
                    data = chunk[start : start + piece]
                    pending.add(asyncio.ensure_future(file.write(data, offset)))
                    offset += len(data)
            await settle(pending, asyncio.ALL_COMPLETED)
            with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                await file.fsync()  # the data is on disk before its name is
            closed = True
            await file.close()
            await self._rename(sftp, temp, final)
        except BaseException:
            await drain(pending)
            if not closed:
                with contextlib.suppress(Exception):
                    await file.close()
            with contextlib.suppress(Exception):
                await sftp.remove(temp)
            raise

    async def _rename(self, sftp: asyncssh.SFTPClient, temp: str, final: str) -> None:
        # Not a write: a bare failure here is not a full disk.
        with self.translating(f"rename into {self.address}/{final}"):
            try:
                await sftp.posix_rename(temp, final)  # atomic replace (OpenSSH extension)
                return
            except asyncssh.SFTPOpUnsupported:
                pass
            # Plain SFTP rename refuses to overwrite: readers briefly see no object, never a
            # partial one (and a pin without its CAR is just "missing").
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await sftp.remove(final)
            await sftp.rename(temp, final)

    async def _get_object(self, key: str) -> AsyncIterator[bytes]:
        """Stream a file back, with a window of read requests in flight (ahead of the consumer)."""
        sftp = await self.client()
        path = self.path(key)
        try:
            file = await sftp.open(path, "rb", block_size=0)
            size = int((await file.stat()).size or 0)
        except asyncssh.SFTPNoSuchFile:
            await self._missing(sftp)
            raise errors.PinNotFound(f"{self.address}/{path}: no such object") from None
        piece, window = io_limits(sftp.limits.max_read_len)
        queue: collections.deque[asyncio.Future[bytes]] = collections.deque()
        offset = 0
        try:
            while True:
                while len(queue) < window and offset < size:
                    length = min(piece, size - offset)
                    queue.append(asyncio.ensure_future(read_range(file, offset, length)))
                    offset += length
                if not queue:
                    break
                chunk = await queue.popleft()
                if chunk:
                    yield chunk
            while True:  # past the size seen at open: read on to the real end (a grown file)
                chunk = await read_range(file, offset, piece)
                if not chunk:
                    break
                offset += len(chunk)
                yield chunk
        finally:
            await drain(queue)
            with contextlib.suppress(Exception):
                await file.close()

    async def usage(self) -> base.Usage:
        """The walk's totals, plus the free space of the base path's file system from OpenSSH's
        ``statvfs@openssh.com`` extension where the server has it."""
        used = await super().usage()
        sftp = await self.client()
        try:
            with self.translating(f"statvfs {self.location}"):
                vfs = await sftp.statvfs(self.base_path)
        except asyncssh.SFTPOpUnsupported:
            return used
        return dataclasses.replace(used, free=int(vfs.bavail) * int(vfs.frsize))

    async def _list_objects(self) -> AsyncIterator[tuple[str, int]]:
        """Regular files at the base path's top level; dot files (``.tmp``, probes) are ours."""
        sftp = await self.client()
        entries = [entry async for entry in sftp.scandir(self.base_path)]
        for entry in entries:
            name = str(entry.filename)
            if name.startswith(".") or entry.attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
                continue
            yield name, int(entry.attrs.size or 0)

    async def _stat_object(self, key: str) -> int | None:
        sftp = await self.client()
        try:
            attrs = await sftp.stat(self.path(key))
        except asyncssh.SFTPNoSuchFile:
            await self._missing(sftp)
            return None
        return int(attrs.size or 0)

    async def _delete_object(self, key: str) -> None:
        sftp = await self.client()
        try:
            await sftp.remove(self.path(key))
        except asyncssh.SFTPNoSuchFile:
            await self._missing(sftp)
