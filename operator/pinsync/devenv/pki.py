"""A throw-away PKI for the local control plane: one CA, a serving cert, an admin client cert."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Pki:
    """Writes ``ca.crt``, ``serving.{crt,key}``, ``admin.{crt,key}``, ``sa.key`` into ``dir``.

    ``serving_names``: more DNS names or IP addresses the serving cert is valid for (a real
    node's Pods reach the API server through its node IP and the ``kubernetes`` Service).
    """

    def __init__(self, dir: pathlib.Path, serving_names: Sequence[str] = ()) -> None:
        self.dir = dir
        self._serving_names = ["localhost", "127.0.0.1", *serving_names]
        dir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        self._validity = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7))
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = (
            self._builder(_name("pinsync-local-ca"), self.ca_key.public_key())
            .issuer_name(_name("pinsync-local-ca"))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self._write("ca.crt", self.ca_cert.public_bytes(serialization.Encoding.PEM))
        self._leaf("serving", _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH)
        self.client("admin", "admin", "system:masters")
        self._write("sa.key", _pem_key(rsa.generate_private_key(65537, 2048)))

    def client(self, stem: str, user: str, group: str | None = None) -> None:
        """A client cert ``<stem>.{crt,key}`` for ``user`` (its CN) in ``group`` (its O)."""
        self._leaf(stem, _name(user, group), ExtendedKeyUsageOID.CLIENT_AUTH)

    def path(self, name: str) -> pathlib.Path:
        return self.dir / name

    def _builder(self, subject: x509.Name, public_key: object) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._validity[0])
            .not_valid_after(self._validity[1])
        )

    def _leaf(self, stem: str, subject: x509.Name, usage: x509.ObjectIdentifier) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            self._builder(subject, key.public_key())
            .issuer_name(self.ca_cert.subject)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(n) for n in self._serving_names]),
                critical=False,
            )
        cert = builder.sign(self.ca_key, hashes.SHA256())
        self._write(f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM))
        self._write(f"{stem}.key", _pem_key(key))

    def _write(self, name: str, data: bytes) -> None:
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(0o600)
