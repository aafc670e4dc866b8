"""The backend protocol: the handful of pin-level primitives the sync engine needs.

Object stores (S3, SFTP, FTP, ...) store a pin as a CAR file plus a JSON sidecar; a pinning
service (IPFS Cluster) is asked to pin by CID and fetches content itself. The engine sees only
this protocol, so dirty state, planning, verification policy, retries and status are written once.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinInfo:
    """What a backend knows about one stored pin."""

    cid: str
    size: int | None = None
    """Bytes of the stored CAR; None where the backend stores no content (cluster)."""
    sha256: str | None = None
    """Hex digest of the stored CAR, when the backend recorded one."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinMeta:
    """What the engine tells a backend about a pin it is about to store."""

    cid: str
    pinsets: tuple[str, ...] = ()
    """``namespace/name`` of every PinSet that wants this pin (for attribution)."""
    name: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Usage:
    bytes: int
    objects: int
    free: int | None = None
    """Bytes the backend can still take, where its server says (None: it does not)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Credentials:
    """The data of the referenced Secret, decoded. Never logged; ``repr`` hides the values."""

    data: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Credentials(keys={sorted(self.data)})"

    def get(self, key: str) -> str | None:
        return self.data.get(key) or None


@dataclasses.dataclass(frozen=True, kw_only=True)
class CredentialKeys:
    """Which Secret keys a backend type accepts: any one of ``alternatives`` must be complete."""

    alternatives: tuple[frozenset[str], ...] = ()
    optional_secret: bool = False
    """The backend can work with no Secret at all (e.g. S3 with the default AWS chain)."""

    def missing(self, present: set[str]) -> frozenset[str] | None:
        """Keys still needed, or None when some alternative is complete."""
        if not self.alternatives:
            return None
        gaps = [alt - present for alt in self.alternatives]
        return None if any(not gap for gap in gaps) else min(gaps, key=len)


class Backend(abc.ABC):
    """One configured storage backend. Instances are cheap; ``aclose`` releases connections."""

    credential_keys: ClassVar[CredentialKeys] = CredentialKeys()
    stores_content: ClassVar[bool] = True
    """False for pinning services that fetch content by CID themselves."""

    def __init__(self, config: Mapping[str, Any], credentials: Credentials) -> None:
        self.config = config
        self.credentials = credentials

    @abc.abstractmethod
    async def health(self) -> None:
        """Check reachability, credentials and write access; raise a BackendError if unhealthy."""

    @abc.abstractmethod
    async def usage(self) -> Usage:
        """Bytes and objects stored under this backend's location."""

    @abc.abstractmethod
    def list_pins(self) -> AsyncIterator[PinInfo]:
        """Every pin present on the backend (complete objects only, never partial uploads)."""

    @abc.abstractmethod
    async def put_pin(self, meta: PinMeta, content: AsyncIterator[bytes]) -> PinInfo:
        """Store a pin from a CAR byte stream, atomically: all under its final name, or nothing."""

    @abc.abstractmethod
    async def verify_pin(self, cid: str, *, deep: bool = False) -> PinInfo:
        """Check the stored pin (deep: re-read and re-hash); raise PinNotFound or BackendError."""

    @abc.abstractmethod
    async def remove_pin(self, cid: str) -> None:
        """Delete a pin; deleting an absent pin is not an error."""

    @abc.abstractmethod
    def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        """Stream a stored pin's CAR back."""

    def learned(self) -> Mapping[str, str]:
        """Config learned on first contact that later passes must hold to.

        E.g. an SSH host key accepted by trust-on-first-use. The operator keeps it in
        ``status.learned`` and merges it into the config of later passes (the spec wins), so
        the trust survives operator restarts.
        """
        return {}

    async def aclose(self) -> None:  # noqa: B027  (optional hook; most backends need it)
        """Release connections and clients."""

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
