"""What only the SFTP backend does, against the session's real OpenSSH server (``sftp_kit``).

Host key policy (refuse unknown keys, pin by known_hosts or fingerprint, trust on first use),
both ways of logging in, permission and space errors, temporary files, and secrets staying out
of every error. The behaviour every backend shares is in the contract suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import pwd
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncssh
import pytest
import pytest_asyncio

from pinsync.backends import base, errors, registry, sftp
from pinsync.devenv import sshd
from pinsync.devenv.processes import free_port

from .kit_sftp import SftpKit
from .test_contract import Blob, chunks, fetch, pins, put

pytestmark = pytest.mark.asyncio(loop_scope="session")

Build = Callable[..., sftp.SftpBackend]


@pytest_asyncio.fixture
async def build(sftp_kit: SftpKit) -> AsyncIterator[Build]:
    """Builds SFTP backends (key login, a fresh directory, the server pinned by knownHosts
    unless overridden: pass ``knownHosts=None`` to drop a setting) and closes them all."""
    built: list[sftp.SftpBackend] = []

    def make(credentials: base.Credentials | None = None, **overrides: Any) -> sftp.SftpBackend:
        config = sftp_kit.config(str(sftp_kit.fresh_dir()))
        config.update(overrides)
        config = {key: value for key, value in config.items() if value is not None}
        backend = sftp.SftpBackend(config, credentials or sftp_kit.key_credentials())
        built.append(backend)
        return backend

    yield make
    for backend in built:
        await backend.aclose()


@pytest.fixture(scope="module")
def other_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.SSHD]:
    """A second sshd: another host key, as if the name now led to a different machine."""
    server = sshd.SSHD(tmp_path_factory.mktemp("other-sshd"))
    try:
        yield server.start()
    finally:
        server.cleanup()


def assert_no_secrets(exc: BaseException, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in str(exc)
        assert secret not in repr(exc)


def ssh_keygen(path: pathlib.Path, passphrase: str = "", *options: str) -> str:
    """A new key pair at ``path`` (ed25519 unless ``options`` say otherwise); returns the
    public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", *options, "-N", passphrase, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def authorize(server: sshd.SSHD, public_key: str) -> None:
    with (server.shared / "authorized_keys").open("a") as out:
        out.write(public_key + "\n")


# -- host keys ------------------------------------------------------------------------------------


async def test_an_unknown_host_key_is_refused_and_its_fingerprint_reported(
    build: Build, sftp_kit: SftpKit
) -> None:
    for tofu in ({}, {"trustOnFirstUse": False}):
        backend = build(knownHosts=None, **tofu)
        with pytest.raises(errors.InvalidConfig) as caught:
            await backend.health()
        assert caught.value.reason == "HostKeyUnknown"
        assert not caught.value.retryable
        assert sftp_kit.server.host_key_fingerprint in caught.value.message
        assert "trustOnFirstUse" in caught.value.message
        assert backend.host_key_fingerprint is None
    # Refused before logging in: nothing was written.
    assert await pins(build()) == {}


