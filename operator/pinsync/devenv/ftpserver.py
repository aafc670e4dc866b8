"""A real FTP (optionally explicit FTPS) server on loopback: pyftpdlib in a subprocess.

A subprocess, not a thread in the test process, so that tests can kill it mid-transfer (as they
kill MinIO) and so that its blocking I/O loop never competes with the asyncio loop under test.
It serves one home directory (``<workdir>/home``) to two users, which lets tests look behind the
backend's back on disk and check permissions with the same files:

* ``username``/``password``: full rights (``elradfmwMT``);
* ``readonly_username``/``readonly_password``: perm ``elr`` (list and read only);
* optionally ``anonymous``, with full rights in ``<home>/anonymous``.

With ``tls=True`` the server requires AUTH TLS on the control channel and PROT P on data
channels, with a server certificate (SAN ``localhost``, ``127.0.0.1``) signed by a throw-away CA
whose PEM is :attr:`FtpServer.ca_pem`. With ``mlsd=False`` it lacks MLSD/MLST (and does not
advertise them in FEAT), like older servers, so clients must list with LIST. With
``overwrite=False`` RNTO refuses to replace an existing file ("550 File exists."), as some
servers do.

Run as ``python -m pinsync.devenv.ftpserver <config.json>``; :class:`FtpServer` writes the
config (passwords included, so in a file of mode 0600 rather than on the command line).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import pathlib
import random
import secrets
import socket
import sys
from typing import Any

from pinsync.devenv.processes import Process, Server, free_port

FULL_PERM = "elradfmwMT"
READONLY_PERM = "elr"
PASSIVE_PORTS = 16
"""Passive ports per server: enough for a test's concurrent transfers (each needs one)."""


def free_port_range(count: int, *, attempts: int = 200) -> list[int]:
    """``count`` consecutive loopback ports that are free right now (for PASV/EPSV)."""
    rng = random.Random()
    for _ in range(attempts):
        start = rng.randrange(20_000, 60_000 - count)
        socks: list[socket.socket] = []
        try:
            for port in range(start, start + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return list(range(start, start + count))
    raise RuntimeError(f"no {count} consecutive free ports found")


def generate_ca(common_name: str = "pinsync-ftp-test-ca") -> tuple[Any, Any]:
    """A self-signed CA (certificate, private key), valid for a week."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def ca_pem(cert: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    pem: bytes = cert.public_bytes(serialization.Encoding.PEM)
    return pem.decode()


def write_server_pki(directory: pathlib.Path) -> str:
    """Write ``server.crt`` (leaf + CA chain) and ``server.key``; return the CA's PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = generate_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_pem(ca_cert).encode()
    (directory / "server.crt").write_bytes(chain)
    key_path = directory / "server.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    (directory / "ca.crt").write_text(ca_pem(ca_cert))
    return ca_pem(ca_cert)


class FtpServer(Server):
    """pyftpdlib on a free loopback port; ``stop``/``start`` keep the port, data and cert."""

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        tls: bool = False,
        mlsd: bool = True,
        anonymous: bool = False,
        overwrite: bool = True,
        name: str = "ftp",
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.tls, self.mlsd, self.anonymous, self.overwrite = tls, mlsd, anonymous, overwrite
        self.host = "127.0.0.1"
        self.port = free_port()
        self.passive_ports = free_port_range(PASSIVE_PORTS)
        self.home = workdir / "home"
        self.anonymous_home = self.home / "anonymous"
        self.username = "pinsync"
        self.password = secrets.token_urlsafe(18)
        self.readonly_username = "reader"
        self.readonly_password = secrets.token_urlsafe(18)
        self.ca_pem: str | None = None
        """PEM of the CA that signed the server certificate (``tls=True`` only)."""
        self.process: Process | None = None

    @property
    def config_path(self) -> pathlib.Path:
        return self.workdir / f"{self.name}.json"

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "passive_ports": self.passive_ports,
            "mlsd": self.mlsd,
            "overwrite": self.overwrite,
            "users": [
                {"name": self.username, "password": self.password, "perm": FULL_PERM},
                {"name": self.readonly_username, "password": self.readonly_password,
                 "perm": READONLY_PERM},
            ],
            "home": str(self.home),
            "anonymous_home": None,
            "tls": None,
        }  # fmt: skip
        if self.anonymous:
            self.anonymous_home.mkdir(parents=True, exist_ok=True)
            config["anonymous_home"] = str(self.anonymous_home)
        if self.tls:
            pki = self.workdir / "tls"
            if self.ca_pem is None:
                self.ca_pem = write_server_pki(pki)
            config["tls"] = {
                "certfile": str(pki / "server.crt"),
                "keyfile": str(pki / "server.key"),
            }
        path = self.config_path
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(config))

    def start(self) -> FtpServer:
        self._write_config()
        self.process = Process(
            self.name,
            [sys.executable, "-m", "pinsync.devenv.ftpserver", str(self.config_path)],
            workdir=self.workdir,
        ).start()
        self.process.wait_until(self._greets, timeout=30, what="FTP 220 greeting")
        return self

    def _greets(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=2) as sock:
            return sock.recv(1024).startswith(b"220")


# -- the server process -------------------------------------------------------------------------


def serve(config_path: str) -> None:  # pragma: no cover - runs in the subprocess
    """Run pyftpdlib as configured by :meth:`FtpServer._write_config` until killed."""
    import errno
    import logging
    import os

    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.filesystems import AbstractedFS
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import FTPServer

    config = json.loads(pathlib.Path(config_path).read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    authorizer = DummyAuthorizer()
    for user in config["users"]:
        authorizer.add_user(user["name"], user["password"], config["home"], perm=user["perm"])
    if config["anonymous_home"]:
        authorizer.add_anonymous(config["anonymous_home"], perm=FULL_PERM)

    base: type[Any] = TLS_FTPHandler if config["tls"] else FTPHandler
    attrs: dict[str, Any] = {
        "authorizer": authorizer,
        "passive_ports": config["passive_ports"],
        "auth_failed_timeout": 0.1,  # pyftpdlib's 3 s would make every wrong-password test slow
        "banner": "pinsync test FTP server ready.",
    }
    if config["tls"]:
        attrs |= {
            "certfile": config["tls"]["certfile"],
            "keyfile": config["tls"]["keyfile"],
            "tls_control_required": True,
            "tls_data_required": True,
        }
    if not config["mlsd"]:
        attrs["proto_cmds"] = {
            cmd: spec for cmd, spec in base.proto_cmds.items() if cmd not in {"MLSD", "MLST"}
        }
    if not config["overwrite"]:

        class NoOverwriteFS(AbstractedFS):  # type: ignore[misc]
            def rename(self, src: str, dst: str) -> None:
                if os.path.lexists(dst):
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
                super().rename(src, dst)

        attrs["abstracted_fs"] = NoOverwriteFS
    handler = type("Handler", (base,), attrs)
    server = FTPServer((config["host"], config["port"]), handler)
    server.serve_forever()


if __name__ == "__main__":  # pragma: no cover
    serve(sys.argv[1])
