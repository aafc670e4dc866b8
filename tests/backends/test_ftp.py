"""What the contract suite cannot say about FTP: FTPS trust, permissions, listing dialects.

Against real pyftpdlib servers in subprocesses: the contract suite's plain server (``ftp_kit``),
an FTPS server that requires TLS on control and data channels, and an old-fashioned server
without MLSD that refuses to rename over existing files and admits anonymous users.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import pathlib
import random
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioftp
import pytest
from multiformats import CID, multihash

from pinsync.backends import base, errors
from pinsync.backends import ftp as ftp_backend
from pinsync.backends.ftp import FtpBackend
from pinsync.devenv import ftpserver
from pinsync.devenv.processes import free_port

from .kit_ftp import FtpKit

aio = pytest.mark.asyncio(loop_scope="session")

KiB = 1024
MiB = 1024 * KiB


# -- servers and helpers --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ftps_server(workdir: pathlib.Path) -> Iterator[ftpserver.FtpServer]:
    """Explicit FTPS only: AUTH TLS before login and PROT P before any transfer."""
    server = ftpserver.FtpServer(workdir / "ftps", tls=True, name="ftps")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def old_server(workdir: pathlib.Path) -> Iterator[ftpserver.FtpServer]:
    """No MLSD/MLST, no rename over an existing file, anonymous logins welcome."""
    server = ftpserver.FtpServer(
        workdir / "ftp-old", mlsd=False, overwrite=False, anonymous=True, name="ftp-old"
    )
    try:
        yield server.start()
    finally:
        server.stop()


class Blob:
    def __init__(self, size: int) -> None:
        self.data = random.randbytes(size)
        self.cid = str(CID("base32", 1, "raw", multihash.digest(self.data, "sha2-256")))
        self.sha256 = hashlib.sha256(self.data).hexdigest()

    def meta(self) -> base.PinMeta:
        return base.PinMeta(cid=self.cid, pinsets=("default/ftp",))


async def chunks(data: bytes, size: int = 256 * KiB) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


async def put(backend: base.Backend, blob: Blob) -> base.PinInfo:
    return await backend.put_pin(blob.meta(), chunks(blob.data))


async def pins(backend: base.Backend) -> dict[str, int | None]:
    return {pin.cid: pin.size async for pin in backend.list_pins()}


async def fetch(backend: base.Backend, cid: str) -> bytes:
    return b"".join([chunk async for chunk in backend.fetch_pin(cid)])


def fresh_dir(home: pathlib.Path) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    (home / name).mkdir(parents=True)
    return name


def config(server: ftpserver.FtpServer, base_path: str, **extra: Any) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "basePath": base_path, **extra}


def creds(server: ftpserver.FtpServer, **extra: str) -> base.Credentials:
    return base.Credentials(
        data={"username": server.username, "password": server.password, **extra}
    )


@contextlib.asynccontextmanager
async def opened(cfg: dict[str, Any], credentials: base.Credentials) -> AsyncIterator[FtpBackend]:
    """An FtpBackend, closed afterwards (``Backend.__aenter__`` is typed for the base class)."""
    backend = FtpBackend(cfg, credentials)
    try:
        yield backend
    finally:
        await backend.aclose()


def assert_clean(exc: BaseException, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in str(exc) and secret not in repr(exc), f"a secret leaked: {exc!r}"


# -- FTPS -----------------------------------------------------------------------------------------


@aio
async def test_ftps_verified_against_the_ca_bundle_stores_lists_and_fetches(
    ftps_server: ftpserver.FtpServer,
) -> None:
    assert ftps_server.ca_pem
    tls = {"enabled": True, "caBundleKey": "ca.crt"}
    small, large = Blob(10 * KiB), Blob(3 * MiB)
    async with opened(
        config(ftps_server, fresh_dir(ftps_server.home), tls=tls),
        creds(ftps_server, **{"ca.crt": ftps_server.ca_pem}),
    ) as backend:
        await backend.health()
        for blob in (small, large):
            info = await put(backend, blob)
            assert (info.size, info.sha256) == (len(blob.data), blob.sha256)
        assert await pins(backend) == {small.cid: len(small.data), large.cid: len(large.data)}
        assert await fetch(backend, large.cid) == large.data
        assert (await backend.verify_pin(small.cid, deep=True)).sha256 == small.sha256
        directory = ftps_server.home / str(backend.config["basePath"])
        assert (directory / f"{large.cid}.car").read_bytes() == large.data


@aio
async def test_ftps_with_a_ca_that_did_not_sign_the_server_cert_fails_tls_verification(
    ftps_server: ftpserver.FtpServer,
) -> None:
    other_ca = ftpserver.ca_pem(ftpserver.generate_ca("some-other-ca")[0])
    tls = {"enabled": True, "caBundleKey": "ca.crt"}
    async with opened(
        config(ftps_server, fresh_dir(ftps_server.home), tls=tls),
        creds(ftps_server, **{"ca.crt": other_ca}),
    ) as backend:
        for operation in (backend.health(), put(backend, Blob(KiB))):
            with pytest.raises(errors.InvalidConfig) as caught:
                await operation
            assert caught.value.reason == "TLSVerifyFailed"
            assert not caught.value.retryable
            assert_clean(caught.value, ftps_server.password)


@aio
async def test_ftps_without_a_ca_bundle_uses_the_system_trust_store(
    ftps_server: ftpserver.FtpServer,
) -> None:
    """The test CA is in no system store, so verification must fail (and not be skipped)."""
    async with opened(
        config(ftps_server, fresh_dir(ftps_server.home), tls={"enabled": True}),
        creds(ftps_server),
    ) as backend:
        with pytest.raises(errors.InvalidConfig) as caught:
            await backend.health()
        assert caught.value.reason == "TLSVerifyFailed"


@aio
async def test_ftps_with_insecure_skip_verify_connects_without_the_ca(
    ftps_server: ftpserver.FtpServer,
) -> None:
    blob = Blob(100 * KiB)
    tls = {"enabled": True, "insecureSkipVerify": True}
    async with opened(
        config(ftps_server, fresh_dir(ftps_server.home), tls=tls), creds(ftps_server)
    ) as backend:
        await backend.health()
        await put(backend, blob)
        assert await pins(backend) == {blob.cid: len(blob.data)}
        assert await fetch(backend, blob.cid) == blob.data


@pytest.mark.parametrize(
    ("extra", "reason"),
    [({}, "CABundleNotFound"), ({"ca.crt": "not a certificate"}, "InvalidCABundle")],
    ids=["key-absent", "not-pem"],
)
@aio
async def test_a_ca_bundle_key_that_holds_no_bundle_is_invalid_config(
    ftps_server: ftpserver.FtpServer, extra: dict[str, str], reason: str
) -> None:
    """Found when the config is validated, before any connection is made."""
    tls = {"enabled": True, "caBundleKey": "ca.crt"}
    with pytest.raises(errors.InvalidConfig) as caught:
        FtpBackend.validate(config(ftps_server, "x", tls=tls), creds(ftps_server, **extra))
    assert caught.value.reason == reason
    assert caught.value.field == "caBundleKey"


@aio
async def test_plain_ftp_against_a_server_that_requires_tls_says_so(
    ftps_server: ftpserver.FtpServer,
) -> None:
    async with opened(config(ftps_server, "x"), creds(ftps_server)) as backend:
        with pytest.raises(errors.InvalidConfig) as caught:
            await backend.health()
        assert caught.value.reason == "TLSRequired"
        assert_clean(caught.value, ftps_server.password)


@aio
async def test_ftps_against_a_server_without_auth_tls_says_so(ftp_kit: FtpKit) -> None:
    server = ftp_kit.server
    tls = {"enabled": True, "insecureSkipVerify": True}
    async with opened(config(server, fresh_dir(server.home), tls=tls), creds(server)) as b:
        with pytest.raises(errors.InvalidConfig) as caught:
            await b.health()
        assert caught.value.reason == "TLSNotSupported"


# -- permissions and logins -----------------------------------------------------------------------


@aio
async def test_a_read_only_user_can_list_and_fetch_but_put_is_permission_denied(
    ftp_kit: FtpKit,
) -> None:
    server = ftp_kit.server
    directory = fresh_dir(server.home)
    blob = Blob(20 * KiB)
    async with opened(config(server, directory), creds(server)) as writer:
        await put(writer, blob)
    reader_creds = base.Credentials(
        data={"username": server.readonly_username, "password": server.readonly_password}
    )
    async with opened(config(server, directory), reader_creds) as reader:
        assert await pins(reader) == {blob.cid: len(blob.data)}
        assert await fetch(reader, blob.cid) == blob.data
        other = Blob(20 * KiB)
        for operation in (put(reader, other), reader.health(), reader.remove_pin(blob.cid)):
            with pytest.raises(errors.PermissionDenied) as caught:
                await operation
            assert not caught.value.retryable
            assert_clean(caught.value, server.readonly_password, server.password)
    assert sorted(p.name for p in (server.home / directory).iterdir() if p.is_file()) == sorted(
        [f"{blob.cid}.car", f"{blob.cid}.json"]
    )


@aio
async def test_anonymous_login_needs_no_secret(old_server: ftpserver.FtpServer) -> None:
    assert FtpBackend.credential_keys.optional_secret
    blob = Blob(5 * KiB)
    directory = fresh_dir(old_server.anonymous_home)
    async with opened(config(old_server, directory), base.Credentials()) as backend:
        assert backend.username == "anonymous"
        await backend.health()
        await put(backend, blob)
        assert await pins(backend) == {blob.cid: len(blob.data)}
    assert (old_server.anonymous_home / directory / f"{blob.cid}.car").read_bytes() == blob.data


@aio
async def test_active_mode_is_reported_as_unsupported(ftp_kit: FtpKit) -> None:
    """Found when the config is validated, before any connection is made."""
    server = ftp_kit.server
    with pytest.raises(errors.InvalidConfig) as caught:
        FtpBackend(config(server, "x", passive=False), creds(server))
    assert caught.value.reason == "ActiveModeUnsupported"
    assert "spec.ftp.passive" in caught.value.message


@aio
async def test_the_password_never_appears_in_errors_or_logs(
    ftp_kit: FtpKit,
    ftps_server: ftpserver.FtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = ftp_kit.server
    wrong = f"wrong-{uuid.uuid4().hex}"
    broken: list[tuple[dict[str, Any], base.Credentials]] = [
        (config(server, fresh_dir(server.home)), creds(server, password=wrong)),
        (config(server, "no-such-dir"), creds(server)),
        ({**config(server, "x"), "port": free_port()}, creds(server)),
        (config(ftps_server, "x"), creds(ftps_server)),
        (config(ftps_server, "x", tls={"enabled": True}), creds(ftps_server)),
        (
            config(server, fresh_dir(server.home)),
            base.Credentials(
                data={"username": server.readonly_username, "password": server.readonly_password}
            ),
        ),
    ]
    hidden = [server.password, wrong, ftps_server.password, server.readonly_password]
    caught: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        for cfg, credentials in broken:
            async with opened(cfg, credentials) as backend:
                for operation in (backend.health(), put(backend, Blob(KiB))):
                    with pytest.raises(errors.BackendError) as error:
                        await operation
                    caught.append(error.value)
    assert {type(exc).__name__ for exc in caught} >= {
        "AuthFailed",
        "LocationNotFound",
        "Unreachable",
        "InvalidConfig",
        "PermissionDenied",
    }
    for exc in caught:
        assert_clean(exc, *hidden)
    assert "PASS" in caplog.text  # aioftp did log the login (censored)...
    for secret in hidden:
        assert secret not in caplog.text  # ...but no password


def test_server_replies_that_echo_the_password_are_scrubbed() -> None:
    exc = aioftp.StatusCodeError(
        aioftp.Code("2xx"), aioftp.Code("550"), ["Permission denied for hunter2-secret"]
    )
    error = ftp_backend.translate(exc, "upload x", ["hunter2-secret"])
    assert isinstance(error, errors.PermissionDenied)
    assert "hunter2-secret" not in str(error) and "***" in str(error)


# -- listing dialects, renames, error codes -------------------------------------------------------


@aio
async def test_mlsd_and_the_list_fallback_list_the_same_pins(
    ftp_kit: FtpKit, old_server: ftpserver.FtpServer
) -> None:
    blobs = [Blob(size) for size in (1, 3 * KiB, 1 * MiB + 7)]
    expected = {blob.cid: len(blob.data) for blob in blobs}
    listed: dict[str, dict[str, int | None]] = {}
    usages: dict[str, base.Usage] = {}
    for label, server, mlsd in (("mlsd", ftp_kit.server, True), ("list", old_server, False)):
        async with opened(config(server, fresh_dir(server.home)), creds(server)) as backend:
            for blob in blobs:
                await put(backend, blob)
            (server.home / str(backend.config["basePath"]) / "not a pin.txt").write_bytes(b"x")
            listed[label] = await pins(backend)
            usages[label] = await backend.usage()
            assert backend._mlsd is mlsd, label
    assert listed["mlsd"] == listed["list"] == expected
    assert usages["mlsd"] == usages["list"]
    assert usages["list"].objects == 2 * len(blobs) + 1


@aio
async def test_a_server_that_advertises_mlst_but_rejects_mlsd_falls_back_to_list(
    old_server: ftpserver.FtpServer,
) -> None:
    blob = Blob(2 * KiB)
    async with opened(config(old_server, fresh_dir(old_server.home)), creds(old_server)) as b:
        await put(b, blob)
        b._mlsd = True  # as if FEAT had said MLST
        assert await pins(b) == {blob.cid: len(blob.data)}
        assert b._mlsd is False


@aio
async def test_a_server_that_refuses_to_rename_over_a_file_still_gets_the_new_content(
    old_server: ftpserver.FtpServer,
) -> None:
    first, second = Blob(4 * KiB), Blob(6 * KiB)
    async with opened(config(old_server, fresh_dir(old_server.home)), creds(old_server)) as b:
        directory = old_server.home / str(b.config["basePath"])
        await put(b, first)
        # The same CID again, with other bytes: the CAR and the sidecar both exist already.
        await b.put_pin(first.meta(), chunks(second.data))
        assert (directory / f"{first.cid}.car").read_bytes() == second.data
        assert (await b.verify_pin(first.cid, deep=True)).sha256 == second.sha256
        assert list((directory / ".tmp").iterdir()) == []


@aio
async def test_concurrent_puts_share_a_bounded_number_of_connections(
    ftp_kit: FtpKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ftp_kit.server
    blobs = [Blob(512 * KiB) for _ in range(10)]
    async with opened(config(server, fresh_dir(server.home)), creds(server)) as backend:
        original = backend.session
        active = peak = 0

        @contextlib.asynccontextmanager
        async def counting() -> AsyncIterator[aioftp.Client]:
            nonlocal active, peak
            async with original() as client:
                active += 1
                peak = max(peak, active)
                try:
                    yield client
                finally:
                    active -= 1

        monkeypatch.setattr(backend, "session", counting)
        await asyncio.gather(*(put(backend, blob) for blob in blobs))
        assert await pins(backend) == {blob.cid: len(blob.data) for blob in blobs}
        assert peak == ftp_backend.MAX_CONNECTIONS


@pytest.mark.parametrize(
    ("code", "text", "error", "reason"),
    [
        ("552", "Exceeded storage allocation.", errors.StorageFull, "StorageFull"),
        ("452", "Insufficient storage space.", errors.StorageFull, "StorageFull"),
        ("530", "Login incorrect.", errors.AuthFailed, "AuthFailed"),
        ("550", "Permission denied.", errors.PermissionDenied, "PermissionDenied"),
        ("553", "Can't open that file.", errors.PermissionDenied, "PermissionDenied"),
        ("421", "Too many connections.", errors.Unreachable, "Unreachable"),
        ("451", "Local error.", errors.BackendError, "BackendError"),
    ],
)
def test_reply_codes_map_onto_backend_errors(
    code: str, text: str, error: type[errors.BackendError], reason: str
) -> None:
    exc = aioftp.StatusCodeError(aioftp.Code("2xx"), aioftp.Code(code), [f" {text}"])
    translated = ftp_backend.translate(exc, "upload x")
    assert type(translated) is error and translated.reason == reason
    assert code in str(translated)


def test_socket_and_tls_failures_map_onto_backend_errors() -> None:
    refused = ftp_backend.translate(ConnectionRefusedError(111, "refused"), "connect")
    assert isinstance(refused, errors.Unreachable) and refused.retryable
    assert isinstance(ftp_backend.translate(TimeoutError(), "read"), errors.Unreachable)
    verify = ftp_backend.translate(ssl.SSLCertVerificationError(1, "verify failed"), "connect")
    assert isinstance(verify, errors.InvalidConfig) and verify.reason == "TLSVerifyFailed"


@pytest.mark.parametrize(
    ("line", "entry"),
    [
        ("-rw-r--r--   1 ftp  ftp   1234 Nov 24 12:00 bafy.car", ("bafy.car", "file", 1234)),
        ("-rw-r--r-- 1 1000 1000 5 Feb 29  2024 a b  c", ("a b  c", "file", 5)),
        ("drwxr-xr-x   2 ftp  ftp   4096 Jan  1  2025 .tmp", (".tmp", "dir", 4096)),
        ("lrwxrwxrwx   1 ftp  ftp      3 Jan  1 10:00 l.car -> x", ("l.car", "link", 3)),
        ("total 12", None),
        ("-rw-r--r-- ftp ftp 12 Nov 24 12:00", None),
    ],
)  # fmt: skip
def test_unix_list_lines_are_parsed_for_name_type_and_size(
    line: str, entry: tuple[str, str, int] | None
) -> None:
    assert ftp_backend.parse_unix_list_line(line) == entry
