"""Which SSH host keys an SFTP backend accepts: pinned ones, or the first one seen.

Host keys are verified, never silently accepted: against ``knownHosts`` lines and/or a
``hostKeyFingerprint``; with neither, only if ``trustOnFirstUse`` says so (and then the first key
seen at the address is held to for the life of the process, and beyond it through
``status.learned``). Otherwise the connection is refused with ``HostKeyUnknown`` and the
fingerprint the server presented, so the user can check it out of band and pin it.

A policy of its own, apart from the SFTP transfer code: it is security-relevant, it is the part
users configure most, and it is tested on its own terms (what is accepted, what is refused, and
what the refusal says) without any file I/O.
"""

from __future__ import annotations

import contextlib
import dataclasses

import asyncssh

from pinsync import reasons
from pinsync.backends import errors


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class KnownHosts:
    """The keys of ``knownHosts`` lines, by marker."""

    trusted: tuple[asyncssh.SSHKey, ...] = ()
    authorities: tuple[asyncssh.SSHKey, ...] = ()
    revoked: tuple[asyncssh.SSHKey, ...] = ()


def parse_known_hosts(text: str) -> KnownHosts:
    """The keys of known_hosts lines, whatever their host patterns.

    The lines are configured for this one backend's server, so their host patterns are not
    matched: ``ssh-keyscan`` output pasted under a different spelling of the host (a Service
    name, an IP, ``[host]:port``) still pins the key. Bare public key lines are accepted too.
    """
    found: dict[str, list[asyncssh.SSHKey]] = {"": [], "@cert-authority": [], "@revoked": []}
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
        if key is None or marker not in found:
            raise errors.InvalidConfig(
                f"spec.sftp.knownHosts line {number} is not an OpenSSH known_hosts entry",
                reason=reasons.KNOWN_HOSTS_INVALID,
                field="knownHosts",
            )
        found[marker].append(key)
    return KnownHosts(
        trusted=tuple(found[""]),
        authorities=tuple(found["@cert-authority"]),
        revoked=tuple(found["@revoked"]),
    )


FIRST_SEEN: dict[tuple[str, int], str] = {}
"""Host key fingerprints trusted on first use, by (host, port), for the life of the process.

A backend instance lives as long as its configuration; remembering only per instance would
accept any key after every change. Persisted by the operator in ``status.learned`` (see
``Backend.learned``), which a later configuration pins as ``hostKeyFingerprint``.
"""


class HostKeyPolicy:
    """Decides whether a presented host key is acceptable, from the spec's settings."""

    def __init__(
        self,
        *,
        known: KnownHosts,
        fingerprint: str,
        trust_on_first_use: bool,
        address: tuple[str, int],
    ) -> None:
        self.address = address
        self.trusted, self.authorities = list(known.trusted), list(known.authorities)
        self.revoked = list(known.revoked)
        self.fingerprint = normalize_fingerprint(fingerprint) if fingerprint.strip() else ""
        self.trust_on_first_use = trust_on_first_use

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

    def refusal(self, where: str, key: asyncssh.SSHKey | None) -> errors.InvalidConfig:
        """The error for a refused key, naming the fingerprint it presented."""
        shown = (
            f"{key.get_algorithm()} key {sha256_fingerprint(key)}"
            if key is not None
            else "a host key (certificate) that could not be verified"
        )
        if not self.pinned and not self.trust_on_first_use:
            return errors.InvalidConfig(
                f"{where}: the server's host key is unknown: it presented {shown}. Verify "
                "it out of band and set hostKeyFingerprint (or knownHosts) to it, or set "
                "trustOnFirstUse",
                reason=reasons.HOST_KEY_UNKNOWN,
            )
        return errors.InvalidConfig(
            f"{where}: the server presented {shown}, which does not match {self.pinned_to()}",
            reason=reasons.HOST_KEY_MISMATCH,
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
