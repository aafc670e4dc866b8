"""FTP and explicit FTPS (AUTH TLS) servers, through aioftp.

Configured by ``spec.ftp`` (host, port, basePath, passive, tls) and a credentials Secret with
keys ``username`` and ``password``. The Secret is optional: without one the backend logs in as
``anonymous`` (the convention of RFC 1635), so anonymous servers need no Secret at all.

Design choices, and why:

* **One control connection per operation**, opened, logged in, moved into the base path and
  closed again, with at most :data:`MAX_CONNECTIONS` open at once per backend. An FTP control
  connection is strictly sequential (one command, one reply, one data transfer at a time), so a
  shared connection would have to be locked around every transfer anyway; a fresh connection per
  operation is as fast for CAR-sized transfers, is safe under the sync engine's concurrency
  (several ``put_pin`` at once), and can never be left in a half-known state by an aborted
  transfer. The semaphore keeps us under the per-user connection limits many servers impose.
* **Atomic uploads by rename**: an object is written to ``<basePath>/.tmp/<name>.<random>`` and
  renamed into place (RNFR/RNTO) only once the server has confirmed the whole transfer, so no
  reader ever sees a partial object under its final name. A server that refuses to rename over
  an existing file gets the target deleted first (a short window with no object, never a partial
  one). A failed upload deletes its temporary file; one a crash left behind stays in ``.tmp``,
  which listings ignore.
* **Listing with MLSD** (machine-readable sizes and types) when the server advertises MLST in
  FEAT, else with LIST, parsing the ``ls -l`` (or DOS) format for sizes. Only regular files at
  the top level of the base path are objects; dot-files (``.tmp``, the health probe) never are.
* **Passive mode only**: aioftp has no active mode (PORT/EPRT), and active mode rarely works
  from a pod anyway, so ``passive: false`` is reported as an invalid configuration.
* **Explicit FTPS**: ``tls.enabled`` upgrades the control connection with AUTH TLS before
  logging in (so the password never crosses the wire in clear) and protects data connections
  with PROT P. The server certificate is checked against the PEM bundle in the Secret key
  ``tls.caBundleKey`` (else the system trust store) unless ``tls.insecureSkipVerify``.

FTP's reply codes are coarse: 550 means "no such file" and "permission denied" alike. Where the
difference matters, the reply text decides (see :func:`denies_permission`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, ClassVar

import aioftp

from pinsync import reasons
from pinsync.backends import base, errors, layout, objectstore

MAX_CONNECTIONS = 4
"""Control connections one backend holds open at once (each transfer adds a data connection)."""
CONNECT_TIMEOUT = 10.0
SOCKET_TIMEOUT = 60.0
"""A read or write on a control or data connection that makes no progress for this long fails."""
QUIT_TIMEOUT = 5.0
CLEANUP_TIMEOUT = 10.0
READ_CHUNK = 1024 * 1024
ANONYMOUS_USER = "anonymous"
ANONYMOUS_PASSWORD = "pinsync@"
"""By convention an anonymous login's password is an e-mail-like identification, not a secret."""

PERMISSION_WORDS = ("permission", "privilege", "denied", "not allowed", "forbidden", "read-only")
"""Words by which servers' 550 replies say "not allowed" rather than "not found" (pyftpdlib:
"Not enough privileges", vsftpd/proFTPD/Pure-FTPd: "Permission denied")."""
FULL_CODES = {"452", "552"}
"""Insufficient storage space (452) and exceeded storage allocation (552)."""
PERMISSION_CODES = {"532", "553"}
"""Need an account for storing files (532), file name not allowed (553; Pure-FTPd's denial)."""
UNSUPPORTED_CODES = {"500", "501", "502", "504"}


def reply_code(exc: aioftp.StatusCodeError) -> str:
    return str(exc.received_codes[-1]) if exc.received_codes else ""


def reply_text(exc: aioftp.StatusCodeError) -> str:
    info = exc.info if isinstance(exc.info, list) else [exc.info]
    return " ".join(str(line).strip() for line in info if str(line).strip())[:200]


def denies_permission(exc: aioftp.StatusCodeError) -> bool:
    text = reply_text(exc).lower()
    return reply_code(exc) in PERMISSION_CODES or any(word in text for word in PERMISSION_WORDS)


def is_missing(exc: BaseException) -> bool:
    """A 550 that says the file is not there (not that we may not touch it)."""
    return (
        isinstance(exc, aioftp.StatusCodeError)
        and reply_code(exc) == "550"
        and not denies_permission(exc)
    )


def scrub(text: str, hidden: Iterable[str]) -> str:
    """Remove secret values from text a server sent us (some servers echo what they were sent)."""
    for value in hidden:
        if value:
            text = text.replace(value, "***")
    return text