async def test_trust_on_first_use_accepts_and_reports_the_key_then_holds_to_it(
    build: Build, other_server: sshd.SSHD
) -> None:
    key = base.Credentials(data={"privateKey": other_server.private_key})
    address = {"port": other_server.port, "knownHosts": None, "trustOnFirstUse": True}
    first = build(key, **address)
    await first.health()
    assert first.host_key_fingerprint == other_server.host_key_fingerprint
    trusted = other_server.host_key_fingerprint

    # The server now answers with another key: later backends (a later reconcile pass) and
    # this one, reconnecting, hold to the first key.
    await asyncio.to_thread(other_server.rotate_host_key)
    for backend in (build(key, **address), first):
        with pytest.raises(errors.InvalidConfig) as caught:
            await backend.health()
        assert caught.value.reason == "HostKeyMismatch"
        assert other_server.host_key_fingerprint in caught.value.message
        assert trusted in caught.value.message
    # Pinning the new key is how the user accepts the change.
    await build(key, **address, hostKeyFingerprint=other_server.host_key_fingerprint).health()
    # What was trusted on first use is no trust at all for a backend without trustOnFirstUse.
    with pytest.raises(errors.InvalidConfig) as caught:
        await build(key, port=other_server.port, knownHosts=None).health()
    assert caught.value.reason == "HostKeyUnknown"


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda fp: fp, id="as-printed"),
        pytest.param(lambda fp: fp + "=", id="with-padding"),
        pytest.param(lambda fp: fp.removeprefix("SHA256:"), id="without-prefix"),
    ],
)
async def test_a_pinned_fingerprint_is_accepted(
    build: Build, sftp_kit: SftpKit, spelling: Callable[[str], str]
) -> None:
    fingerprint = spelling(sftp_kit.server.host_key_fingerprint)
    backend = build(knownHosts=None, hostKeyFingerprint=fingerprint)
    await backend.health()
    assert backend.host_key_fingerprint == sftp_kit.server.host_key_fingerprint


async def test_a_pinned_md5_fingerprint_is_accepted(build: Build, sftp_kit: SftpKit) -> None:
    printed = (
        await asyncio.to_thread(
            subprocess.run,
            ["ssh-keygen", "-E", "md5", "-l", "-f", "-"],
            input=sftp_kit.server.host_public_key,
            capture_output=True,
            text=True,
            check=True,
        )
    ).stdout.split()[1]
    assert printed.startswith("MD5:")
    await build(knownHosts=None, hostKeyFingerprint=printed.upper().replace("MD5", "md5")).health()


async def test_a_wrong_fingerprint_is_a_mismatch_naming_the_presented_key(
    build: Build, sftp_kit: SftpKit, other_server: sshd.SSHD
) -> None:
    for config in (
        {"knownHosts": None, "hostKeyFingerprint": other_server.host_key_fingerprint},
        # knownHosts trusts the key, the fingerprint pins another: every pin must hold.
        {"hostKeyFingerprint": other_server.host_key_fingerprint},
    ):
        backend = build(**config)
        with pytest.raises(errors.InvalidConfig) as caught:
            await backend.health()
        assert caught.value.reason == "HostKeyMismatch"
        assert not caught.value.retryable
        assert sftp_kit.server.host_key_fingerprint in caught.value.message
        assert "hostKeyFingerprint" in caught.value.message


async def test_known_hosts_of_another_server_is_a_mismatch(
    build: Build, sftp_kit: SftpKit, other_server: sshd.SSHD
) -> None:
    backend = build(knownHosts=other_server.known_hosts)
    with pytest.raises(errors.InvalidConfig) as caught:
        await backend.health()
    assert caught.value.reason == "HostKeyMismatch"
    assert sftp_kit.server.host_key_fingerprint in caught.value.message
    assert "knownHosts" in caught.value.message


async def test_known_hosts_lines_pin_the_key_whatever_their_host_pattern(
    build: Build, sftp_kit: SftpKit, other_server: sshd.SSHD
) -> None:
    """ssh-keyscan output for another spelling of the host (or a bare key) still pins."""
    key = " ".join(sftp_kit.server.host_public_key.split()[:2])
    lines = [
        f"# keys of the storage box\n{other_server.known_hosts}\nsftp.example.com {key}",
        key,
    ]
    for known_hosts in lines:
        await build(knownHosts=known_hosts).health()


async def test_malformed_known_hosts_is_invalid_config(build: Build) -> None:
    with pytest.raises(errors.InvalidConfig) as caught:
        await build(knownHosts="127.0.0.1 ssh-ed25519 not-base64!").health()
    assert caught.value.reason == "KnownHostsInvalid"


# -- logging in -----------------------------------------------------------------------------------


async def test_password_login_works(build: Build, sftp_kit: SftpKit) -> None:
    backend = build(sftp_kit.password_credentials())
    await backend.health()
    blob = Blob(50_000)
    await put(backend, blob)
    assert await fetch(backend, blob.cid) == blob.data


