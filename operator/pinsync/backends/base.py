"""The backend protocol: the handful of pin-level primitives the sync engine needs.

Object stores (S3, SFTP, FTP, ...) store a pin as a CAR file plus a JSON sidecar; a pinning
service (IPFS Cluster) is asked to pin by CID and fetches content itself. The engine sees only
this protocol, so dirty state, planning, verification policy, retries and status are written once.

What every backend used to repeat is written here once, too: the typed config built from the
spec (:meth:`Backend.validate`, so a bad field is reported before any I/O, once, not at every
use), error translation around a primitive (:meth:`Backend.translating`, with the backend's
:meth:`Backend.translate` hook), the rule that a content stream's own errors pass through
untouched (:class:`Source`), the batch primitive (:meth:`Backend.put_pins`), and a deep
verify's re-read of the stored CAR (:func:`reread`), the backends keeping only where the
expected size and sha256 come from (a sidecar, an LFS pointer).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from pinsync import reasons
from pinsync.backends import errors


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinInfo:
    """What a backend knows about one stored pin."""

    cid: str
    size: int | None = None
    """Bytes of the stored CAR; None where the backend stores no content (cluster)."""
    sha256: str | None = None
    """Hex digest of the stored CAR, when the backend recorded one."""
    verified: bool = False
    """``put_pin`` already read the stored size back: the engine needs no ``verify_pin``."""


class Node(Protocol):
    """The IPFS node a pin's content is on, as a service that fetches by CID needs it: where to
    fetch from (its ``origins``) and a way to dial the peers it will fetch with (``delegates``).
    The engine hands a Kubo client; a backend never imports :mod:`pinsync.ipfs` itself."""

    async def addresses(self) -> list[str]:
        """The node's own multiaddrs, each ending in ``/p2p/<peer id>``."""
        ...

    async def connect(self, addresses: Sequence[str]) -> None:
        """Dial these peers (best effort: an address that cannot be dialled is skipped)."""
        ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinMeta:
    """What the engine tells a backend about a pin it is about to store."""

    cid: str
    pinsets: tuple[str, ...] = ()
    """``namespace/name`` of every PinSet that wants this pin (for attribution)."""
    name: str = ""
    node: Node | None = dataclasses.field(default=None, compare=False, repr=False)
    """The IPFS node holding the content (None where the caller has none, e.g. tests)."""


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
    exclusive: bool = False
    """At most one alternative may be complete: both a token and a username/password leave
    the user guessing which one is used."""

    def missing(self, present: set[str]) -> frozenset[str] | None:
        """Keys still needed, or None when some alternative is complete."""
        if not self.alternatives:
            return None
        gaps = [alt - present for alt in self.alternatives]
        return None if any(not gap for gap in gaps) else min(gaps, key=len)

    def conflicting(self, present: set[str]) -> list[frozenset[str]]:
        """The complete alternatives, when there are several and only one is allowed."""
        complete = [alt for alt in self.alternatives if alt <= present]
        return complete if self.exclusive and len(complete) > 1 else []


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """A backend's settings, typed and checked: built once from its spec block (and, where a
    setting refers into it, the Secret) by :meth:`Backend.validate`."""


class Fields:
    """Reads typed values out of one spec block; a bad value is an InvalidConfig naming it.

    Values are coerced as the backends always did (a port may be given as ``"22"``); what
    cannot be coerced, or is out of range, is reported with the field's full path.
    """

    def __init__(self, block: str, spec: Mapping[str, Any]) -> None:
        self.block, self.spec = block, spec

    def path(self, name: str) -> str:
        return f"spec.{self.block}.{name}"

    def invalid(
        self, name: str, problem: str, *, reason: reasons.Reason = reasons.INVALID_CONFIG
    ) -> errors.InvalidConfig:
        return errors.InvalidConfig(f"{self.path(name)} {problem}", reason=reason, field=name)

    def text(self, name: str, default: str | None = None, *, empty: bool = True) -> str:
        """A string; required when there is no default, not blank unless ``empty``."""
        value = self.spec.get(name)
        if value is None:
            if default is None:
                raise self.invalid(name, "is required")
            value = default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.invalid(name, f"must be a string, not {type(value).__name__}")
        if not empty and not str(value).strip():
            raise self.invalid(name, "must not be empty")
        return str(value)

    def url(self, name: str, default: str | None = None) -> str:
        """An http(s) URL without a trailing slash (or empty, if that is the default)."""
        value = self.text(name, default).rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise self.invalid(name, "must be an http(s) URL")
        return value

    def integer(
        self, name: str, default: int, *, low: int | None = None, high: int | None = None
    ) -> int:
        """An integer (absent: the default), within ``low``..``high``."""
        value = self.spec.get(name)
        if value is None or value == "":
            number = default
        elif isinstance(value, bool):
            raise self.invalid(name, "must be an integer, not a boolean")
        else:
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise self.invalid(name, f"must be an integer, not {value!r}") from None
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = f"{'' if low is None else low}..{'' if high is None else high}"
            raise self.invalid(name, f"must be in {bounds}, not {number}")
        return number

    def flag(self, name: str, default: bool) -> bool:
        value = self.spec.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.invalid(name, f"must be true or false, not {value!r}")
        return value

    def section(self, name: str) -> Fields:
        """A nested block (``tls``), read the same way."""
        value = self.spec.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise self.invalid(name, "must be an object")
        return Fields(f"{self.block}.{name}", value or {})


