"""A directory on an SSH server, reached over SFTP with asyncssh (type ``sftp``, alias ``sshfs``).

Objects are plain files directly under the base path. SFTP has no atomic upload, so an object
is written to ``<basePath>/.tmp/<name>.<random>`` and then renamed into place (OpenSSH's
``posix-rename``, which replaces the target atomically; elsewhere remove-then-rename). Readers
therefore never see a partial object under its final name, and a temporary file an interrupted
upload leaves behind lives where listings do not look (only the base path's top level is
listed); ``health`` sweeps the old ones away.

Host keys are verified, never silently accepted: against ``knownHosts`` lines and/or a
``hostKeyFingerprint``; with neither, only if ``trustOnFirstUse`` says so (and then the first key
seen at the address is held to for the life of the process). Otherwise the connection is
refused with ``HostKeyUnknown`` and the fingerprint the server presented, so the user can check
it out of band and pin it.

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

from pinsync.backends import base, errors, objectstore

CONNECT_TIMEOUT = 15.0
LOGIN_TIMEOUT = 30.0
KEEPALIVE_INTERVAL = 15.0
"""A server that stops answering is given up on after ``KEEPALIVE_COUNT`` missed keepalives,
so an operation never hangs on a dead connection forever."""
KEEPALIVE_COUNT = 4
TMP_DIR = ".tmp"
STALE_TEMP_SECONDS = 24 * 3600
"""Temporary files older than this are leftovers of interrupted uploads; ``health`` removes
them. (Generous, so that a slow upload by another operator replica is never swept away.)"""
PROBE = ".pinsync-write-probe"


# -- host keys ------------------------------------------------------------------------------------


def sha256_fingerprint(key: asyncssh.SSHKey) -> str:
    return str(key.get_fingerprint("sha256"))


def normalize_fingerprint(value: str) -> str:
    """``SHA256:<base64>`` without padding, or ``MD5:<hex:pairs>``; a bare value is SHA256."""
    value = value.strip()
    kind, sep, rest = value.partition(":")
    if sep and kind.upper() == "MD5":
        return "MD5:" + rest.lower()
    if sep and kind.upper() == "SHA256":
        return "SHA256:" + rest.rstrip("=")
    return "SHA256:" + value.rstrip("=")


def fingerprint_matches(key: asyncssh.SSHKey, expected: str) -> bool:
    if expected.startswith("MD5:"):
        return str(key.get_fingerprint("md5")).lower() == expected.lower()
    return sha256_fingerprint(key) == expected


def parse_known_hosts(
    text: str,
) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """(trusted keys, CA keys, revoked keys) of known_hosts lines, whatever their host patterns.

    The lines are configured for this one backend's server, so their host patterns are not
    matched: ``ssh-keyscan`` output pasted under a different spelling of the host (a Service
    name, an IP, ``[host]:port``) still pins the key. Bare public key lines are accepted too.
    """
    trusted: list[asyncssh.SSHKey] = []
    authorities: list[asyncssh.SSHKey] = []
    revoked: list[asyncssh.SSHKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else ""
        key = None
        for start in (1, 0):  # "<hosts> <type> <base64>", else a bare "<type> <base64>"
            with contextlib.suppress(asyncssh.KeyImportError, ValueError, IndexError):
                key = asyncssh.import_public_key(f"{fields[start]} {fields[start + 1]}")
                break
        if key is None or marker not in {"", "@cert-authority", "@revoked"}:
            raise errors.InvalidConfig(
                f"knownHosts line {number} is not an OpenSSH known_hosts entry",
                reason="KnownHostsInvalid",
            )
        {"": trusted, "@cert-authority": authorities, "@revoked": revoked}[marker].append(key)
    return trusted, authorities, revoked


FIRST_SEEN: dict[tuple[str, int], str] = {}
"""Host key fingerprints trusted on first use, by (host, port), for the life of the process.