def translate(exc: BaseException, what: str, hidden: Iterable[str] = ()) -> errors.BackendError:
    """Map aioftp's and the socket layer's exceptions onto the backend error vocabulary."""
    if isinstance(exc, errors.BackendError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or "certificate verify failed"
        return errors.InvalidConfig(
            f"{what}: the server's TLS certificate failed verification ({detail})",
            reason=reasons.TLS_VERIFY_FAILED,
        )
    if isinstance(exc, aioftp.StatusCodeError):
        code = reply_code(exc)
        text = scrub(f"{what}: server replied {code} {reply_text(exc)}".rstrip(), hidden)
        if code == "530":
            return errors.AuthFailed(f"{what}: the server rejected the credentials ({code})")
        if code in FULL_CODES:
            return errors.StorageFull(text)
        if code == "421":  # service not available, closing the connection (also: too many users)
            return errors.Unreachable(text)
        if code in PERMISSION_CODES or (code == "550" and denies_permission(exc)):
            return errors.PermissionDenied(text)
        return errors.BackendError(text)
    if isinstance(exc, OSError | EOFError):
        # Refused, reset, DNS, timeouts (TimeoutError is an OSError), a TLS handshake that failed
        # for other reasons than verification, a connection closed mid-reply.
        detail = scrub(str(exc) or type(exc).__name__, hidden)
        return errors.Unreachable(f"{what}: {type(exc).__name__}: {detail}"[:300])
    return errors.BackendError(f"{what}: {type(exc).__name__}")


def parse_unix_list_line(line: str) -> tuple[str, str, int] | None:
    """(name, type, size) from an ``ls -l`` style LIST line, or None if it is not one.

    Own parsing rather than aioftp's: only type, size and name matter here, and aioftp's parser
    also insists on understanding the date, which varies by server and locale.
    """
    fields = line.split(None, 8)
    if len(fields) < 9 or not fields[1].isdigit() or not fields[4].isdigit():
        return None
    kind = {"-": "file", "d": "dir", "l": "link"}.get(fields[0][:1], "unknown")
    name = fields[8]
    if kind == "link":
        name = name.split(" -> ", 1)[0]
    return name, kind, int(fields[4])


@dataclasses.dataclass(frozen=True, kw_only=True)
class FtpConfig(base.Config):
    host: str
    port: int
    base_path: str
    """Relative to the login directory unless absolute; "." is the login directory itself."""
    ssl_context: ssl.SSLContext | None
    """For explicit FTPS (``tls.enabled``), built once; None for plain FTP."""


def tls_context(tls: base.Fields, credentials: base.Credentials) -> ssl.SSLContext | None:
    """The TLS context ``spec.ftp.tls`` asks for, the CA bundle read from the Secret."""
    if not tls.flag("enabled", False):
        return None
    if tls.flag("insecureSkipVerify", False):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    key = tls.text("caBundleKey", "")
    if not key:
        return ssl.create_default_context()
    bundle = credentials.get(key)
    if bundle is None:
        raise tls.invalid(
            "caBundleKey",
            f"names Secret key {key!r}, which the credentials Secret does not have",
            reason=reasons.CA_BUNDLE_NOT_FOUND,
        )
    try:
        return ssl.create_default_context(cadata=bundle)
    except (ssl.SSLError, ValueError, TypeError):
        raise tls.invalid(
            "caBundleKey",
            f"names Secret key {key!r}, which holds no valid PEM CA bundle",
            reason=reasons.INVALID_CA_BUNDLE,
        ) from None


class FtpBackend(objectstore.ObjectStoreBackend):
    credential_keys: ClassVar[base.CredentialKeys] = base.CredentialKeys(
        alternatives=(frozenset({"username", "password"}),), optional_secret=True
    )
    conf: FtpConfig

    @classmethod
    def validate(cls, spec: Mapping[str, Any], credentials: base.Credentials) -> FtpConfig:
        fields = base.Fields("ftp", spec)
        if not fields.flag("passive", True):
            raise fields.invalid(
                "passive",
                "is false: active mode is not supported; the FTP client speaks passive mode only",
                reason=reasons.ACTIVE_MODE_UNSUPPORTED,
            )
        raw_path = fields.text("basePath", "pinsync")
        return FtpConfig(
            host=fields.text("host", empty=False),
            port=fields.integer("port", 21, low=0, high=65535) or 21,
            base_path=raw_path.rstrip("/") or ("/" if raw_path.startswith("/") else "."),
            ssl_context=tls_context(fields.section("tls"), credentials),
        )

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        self.host, self.port, self.base_path = self.conf.host, self.conf.port, self.conf.base_path
        self.username = credentials.get("username") or ANONYMOUS_USER
        self.password = credentials.get("password") or (
            ANONYMOUS_PASSWORD if self.username == ANONYMOUS_USER else ""
        )
        self._limit = asyncio.Semaphore(MAX_CONNECTIONS)
        self._mlsd: bool | None = None
        """Whether the server lists with MLSD; None until the first listing asks FEAT."""

    # -- connections ---------------------------------------------------------------------------

    @property
    def location(self) -> str:
        path = "" if self.base_path == "." else self.base_path.lstrip("/")
        return f"ftp://{self.host}:{self.port}/{path}"

    def hidden(self) -> list[str]:
        """Values that must never appear in an error message."""
        return [value for value in (self.password,) if value and value != ANONYMOUS_PASSWORD]

    def translate(self, exc: Exception, what: str, *, writing: bool = False) -> errors.BackendError:
        return translate(exc, what, self.hidden())

    async def _open(self, client: aioftp.Client) -> None:
        """Connect, secure, log in and change into the base path, naming what each refusal means."""
        context = self.conf.ssl_context
        await client.connect(self.host, self.port)
        if context is not None:
            try:
                await client.upgrade_to_tls(context)
            except aioftp.StatusCodeError as exc:
                if reply_code(exc) in UNSUPPORTED_CODES or reply_code(exc).startswith("53"):
                    raise errors.InvalidConfig(
                        f"{self.location}: the server does not support explicit FTPS (AUTH TLS "
                        f"answered {reply_code(exc)})",
                        reason=reasons.TLS_NOT_SUPPORTED,
                    ) from None
                raise
        try:
            await client.login(self.username, self.password)
        except aioftp.StatusCodeError as exc:
            text = reply_text(exc).lower()
            if context is None and any(word in text for word in ("tls", "ssl", "encrypt")):
                raise errors.InvalidConfig(
                    f"{self.location}: the server requires FTPS; set tls.enabled "
                    f"({reply_code(exc)})",
                    reason=reasons.TLS_REQUIRED,
                ) from None
            if reply_code(exc) in {"530", "430", "331", "332"}:
                raise errors.AuthFailed(
                    f"{self.location}: the server rejected the login of user {self.username!r} "
                    f"({reply_code(exc)})"
                ) from None
            raise
        if self.base_path == ".":
            return
        try:
            await client.change_directory(self.base_path)
        except aioftp.StatusCodeError as exc:
            if is_missing(exc):
                raise errors.LocationNotFound(
                    f"{self.location}: base path {self.base_path!r} does not exist",
                    reason=reasons.PATH_NOT_FOUND,
                ) from None
            raise

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[aioftp.Client]:
        """A logged-in control connection in the base path, for one operation.

        Errors are the library's own (the primitives' wrapper translates them). The connection
        is closed either way: with QUIT after success, abruptly after an error (its state is
        unknown then).
        """
        async with self._limit:
            client = aioftp.Client(
                connection_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                encoding="utf-8",
            )
            try:
                await self._open(client)
                yield client
            except BaseException:
                client.close()
                raise
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), QUIT_TIMEOUT)
            client.close()

    @staticmethod
    async def data_stream(
        client: aioftp.Client, command: str
    ) -> aioftp.DataConnectionThrottleStreamIO:
        """Open a passive data connection and start ``command`` on it.

        Like aioftp's ``get_stream``, but closes the data connection when the server refuses
        the command (aioftp leaves it to the garbage collector).
        """
        reader, writer = await client.get_passive_connection("I")
        try:
            await client.command(command, "1xx")
        except BaseException:
            writer.close()
            raise
        return aioftp.DataConnectionThrottleStreamIO(
            client, reader, writer, throttles={"_": client.throttle}, timeout=SOCKET_TIMEOUT
        )

    # -- object primitives ---------------------------------------------------------------------

    async def _reach(self) -> None:
        """Log in and change into the base path."""
        async with self.session():
            pass

    async def _put_object(self, key: str, content: AsyncIterator[bytes]) -> None:
        """Stream ``content`` to a temporary file, then rename it to ``key``."""
        async with self.session() as client:
            tmp = layout.temporary(key, secrets.token_hex(8))
            with contextlib.suppress(aioftp.StatusCodeError):  # exists already, or STOR says why
                await client.command(f"MKD {layout.TMP_DIR}", "257")
            stream = await self.data_stream(client, f"STOR {tmp}")
            replied = False
            try:
                async for chunk in content:
                    await stream.write(chunk)
                replied = True  # finish() reads the transfer's final reply, whatever it says
                await stream.finish()
                await self._rename(client, tmp, key)
            except BaseException:
                if not replied:
                    stream.close()
                    await self._quietly(client.command(None, ("2xx", "4xx", "5xx"), "1xx"))
                await self._quietly(client.command(f"DELE {tmp}", "2xx"))
                raise

    async def _rename(self, client: aioftp.Client, tmp: str, key: str) -> None:
        await client.command(f"RNFR {tmp}", "350")
        try:
            await client.command(f"RNTO {key}", "2xx")
        except aioftp.StatusCodeError as exc:
            # Some servers refuse to rename over an existing file: delete it and rename again.
            # Not when the refusal says "not allowed", and not when there is nothing to delete.
            if not reply_code(exc).startswith("5") or denies_permission(exc):
                raise
            if await self._size(client, key) is None:
                raise
            await client.command(f"DELE {key}", "2xx")
            await client.command(f"RNFR {tmp}", "350")
            await client.command(f"RNTO {key}", "2xx")

    @staticmethod
    async def _quietly(step: Any) -> None:
        """Best-effort cleanup on a connection that may already be broken."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(step, CLEANUP_TIMEOUT)

    async def _get_object(self, key: str) -> AsyncIterator[bytes]:
        async with self.session() as client:
            try:
                stream = await self.data_stream(client, f"RETR {key}")
            except aioftp.StatusCodeError as exc:
                if is_missing(exc):
                    raise errors.PinNotFound(f"read {self.where(key)}: no such object") from None
                raise
            try:
                while block := await stream.read(READ_CHUNK):
                    yield block
                await stream.finish()
            finally:
                stream.close()

    async def _list_objects(self) -> AsyncIterator[tuple[str, int]]:
        async with self.session() as client:
            entries = await self._list(client)
        for name, kind, size in entries:
            if kind == "file" and "/" not in name and not name.startswith("."):
                yield name, size

    async def _list(self, client: aioftp.Client) -> list[tuple[str, str, int]]:
        """(name, type, size) of every entry in the base path, by MLSD where possible."""
        if self._mlsd is None:
            try:
                _, features = await client.command("FEAT", "211")
            except aioftp.StatusCodeError:
                features = []
            self._mlsd = any(line.strip().upper().startswith("MLST") for line in features)
        if self._mlsd:
            try:
                return await self._read_listing(client, "MLSD", mlsd=True)
            except aioftp.StatusCodeError as exc:
                if reply_code(exc) not in UNSUPPORTED_CODES:
                    raise
                self._mlsd = False  # advertised, but not understood: LIST from now on
        return await self._read_listing(client, "LIST", mlsd=False)

    async def _read_listing(
        self, client: aioftp.Client, command: str, *, mlsd: bool
    ) -> list[tuple[str, str, int]]:
        try:
            stream = await self.data_stream(client, command)
        except aioftp.StatusCodeError as exc:
            # Some servers answer an empty directory with a bare 226 (no transfer at all), or
            # with "550 No files found"; we are in the base path already, so it does exist.
            if reply_code(exc).startswith("2") or is_missing(exc):
                return []
            raise
        entries: list[tuple[str, str, int]] = []
        try:
            while line := await stream.readline():
                entry = self._parse_mlsd(client, line) if mlsd else self._parse_list(client, line)
                if entry is not None and entry[0] not in {".", ".."}:
                    entries.append(entry)
            await stream.finish()
        finally:
            stream.close()
        return entries

    @staticmethod
    def _parse_mlsd(client: aioftp.Client, line: bytes) -> tuple[str, str, int] | None:
        if not line.strip():
            return None
        path, facts = client.parse_mlsx_line(line)
        size = str(facts.get("size", "0"))
        return str(path), str(facts.get("type", "")).lower(), int(size) if size.isdigit() else 0

    @staticmethod
    def _parse_list(client: aioftp.Client, line: bytes) -> tuple[str, str, int] | None:
        text = line.decode(client.encoding, errors="replace").rstrip("\r\n")
        if not text.strip() or text.lower().startswith("total "):
            return None
        entry = parse_unix_list_line(text)
        if entry is not None:
            return entry
        try:
            path, info = client.parse_list_line_windows(line)
        except (ValueError, KeyError, IndexError):
            return None  # a line in no format we know (a banner, a summary): not an object
        return str(path), info["type"], int(info.get("size", 0))

    async def _stat_object(self, key: str) -> int | None:
        async with self.session() as client:
            return await self._size(client, key)

    async def _size(self, client: aioftp.Client, key: str) -> int | None:
        """SIZE (RFC 3659; binary type, so the answer is the byte count), else a listing."""
        await client.command("TYPE I", "200")
        try:
            _, info = await client.command(f"SIZE {key}", "213")
        except aioftp.StatusCodeError as exc:
            if is_missing(exc):
                return None
            if reply_code(exc) not in UNSUPPORTED_CODES:
                raise
        else:
            return int(info[-1].strip())
        for name, kind, size in await self._list(client):
            if name == key and kind == "file":
                return size
        return None

    async def _delete_object(self, key: str) -> None:
        async with self.session() as client:
            try:
                await client.command(f"DELE {key}", "2xx")
            except aioftp.StatusCodeError as exc:
                if not is_missing(exc):
                    raise