class Source:
    """A content stream that remembers whether an exception came from it.

    Backends translate their server's errors into the backend vocabulary but must pass the
    stream's own errors (a truncated CAR, Kubo going away) through untouched: the sync engine
    interprets those. :meth:`Backend.translating` tells the two apart by this flag.
    """

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        self._content = aiter(content)
        self.failed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await anext(self._content)
            except StopAsyncIteration:
                return
            except BaseException:
                self.failed = True
                raise
            yield chunk


async def close_unread(content: AsyncIterator[bytes]) -> None:
    """Close a content stream without reading it: a service that fetches by CID needs no
    bytes, and an export behind the stream (if the caller made one) then never starts."""
    closer = getattr(content, "aclose", None)
    if closer is not None:
        await closer()


class Hashing:
    """Wraps a byte stream, counting and hashing what passes through: a pin's size and sha256
    as it is written (the sidecar's, the LFS pointer's) and as a deep verify reads it back."""

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self.stream = stream
        self.size = 0
        self.digest = hashlib.sha256()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            self.size += len(chunk)
            self.digest.update(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


async def reread(
    cid: str,
    content: AsyncIterator[bytes],
    *,
    sha256: str | None,
    size: int | None = None,
    mismatch: str = "CAR content does not match the sidecar's sha256",
) -> None:
    """A deep verify's common step: read the stored CAR back to its end, hash it, and raise
    Damaged (``"<cid>: <mismatch>"``) unless its sha256 -- and ``size``, where given -- are
    what the store recorded when the pin was written."""
    hashed = Hashing(content)
    async for _ in hashed:
        pass
    if hashed.sha256 != sha256 or (size is not None and hashed.size != size):
        raise errors.Damaged(f"{cid}: {mismatch}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Upload:
    """One pin of a batch handed to :meth:`Backend.put_pins`."""

    meta: PinMeta
    content: Callable[[], AsyncIterator[bytes]]
    """Opens the pin's CAR stream; called when the backend is ready to read it, so a batch
    does not start every pin's export at once."""


class Staged(Protocol):
    """A pin read into local storage for a commit-based store (see :meth:`Backend.commit_batch`)."""

    size: int

    def discard(self) -> None:
        """Remove the local copy (after the commit, or instead of it)."""


S = TypeVar("S", bound=Staged)
Results = list[PinInfo | Exception | None]
"""Per pin of a batch, its result once known."""


class Backend(abc.ABC):
    """One configured storage backend. Instances are cheap; ``aclose`` releases connections."""

    credential_keys: ClassVar[CredentialKeys] = CredentialKeys()
    stores_content: ClassVar[bool] = True
    """False for pinning services that fetch content by CID themselves."""
    prune_batch: ClassVar[int] = 1
    """Pins handed to :meth:`remove_pins` at a time: one by default, so a storage that fails
    every deletion stops a prune after a few; a store whose write is a commit takes many."""

    single_writer: ClassVar[bool] = False
    """Writes from several processes at once would conflict (commits on one branch): the
    scale-out hands this backend's shards to one worker at a time."""

    batch_size: int = 1
    """How many pins the engine hands :meth:`put_pins` at once. 1 for stores where each write
    stands alone; a store whose write is expensive (a commit) takes more."""

    def __init__(self, config: Mapping[str, Any], credentials: Credentials) -> None:
        self.config = config
        """The spec block as given (what kits and status refer to); the backend reads
        ``self.conf``."""
        self.credentials = credentials
        self.conf = self.validate(config, credentials)

    @classmethod
    def validate(cls, spec: Mapping[str, Any], credentials: Credentials) -> Config:
        """The typed config of a spec block; InvalidConfig naming the field, before any I/O.

        The reconciler calls this before building the backend, so a bad value is reported as
        ``Stalled`` once; the constructor calls it again (it is cheap and does no I/O).
        """
        return Config()

    # -- errors: translated once, around each primitive ----------------------------------------

    def translate(self, exc: Exception, what: str, *, writing: bool = False) -> errors.BackendError:
        """The backend's hook: its library's exception as a BackendError (``what`` says which
        operation on what; ``writing``: the server was being written to). No secrets."""
        return errors.BackendError(f"{what}: {type(exc).__name__}")

    @contextlib.contextmanager
    def translating(
        self, what: str, *, writing: bool = False, source: Source | None = None
    ) -> Iterator[None]:
        """Errors inside become :meth:`translate`'s BackendError; BackendErrors and errors of
        ``source`` (the content stream) pass through as they are."""
        try:
            yield
        except errors.BackendError:
            raise
        except Exception as exc:
            if source is not None and source.failed:
                raise  # the content stream's own error is the caller's to interpret, not ours
            raise self.translate(exc, what, writing=writing) from None

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

    async def put_pins(self, uploads: Sequence[Upload]) -> list[PinInfo | Exception]:
        """Store a batch of pins; per pin, what ``put_pin`` returned or the error it raised.

        The default stores them one by one. A store whose write is a commit overrides this to
        write the batch as one: a pin then counts as present only once its batch is
        committed, and a batch that fails leaves none of its pins visible (each gets the error).
        """
        results: list[PinInfo | Exception] = []
        for upload in uploads:
            try:
                results.append(await self.put_pin(upload.meta, upload.content()))
            except Exception as exc:
                results.append(exc)
        return results

    async def put_one(self, meta: PinMeta, content: AsyncIterator[bytes]) -> PinInfo:
        """``put_pin`` for a store whose primitive is :meth:`put_pins` (a commit)."""
        result = (await self.put_pins([Upload(meta=meta, content=lambda: content)]))[0]
        if isinstance(result, BaseException):
            raise result
        return result

    async def commit_batch(
        self,
        uploads: Sequence[Upload],
        *,
        stage: Callable[[PinMeta, Source], Awaitable[S]],
        commit: Callable[[list[tuple[int, S]], Results], Awaitable[None]],
        max_bytes: int,
    ) -> list[PinInfo | Exception]:
        """``put_pins`` for a store whose write is a commit: stage each pin (its stream's
        error is that pin's alone), then ``commit`` the staged ones -- one commit per
        ``max_bytes`` of them, normally one. ``commit`` fills in the result of every pin it is
        given; staged copies are discarded whatever happens."""
        results: Results = [None] * len(uploads)
        staged: list[tuple[int, S]] = []
        staged_bytes = 0

        async def flush() -> None:
            nonlocal staged, staged_bytes
            batch, staged, staged_bytes = staged, [], 0
            try:
                await commit(batch, results)
            finally:
                for _, pin in batch:
                    pin.discard()

        try:
            for index, upload in enumerate(uploads):
                source = Source(upload.content())
                try:
                    with self.translating(f"stage {upload.meta.cid}", source=source):
                        pin = await stage(upload.meta, source)
                except Exception as exc:
                    results[index] = exc
                    continue
                if staged and staged_bytes + pin.size > max_bytes:
                    await flush()
                staged.append((index, pin))
                staged_bytes += pin.size
            if staged:
                await flush()
        finally:
            for _, pin in staged:
                pin.discard()
        return [r if r is not None else errors.BackendError("not stored") for r in results]

    @abc.abstractmethod
    async def verify_pin(
        self, cid: str, *, deep: bool = False, listed: PinInfo | None = None
    ) -> PinInfo:
        """Check the stored pin (deep: re-read and re-hash); raise PinNotFound or BackendError.

        ``listed`` is what this pass's ``list_pins`` said of the pin: a backend may take the
        size from it instead of asking its server again.
        """

    @abc.abstractmethod
    async def remove_pin(self, cid: str) -> None:
        """Delete a pin; deleting an absent pin is not an error."""

    async def remove_pins(self, cids: Sequence[str]) -> list[errors.BackendError | None]:
        """Delete pins (a prune); per pin, None or the error ``remove_pin`` raised. The default
        removes them one by one; a store whose write is a commit removes them in one."""
        results: list[errors.BackendError | None] = []
        for cid in cids:
            try:
                await self.remove_pin(cid)
                results.append(None)
            except errors.BackendError as exc:
                results.append(exc)
        return results

    @abc.abstractmethod
    def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        """Stream a stored pin's CAR back."""

    async def providers(self) -> list[str]:
        """IPFS peers (multiaddrs with ``/p2p/<id>``) holding this backend's pins, for a node to
        fetch from when restoring; empty where the backend stores CARs or knows none."""
        return []

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