async def test_key_login_works(build: Build, sftp_kit: SftpKit) -> None:
    backend = build(sftp_kit.key_credentials())
    await backend.health()
    blob = Blob(50_000)
    await put(backend, blob)
    assert await fetch(backend, blob.cid) == blob.data


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(("-t", "ecdsa", "-m", "PKCS8"), id="pkcs8-ecdsa"),
        pytest.param((), id="openssh-ed25519"),  # needs bcrypt: asyncssh[bcrypt] is a dependency
    ],
)
async def test_a_passphrase_protected_key_works_and_a_wrong_passphrase_is_invalid_config(
    build: Build, sftp_kit: SftpKit, tmp_path: pathlib.Path, options: tuple[str, ...]
) -> None:
    passphrase = f"phrase-{uuid.uuid4().hex}"
    authorize(sftp_kit.server, ssh_keygen(tmp_path / "id", passphrase, *options))
    pem = (tmp_path / "id").read_text()
    good = base.Credentials(data={"privateKey": pem, "passphrase": passphrase})
    await build(good).health()

    wrong = f"wrong-{uuid.uuid4().hex}"
    for data in ({"privateKey": pem, "passphrase": wrong}, {"privateKey": pem}):
        with pytest.raises(errors.InvalidConfig) as caught:
            await build(base.Credentials(data=data)).health()
        assert caught.value.reason == "PrivateKeyInvalid"
        assert_no_secrets(caught.value, pem, passphrase, wrong)