A backend instance lives for one reconcile pass; remembering only per instance would accept any
key on every pass. Kept in memory (not persisted): after a restart the first connection is
trusted again. Pinning (``hostKeyFingerprint``/``knownHosts``) is what survives restarts.
"""


class HostKeyPolicy:
    """Decides whether a presented host key is acceptable, from the spec's settings."""

    def __init__(self, config: Mapping[str, Any], address: tuple[str, int]) -> None:
        self.address = address
        self.trusted, self.authorities, self.revoked = parse_known_hosts(
            str(config.get("knownHosts") or "")
        )
        fingerprint = str(config.get("hostKeyFingerprint") or "").strip()
        self.fingerprint = normalize_fingerprint(fingerprint) if fingerprint else ""
        self.trust_on_first_use = bool(config.get("trustOnFirstUse", False))

    @property
    def pinned(self) -> bool:
        return bool(self.trusted or self.authorities or self.fingerprint)

    @property
    def first_seen(self) -> str:
        """The fingerprint trusted on first use, if that applies: later connections must
        present the same key."""
        if self.pinned or not self.trust_on_first_use:
            return ""
        return FIRST_SEEN.get(self.address, "")

    def remember(self, fingerprint: str) -> None:
        if not self.pinned and self.trust_on_first_use:
            FIRST_SEEN.setdefault(self.address, fingerprint)

    def known_hosts(self) -> tuple[list[asyncssh.SSHKey], ...]:
        """asyncssh's ``known_hosts`` argument: never empty, as that means ~/.ssh/known_hosts.

        asyncssh accepts keys in this list itself (and prefers their algorithms in the key
        exchange); any other key goes to :meth:`accepts`.
        """
        return (self.trusted, self.authorities, self.revoked)

    def accepts(self, key: asyncssh.SSHKey) -> bool:
        """For a plain host key that is not among the ``knownHosts`` keys."""
        if self.trusted or self.authorities:
            return False
        if self.fingerprint:
            return fingerprint_matches(key, self.fingerprint)
        if not self.trust_on_first_use:
            return False
        return sha256_fingerprint(key) == (self.first_seen or sha256_fingerprint(key))

    def pinned_to(self) -> str:
        return (
            " and ".join(
                name
                for name, on in (
                    ("knownHosts", self.trusted or self.authorities),
                    ("hostKeyFingerprint", self.fingerprint),
                )
                if on
            )
            or f"the key trusted on first use ({self.first_seen}); if the server's key was "
            "changed on purpose, pin the new one with hostKeyFingerprint"
        )


class HostKeyCheck(asyncssh.SSHClient):
    """Records the host key the server presented, so a refusal can name its fingerprint."""

    def __init__(self, policy: HostKeyPolicy) -> None:
        self.policy = policy
        self.presented: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.presented = key
        return self.policy.accepts(key)


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
            return errors.LocationNotFound(text, reason="PathNotFound")
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
            f"{what}: the server refused an SFTP session ({exc.reason})", reason="SFTPUnavailable"
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


