"""A throw-away PKI for the local control plane: one CA, a serving cert, an admin client cert."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Pki:
    """Writes ``ca.crt``, ``serving.{crt,key}``, ``admin.{crt,key}``, ``sa.key`` into ``dir``."""

    def __init__(self, dir: pathlib.Path) -> None:
        self.dir = dir
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
        self._leaf("admin", _name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)
        self._write("sa.key", _pem_key(rsa.generate_private_key(65537, 2048)))

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
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.ca_key, hashes.SHA256())
        self._write(f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM))
        self._write(f"{stem}.key", _pem_key(key))

    def _write(self, name: str, data: bytes) -> None:
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(0o600)