async def test_without_bcrypt_an_encrypted_openssh_key_says_what_to_do(
    build: Build, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An operator image built without asyncssh's bcrypt extra, as asyncssh itself sees it.
    monkeypatch.setattr(asyncssh.public_key, "_bcrypt_available", False)
    passphrase = f"phrase-{uuid.uuid4().hex}"
    ssh_keygen(tmp_path / "id", passphrase)
    pem = (tmp_path / "id").read_text()
    with pytest.raises(errors.InvalidConfig) as caught:
        await build(base.Credentials(data={"privateKey": pem, "passphrase": passphrase})).health()
    assert caught.value.reason == "PrivateKeyInvalid"
    assert "bcrypt" in caught.value.message and "PKCS8" in caught.value.message
    assert_no_secrets(caught.value, pem, passphrase)


async def test_a_key_the_server_does_not_know_is_auth_failed(
    build: Build, tmp_path: pathlib.Path
) -> None:
    ssh_keygen(tmp_path / "stranger")
    pem = (tmp_path / "stranger").read_text()
    with pytest.raises(errors.AuthFailed) as caught:
        await build(base.Credentials(data={"privateKey": pem})).health()
    assert not caught.value.retryable
    assert_no_secrets(caught.value, pem, *pem.splitlines()[1:-1])


async def test_the_secret_never_appears_in_errors(
    build: Build, sftp_kit: SftpKit, other_server: sshd.SSHD
) -> None:
    """Whatever fails (login, host key, path, server), neither str nor repr shows a secret."""
    password = sftp_kit.password_credentials()
    failing = [
        build(sftp_kit.password_credentials(sftp_kit.wrong_password)),
        build(password, knownHosts=None),
        build(password, knownHosts=other_server.known_hosts),
        build(password, basePath=f"/nonexistent/{uuid.uuid4().hex}"),
        build(password, port=free_port()),
        build(knownHosts=None),
        build(basePath=f"/nonexistent/{uuid.uuid4().hex}"),
    ]
    for backend in failing:
        with pytest.raises(errors.BackendError) as caught:
            await backend.health()
        assert_no_secrets(caught.value, *sftp_kit.secrets())
        with pytest.raises(errors.BackendError) as caught:
            await put(backend, Blob(1000))
        assert_no_secrets(caught.value, *sftp_kit.secrets())


@pytest.mark.parametrize(
    ("raised", "writing", "expected", "reason"),
    [
        (asyncssh.SFTPPermissionDenied("Permission denied"), False, errors.PermissionDenied, None),
        (asyncssh.SFTPNoSuchFile("No such file"), False, errors.LocationNotFound, "PathNotFound"),
        (asyncssh.SFTPFailure("Failure"), True, errors.StorageFull, None),
        (asyncssh.SFTPFailure("Failure"), False, errors.BackendError, "BackendError"),
        (asyncssh.SFTPFailure("Disk quota exceeded"), False, errors.StorageFull, None),
        (asyncssh.SFTPNoSpaceOnFilesystem("No space"), False, errors.StorageFull, None),
        (asyncssh.SFTPQuotaExceeded("Quota"), False, errors.StorageFull, None),
        (asyncssh.SFTPConnectionLost("gone"), False, errors.Unreachable, None),
        (asyncssh.ConnectionLost("gone"), True, errors.Unreachable, None),
        (ConnectionRefusedError(111, "Connection refused"), False, errors.Unreachable, None),
        (TimeoutError(), False, errors.Unreachable, None),
        (asyncssh.PermissionDenied("Permission denied"), False, errors.AuthFailed, None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
async def test_translate_maps_asyncssh_errors(
    raised: BaseException, writing: bool, expected: type[errors.BackendError], reason: str | None
) -> None:
    error = sftp.translate(raised, "op", writing=writing)
    assert type(error) is expected
    assert error.reason == (reason or expected.reason)


async def test_credential_keys_are_a_password_or_a_private_key() -> None:
    keys = registry.load("sshfs").credential_keys
    assert registry.load("sshfs") is sftp.SftpBackend
    assert keys.missing({"password"}) is None
    assert keys.missing({"privateKey"}) is None
    assert keys.missing({"privateKey", "passphrase"}) is None
    assert keys.missing({"passphrase"}) is not None
    assert not keys.optional_secret


# -- the base path ------------------------------------------------------------------------------


async def test_a_missing_base_path_is_reported_not_created(build: Build, sftp_kit: SftpKit) -> None:
    missing = sftp_kit.server.root / f"absent-{uuid.uuid4().hex[:8]}"
    backend = build(basePath=str(missing))
    with pytest.raises(errors.LocationNotFound) as caught:
        await backend.health()
    assert caught.value.reason == "PathNotFound"
    assert str(missing) in caught.value.message
    with pytest.raises(errors.LocationNotFound):
        await put(backend, Blob(1000))
    assert not missing.exists()


async def test_a_base_path_that_is_a_file_is_path_not_found(
    build: Build, sftp_kit: SftpKit
) -> None:
    path = sftp_kit.server.root / f"file-{uuid.uuid4().hex[:8]}"
    path.write_bytes(b"not a directory")
    with pytest.raises(errors.LocationNotFound) as caught:
        await build(basePath=str(path)).health()
    assert caught.value.reason == "PathNotFound"


async def test_a_relative_base_path_is_under_the_login_directory(
    build: Build, sftp_kit: SftpKit
) -> None:
    server = sftp_kit.server
    home = pathlib.Path(pwd.getpwnam(server.username).pw_dir)
    name = f"pinsync-rel-{uuid.uuid4().hex[:8]}"
    (home / name).mkdir()
    os.chown(home / name, server.uid, server.gid)
    try:
        for base_path in (name, f"~/{name}/"):
            backend = build(basePath=base_path)
            blob = Blob(1000)
            await put(backend, blob)
            assert (home / name / f"{blob.cid}.car").read_bytes() == blob.data
    finally:
        shutil.rmtree(home / name, ignore_errors=True)


async def test_permission_denied_on_the_base_path(build: Build, sftp_kit: SftpKit) -> None:
    """The login user is not root (root would ignore the mode), so 0555 really denies."""
    if sftp_kit.server.uid == 0:
        pytest.skip("the test sshd logs in as root, which ignores directory modes")
    readonly = sftp_kit.fresh_dir(mode=0o555)
    backend = build(basePath=str(readonly))
    with pytest.raises(errors.PermissionDenied) as caught:
        await backend.health()
    assert not caught.value.retryable
    assert str(readonly) in caught.value.message
    with pytest.raises(errors.PermissionDenied):
        await put(backend, Blob(1000))
    assert await pins(backend) == {}  # reading is allowed


# -- writes ---------------------------------------------------------------------------------------


async def test_uploads_go_through_tmp_and_leftovers_are_invisible(
    build: Build, sftp_kit: SftpKit
) -> None:
    backend = build()
    blob = Blob(3 * 1024 * 1024)
    location = pathlib.Path(backend.config["basePath"])
    seen: list[list[str]] = []

    def files() -> list[str]:
        return sorted(path.name for path in location.iterdir() if path.is_file())

    async def look(sent: int) -> None:
        seen.append(await asyncio.to_thread(files))

    await backend.put_pin(blob.meta(), chunks(blob.data, 512 * 1024, on_chunk=look))
    assert all(f"{blob.cid}.car" not in names for names in seen), "a partial CAR was visible"
    assert sorted(os.listdir(location / ".tmp")) == []

    leftover = location / ".tmp" / f"{Blob(10).cid}.car.0123456789abcdef"
    leftover.write_bytes(b"half an upload")
    assert await pins(backend) == {blob.cid: blob.size}
    usage = await backend.usage()
    assert (
        usage.objects == 2
        and usage.bytes == blob.size + (location / f"{blob.cid}.json").stat().st_size
    )


async def test_health_sweeps_only_stale_temporary_files(build: Build) -> None:
    backend = build()
    await backend.put_pin(Blob(10).meta(), chunks(b"x"))  # creates .tmp
    tmp = pathlib.Path(backend.config["basePath"]) / ".tmp"
    stale, fresh = tmp / "a.car.stale", tmp / "b.car.fresh"
    stale.write_bytes(b"old")
    fresh.write_bytes(b"in progress elsewhere")
    old = time.time() - sftp.STALE_TEMP_SECONDS - 3600
    os.utime(stale, (old, old))
    await backend.health()
    assert sorted(os.listdir(tmp)) == ["b.car.fresh"]


async def test_concurrent_puts_share_one_connection(build: Build, sftp_kit: SftpKit) -> None:
    log = sftp_kit.server.workdir / "sshd.log"
    before = log.read_text().count("Connection from")
    backend = build()
    blobs = [Blob(300_000) for _ in range(8)]
    await asyncio.gather(*(put(backend, blob) for blob in blobs))
    assert await pins(backend) == {blob.cid: blob.size for blob in blobs}
    assert log.read_text().count("Connection from") - before == 1


@contextlib.contextmanager
def small_filesystem(path: pathlib.Path, size: str, uid: int, gid: int) -> Iterator[None]:
    path.mkdir()
    mounted = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size},uid={uid},gid={gid},mode=0755",
            "tmpfs",
            str(path),
        ],
        capture_output=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        path.rmdir()


async def test_a_full_disk_is_storage_full_and_leaves_no_object(
    build: Build, sftp_kit: SftpKit
) -> None:
    server = sftp_kit.server
    location = server.root / f"tiny-{uuid.uuid4().hex[:8]}"
    with small_filesystem(location, "1m", server.uid, server.gid):
        backend = build(basePath=str(location))
        await backend.health()
        blob = Blob(4 * 1024 * 1024)
        with pytest.raises(errors.StorageFull) as caught:
            await put(backend, blob)
        assert caught.value.retryable
        assert await pins(backend) == {}
        assert not (location / f"{blob.cid}.car").exists()
        assert os.listdir(location / ".tmp") == []  # the partial temporary file was removed
        small = Blob(10_000)
        await put(backend, small)  # and the space is free again
        assert await pins(backend) == {small.cid: small.size}