class SftpBackend(objectstore.ObjectStoreBackend):
    credential_keys: ClassVar[base.CredentialKeys] = base.CredentialKeys(
        alternatives=(frozenset({"password"}), frozenset({"privateKey"}))
    )

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        self.host = str(config["host"])
        self.port = int(config.get("port") or 22)
        self.username = str(config["username"])
        self.base_path = clean_base_path(str(config.get("basePath", "pinsync")))
        self.where = f"sftp://{self.username}@{self.host}:{self.port}"
        self.host_key_fingerprint: str | None = None
        """SHA256 fingerprint of the host key the server presented on the last connection."""
        self._policy: HostKeyPolicy | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._base_ok = False
        self._tmp_ok = False
        self._lock = asyncio.Lock()

    def path(self, key: str) -> str:
        return posixpath.join(self.base_path, key)

    def temp_path(self, key: str) -> str:
        return posixpath.join(self.base_path, TMP_DIR, f"{key}.{secrets.token_hex(8)}")

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
            raise errors.InvalidConfig(message, reason="PrivateKeyInvalid") from None

    async def _connect(self) -> asyncssh.SSHClientConnection:
        if self._policy is None:
            self._policy = HostKeyPolicy(self.config, (self.host, self.port))
        policy = self._policy
        check = HostKeyCheck(policy)
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
            raise self._host_key_error(check.presented) from None
        except asyncssh.KeyExchangeFailed as exc:
            if (policy.trusted or policy.authorities) and "host key" in str(exc.reason).lower():
                raise errors.InvalidConfig(
                    f"{self.where}: the server offers no host key of the types in knownHosts",
                    reason="HostKeyMismatch",
                ) from None
            raise errors.InvalidConfig(
                f"{self.where}: key exchange failed: {exc.reason}", reason="KeyExchangeFailed"
            ) from None
        except Exception as exc:
            raise translate(exc, self.where) from None

        key = conn.get_server_host_key()
        if key is not None:
            presented = sha256_fingerprint(key)
            if policy.fingerprint and not fingerprint_matches(key, policy.fingerprint):
                conn.close()  # trusted by knownHosts, but the fingerprint pins another key
                await conn.wait_closed()
                raise self._host_key_error(key)
            policy.remember(presented)
            self.host_key_fingerprint = presented
        return conn

    def learned(self) -> Mapping[str, str]:
        """The host key accepted by trust-on-first-use, to be pinned from now on."""
        policy = self._policy
        if policy is None or policy.pinned or not policy.trust_on_first_use:
            return {}
        return (
            {"hostKeyFingerprint": self.host_key_fingerprint} if self.host_key_fingerprint else {}
        )

    def _host_key_error(self, key: asyncssh.SSHKey | None) -> errors.InvalidConfig:
        policy = self._policy
        assert policy is not None
        shown = (
            f"{key.get_algorithm()} key {sha256_fingerprint(key)}"
            if key is not None
            else "a host key (certificate) that could not be verified"
        )
        if not policy.pinned and not policy.trust_on_first_use:
            return errors.InvalidConfig(
                f"{self.where}: the server's host key is unknown: it presented {shown}. Verify "
                "it out of band and set hostKeyFingerprint (or knownHosts) to it, or set "
                "trustOnFirstUse",
                reason="HostKeyUnknown",
            )
        return errors.InvalidConfig(
            f"{self.where}: the server presented {shown}, which does not match "
            f"{policy.pinned_to()}",
            reason="HostKeyMismatch",
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
                    raise translate(exc, f"{self.where}: SFTP session") from None
                self._conn = conn
                self._base_ok = self._tmp_ok = False
            sftp = self._sftp
            if not self._base_ok:
                await self._check_base(sftp)
                self._base_ok = True
            return sftp

    async def _check_base(self, sftp: asyncssh.SFTPClient) -> None:
        where = f"{self.where}/{self.base_path}"
        try:
            attrs = await sftp.stat(self.base_path)
        except Exception as exc:
            raise translate(exc, f"base path {where}") from None
        if attrs.permissions is not None and not stat.S_ISDIR(attrs.permissions):
            raise errors.LocationNotFound(
                f"base path {where} is not a directory", reason="PathNotFound"
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

    async def health(self) -> None:
        """Connect, check the base path exists and is writable (a probe file), tidy up."""
        sftp = await self.client()
        probe = self.path(f"{PROBE}.{secrets.token_hex(4)}")
        try:
            async with await sftp.open(probe, "wb") as file:
                await file.write(b"ok")
            await sftp.remove(probe)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await sftp.remove(probe)
            raise translate(
                exc, f"write probe in {self.where}/{self.base_path}", writing=True
            ) from None
        await self._sweep_temp(sftp)

    async def _sweep_temp(self, sftp: asyncssh.SFTPClient) -> None:
        """Remove temporary files that interrupted uploads left (best effort)."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        with contextlib.suppress(Exception):
            async for entry in sftp.scandir(self.path(TMP_DIR)):
                mtime = entry.attrs.mtime
                if entry.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR and mtime and mtime < cutoff:
                    with contextlib.suppress(Exception):
                        await sftp.remove(self.path(f"{TMP_DIR}/{entry.filename!s}"))

    # -- object primitives --------------------------------------------------------------------

    async def _ensure_tmp(self, sftp: asyncssh.SFTPClient) -> None:
        if self._tmp_ok:
            return
        tmp = self.path(TMP_DIR)
        try:
            await sftp.mkdir(tmp)
        except asyncssh.SFTPError as exc:
            # SFTP v3 reports "exists" as a bare failure: it is fine if a directory is there.
            try:
                attrs = await sftp.stat(tmp)
            except Exception:
                raise translate(exc, f"create {self.where}/{tmp}") from None
            if attrs.permissions is None or not stat.S_ISDIR(attrs.permissions):
                raise translate(exc, f"create {self.where}/{tmp}") from None
        except Exception as exc:
            raise translate(exc, f"create {self.where}/{tmp}") from None
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
        except Exception as exc:
            raise translate(exc, f"upload {self.where}/{temp}", writing=True) from None
        try:
            return temp, await sftp.open(temp, "wb", block_size=0)
        except Exception as exc:
            raise translate(exc, f"upload {self.where}/{temp}", writing=True) from None

    async def put_object(self, key: str, content: AsyncIterator[bytes]) -> None:
        """Stream to a temporary file chunk by chunk, then rename it over the final name.

        Write requests are pipelined (a bounded window, so memory stays bounded however large
        the CAR): one request per round trip would make uploads over a WAN crawl.
        """
        sftp = await self.client()
        final = self.path(key)
        temp, file = await self._open_temp(sftp, key)
        piece, window = io_limits(sftp.limits.max_write_len)
        pending: set[asyncio.Future[int]] = set()
        source, closed, offset = objectstore.Source(content), False, 0
        try:
            async for chunk in source:
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
        except BaseException as exc:
            await drain(pending)
            if not closed:
                with contextlib.suppress(Exception):
                    await file.close()
            with contextlib.suppress(Exception):
                await sftp.remove(temp)
            if isinstance(exc, Exception) and not source.failed:
                raise translate(exc, f"upload {self.where}/{final}", writing=True) from None
            raise  # the content stream's own error is the caller's to interpret, not ours

    async def _rename(self, sftp: asyncssh.SFTPClient, temp: str, final: str) -> None:
        try:
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
        except Exception as exc:  # not a write: a bare failure here is not a full disk
            raise translate(exc, f"rename into {self.where}/{final}") from None

    async def get_object(self, key: str) -> AsyncIterator[bytes]:
        """Stream a file back, with a window of read requests in flight (ahead of the consumer)."""
        sftp = await self.client()
        path = self.path(key)
        try:
            file = await sftp.open(path, "rb", block_size=0)
            size = int((await file.stat()).size or 0)
        except asyncssh.SFTPNoSuchFile:
            await self._missing(sftp)
            raise errors.PinNotFound(f"{self.where}/{path}: no such object") from None
        except Exception as exc:
            raise translate(exc, f"read {self.where}/{path}") from None
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
                try:
                    chunk = await queue.popleft()
                except Exception as exc:
                    raise translate(exc, f"read {self.where}/{path}") from None
                if chunk:
                    yield chunk
            while True:  # past the size seen at open: read on to the real end (a grown file)
                try:
                    chunk = await read_range(file, offset, piece)
                except Exception as exc:
                    raise translate(exc, f"read {self.where}/{path}") from None
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
            vfs = await sftp.statvfs(self.base_path)
        except asyncssh.SFTPOpUnsupported:
            return used
        except Exception as exc:
            raise translate(exc, f"statvfs {self.where}/{self.base_path}") from None
        return dataclasses.replace(used, free=int(vfs.bavail) * int(vfs.frsize))

    async def list_objects(self) -> AsyncIterator[tuple[str, int]]:
        """Regular files at the base path's top level; dot files (``.tmp``, probes) are ours."""
        sftp = await self.client()
        try:
            entries = [entry async for entry in sftp.scandir(self.base_path)]
        except Exception as exc:
            raise translate(exc, f"list {self.where}/{self.base_path}") from None
        for entry in entries:
            name = str(entry.filename)
            if name.startswith(".") or entry.attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
                continue
            yield name, int(entry.attrs.size or 0)

    async def stat_object(self, key: str) -> int | None:
        sftp = await self.client()
        path = self.path(key)
        try:
            attrs = await sftp.stat(path)
        except asyncssh.SFTPNoSuchFile:
            await self._missing(sftp)
            return None
        except Exception as exc:
            raise translate(exc, f"stat {self.where}/{path}") from None
        return int(attrs.size or 0)

    async def delete_object(self, key: str) -> None:
        sftp = await self.client()
        path = self.path(key)
        try:
            await sftp.remove(path)
        except asyncssh.SFTPNoSuchFile:
            await self._missing(sftp)
        except Exception as exc:
            raise translate(exc, f"delete {self.where}/{path}") from None
