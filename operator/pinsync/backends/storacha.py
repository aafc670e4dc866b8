"""Pins as uploads to a Storacha space (type ``storacha``).

Storacha's API is UCAN invocations in CAR-encoded DAG-CBOR. Reads (``upload/list``,
``upload/get``, ``space/blob/list``, …) go through its HTTP bridge (spec ``w3-ucan-bridge``):
``POST {endpoint}/bridge`` with JSON tasks ``[ability, space, args]``, turned into invocations
signed by an agent key derived from the ``X-Auth-Secret`` header with the ``Authorization``
header's delegation as proof; the receipts come back as JSON (:func:`bridge_out`). Writes cannot
go that way: the blob protocol concludes a task with a receipt the client signs and attaches,
which the bridge's JSON cannot carry, and ``store/add``, the upload the bridge could carry, is
gone from the service (upload-api 3.1.0). So writes are invocations made here
(:mod:`pinsync.backends.ucan`), signed by the same derived agent with the same delegation as
proof, ``POST {endpoint}/``. Both headers are what ``storacha bridge generate-tokens`` prints.

One pin is one upload: the exported CAR is spooled to a temporary file (a shard's digest must be
known before it is announced). A CAR up to ``shardSize`` is one shard, unchanged; a larger one
is cut at block boundaries into shard CARs, each a CARv1 with the CAR's own header
(:func:`plan_shards`; shards are ranges of the spool file, nothing is copied). Each shard is a
blob (:meth:`StorachaBackend.add_blob`), then the sharded-DAG index of the upload
(:func:`index_car`), registered with ``space/index/add``; then ``upload/add`` registers the
shards under the pin's root CID. A pin is present once ``upload/list`` shows it, so a put that
stops half way leaves no pin.

The CAR comes back as shard 1 followed by every later shard without its header: a deep verify
and ``fetch_pin`` read shards from the gateway (``GET {gateway}/ipfs/<shard>``, which serves a
CAR CID as the CAR's own bytes), check each against its CID and rebuild the CAR byte for byte.
A shard's CID is the sha256 of its bytes, so a shallow verify of a single-shard pin
(``upload/get``, ``space/blob/get/0/1``) reports size and sha256 without a download; for several
shards it reads the header length from the first bytes of shard 2.

Before any request, the two headers are checked against each other: the agent the secret
derives must be the audience of a delegation in the Authorization CAR (else ``AuthFailed``), and
that delegation must name the configured space (else ``SpaceNotDelegated``).

When the service refuses writes -- ``ServiceUnavailable``, as the hosted one has since
2026-05-15, or ``HandlerNotFound`` for a write it no longer has -- a write raises
:class:`errors.WritesDisabled`; reads go on.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import httpx
import libipld
from multiformats import CID, multibase, multihash, varint

from pinsync import car, reasons
from pinsync.backends import base, errors, httpservice, ucan

DEFAULT_ENDPOINT = "https://up.storacha.network"
DEFAULT_SERVICE = "did:web:up.storacha.network"
"""The upload service's DID, every invocation's audience (upload-client ``service.js``)."""
DEFAULT_GATEWAY = "https://storacha.link"
"""Storacha's own gateway (storacha/docs ``how-to/retrieve.mdx``, ``concepts/ipfs-gateways.md``:
path style ``/ipfs/<cid>``; 200 requests a minute per IP). It runs storacha/freeway, whose
``withCarBlockHandler`` answers a CAR CID with the stored CAR's bytes, before any
authorization. Not w3s.link, the older name of the same gateway, announced to close."""
SHARD_SIZE = 133_169_152
"""uploadCAR's default shard size in Storacha's own client (127 MiB)."""
PAGE = 1000
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
READS = frozenset(
    {
        "upload/list",
        "upload/get",
        "store/list",
        "store/get",
        "space/blob/list",
        "space/blob/get/0/1",
    }
)
"""Abilities that change nothing in the space: any other is a write."""
WRITES = ("space/blob/add", "space/index/add", "upload/add")
"""What a put invokes on the space (``ucan/conclude`` is on the agent's own DID)."""
ED25519_PUB = b"\xed\x01"
"""The multicodec prefix of an ed25519 public key in a did:key."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class StorachaConfig(base.Config):
    space: str
    endpoint: str
    service: str
    gateway: str
    shard_size: int


class StorachaError(errors.BackendError):
    """The service answered, but with an error receipt or with something that is not one."""

    reason = reasons.STORACHA_ERROR.name


def did_key(public: bytes) -> str:
    return "did:key:" + multibase.encode(ED25519_PUB + public, "base58btc")


def unbase(value: str) -> bytes:
    """A multibase value as the bridge headers carry it; padding tolerated (Storacha's docs show
    an ``X-Auth-Secret`` ending in ``=``, which strict base64url decoding refuses)."""
    value = value.strip()
    if value[:1] in ("u", "m"):
        value = value.rstrip("=")
    return bytes(multibase.decode(value))


def agent_key(secret: str) -> ucan.Signer:
    """The agent the bridge derives from ``X-Auth-Secret``: ed25519 whose seed is the sha256 of
    the multibase-decoded secret (w3infra ``bridge.js``, ``parseAuthSecretHeader``). The native
    client signs as this same agent, so the bridge tokens serve both."""
    return ucan.Signer(hashlib.sha256(unbase(secret)).digest())


def agent_of(secret: str) -> str:
    """The did:key of :func:`agent_key`."""
    return agent_key(secret).did


def car_blocks(data: bytes) -> Iterator[Any]:
    """The blocks of a (small, in-memory) CAR, decoded from DAG-CBOR."""
    _header, blocks = libipld.decode_car(data)
    yield from blocks.values()


def delegated(authorization: str, agent: str) -> dict[str, set[str]] | None:
    """Resource -> abilities, of the delegations to ``agent`` in the Authorization CAR; None
    when no delegation in it is to ``agent``. Raises ValueError if it is no delegation CAR."""
    found: dict[str, set[str]] | None = None
    for block in car_blocks(unbase(authorization)):
        model = block if isinstance(block, dict) else {}
        audience = model.get("aud")
        if not isinstance(audience, bytes) or not audience.startswith(ED25519_PUB):
            continue
        if did_key(audience[len(ED25519_PUB) :]) != agent:
            continue
        found = found or {}
        for capability in model.get("att") or ():
            if isinstance(capability, dict) and isinstance(capability.get("with"), str):
                can = capability.get("can")
                found.setdefault(capability["with"], set()).add(can if isinstance(can, str) else "")
    return found


def grants(abilities: set[str], ability: str) -> bool:
    """Whether ``abilities`` include ``ability``, by name or by a wildcard (``*``,
    ``space/blob/*`` covers ``space/blob/get/0/1``)."""
    parts = ability.split("/")
    wildcards = {"/".join(parts[:n]) + "/*" for n in range(1, len(parts))}
    return bool(abilities & ({"*", ability} | wildcards))


def bridge_out(answer: Any) -> Mapping[str, Any]:
    """The ``out`` (``{"ok": …}`` or ``{"error": …}``) of the first receipt in a bridge answer.

    The bridge answers a list, one receipt per task: today ``{"p": <outcome>, "s": <signature>}``
    (storacha/w3infra ``upload-api/functions/bridge.js``, ``buildBridgeReceipts``; storacha docs
    ``how-to/http-bridge``); an older bridge answered ``{"data": <outcome>, "sig": …}``. Raises
    LookupError or TypeError for anything else."""
    receipt = answer[0]
    outcome = receipt["p"] if "p" in receipt else receipt["data"]
    out = outcome["out"]
    if not isinstance(out, Mapping):
        raise TypeError("out is not a map")
    return out


def link(cid: str) -> dict[str, str]:
    """A CID as DAG-JSON writes a link (the bridge decodes the body as DAG-JSON)."""
    return {"/": cid}


def unlink(value: Any) -> str:
    if isinstance(value, Mapping) and isinstance(value.get("/"), str):
        return str(value["/"])
    raise StorachaError("a receipt holds no CID where one belongs")


def car_cid(digest: bytes) -> str:
    """The CID Storacha names a stored CAR by: CAR codec, sha256 of its bytes."""
    return str(CID("base32", 1, "car", multihash.wrap(digest, "sha2-256")))


def sha256_of(shard: str) -> str | None:
    """The hex sha256 a shard's CID carries (None for another hash)."""
    decoded = CID.decode(shard)
    return decoded.raw_digest.hex() if decoded.hashfun.name == "sha2-256" else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Shard:
    """One shard CAR of an upload: ``header`` (empty for the first shard, which starts with the
    CAR's own), then the bytes ``start``..``end`` of the spooled CAR."""

    start: int
    end: int
    header: bytes
    size: int
    digest: bytes

    @property
    def cid(self) -> str:
        return car_cid(self.digest)


def section(spool: Any, pos: int, cid: str) -> int | None:
    """Length (varint prefix included) of the CAR section at ``pos``; None at the end."""
    spool.seek(pos)
    head = spool.read(10)
    if not head:
        return None
    try:
        value, prefix, _ = varint.decode_raw(head)
    except ValueError:
        raise too_large(cid, "it is not a CARv1 that can be split into shards") from None
    return int(prefix + value)


def too_large(cid: str, why: str) -> errors.BackendError:
    return errors.BackendError(
        f"{cid}: the CAR is over shardSize and {why}", reason=reasons.CAR_TOO_LARGE
    )


def plan_shards(path: str, limit: int, cid: str) -> list[Shard]:
    """Cut the spooled CAR at block boundaries into shard CARs of at most ``limit`` bytes, each
    a CARv1 with the CAR's own header, as Storacha's client shards (blocking: run in a thread)."""
    shards: list[Shard] = []
    with open(path, "rb") as spool:
        header_len = section(spool, 0, cid)
        if header_len is None or header_len > limit:
            raise too_large(cid, "its header does not fit a shard")
        spool.seek(0)
        header = spool.read(header_len)
        start, pos, own, size = 0, header_len, b"", header_len
        digest = hashlib.sha256(header)
        while (length := section(spool, pos, cid)) is not None:
            if len(header) + length > limit:
                raise too_large(cid, f"a block of {length} bytes fits no shard")
            if size + length > limit:
                shards.append(
                    Shard(start=start, end=pos, header=own, size=size, digest=digest.digest())
                )
                start, own, size, digest = pos, header, len(header), hashlib.sha256(header)
            spool.seek(pos)
            block = spool.read(length)
            if len(block) != length:
                raise too_large(cid, "it ends inside a block")
            digest.update(block)
            size += length
            pos += length
        shards.append(Shard(start=start, end=pos, header=own, size=size, digest=digest.digest()))
    return shards


Slice = tuple[bytes, int, int]
"""A block's multihash, and the offset and length of its bytes in a shard."""


def index_slices(path: str, shards: Sequence[Shard], cid: str) -> list[list[Slice]]:
    """Where each block's bytes lie in its shard, per shard (blocking: run in a thread). Reads
    only the start of each section: its length and CID. Bytes that are no CARv1 (nothing Kubo
    exports; the contract tests' blobs) have no blocks to index: their shards are indexed whole."""
    try:
        return _slices(path, shards, cid)
    except (car.CarError, errors.BackendError, ValueError):
        return [[] for _ in shards]


def _slices(path: str, shards: Sequence[Shard], cid: str) -> list[list[Slice]]:
    found: list[list[Slice]] = []
    with open(path, "rb") as spool:
        for shard in shards:
            slices: list[Slice] = []
            shift = len(shard.header) - shard.start  # a later shard's bytes: its header first
            pos = shard.start if shard.header else (section(spool, 0, cid) or 0)
            while pos < shard.end and (length := section(spool, pos, cid)) is not None:
                spool.seek(pos)
                head = spool.read(min(length, 128))
                _, prefix, _ = varint.decode_raw(head)
                cid_len, code, digest, size = car.split_block(head[prefix:])
                mh = varint.encode(code) + varint.encode(size) + digest
                slices.append((mh, pos + prefix + cid_len + shift, length - prefix - cid_len))
                pos += length
            found.append(slices)
    return found


def index_car(root: str, shards: Sequence[Shard], slices: Sequence[Sequence[Slice]]) -> bytes:
    """The sharded-DAG index of an upload (``index/sharded/dag@0.1``, ``@storacha/blob-index``):
    a CAR whose root names the content and one block per shard, ``[shard multihash, [[block
    multihash, [offset, length]], …]]`` (a block's bytes, after its CID), the whole shard among
    its slices, as upload-client's ``sharding.js`` and ``index.js`` make them; shards and
    slices ordered by digest, as ``@storacha/blob-index`` writes them."""
    blocks = []
    for shard, own in sorted(zip(shards, slices, strict=True), key=lambda pair: pair[0].digest):
        mh = bytes([0x12, 32]) + shard.digest
        entries = {m: (offset, length) for m, offset, length in [(mh, 0, shard.size), *own]}
        ordered = sorted(entries.items(), key=lambda entry: bytes(multihash.unwrap(entry[0])))
        blocks.append(ucan.block([mh, [[m, list(where)] for m, where in ordered]]))
    body = {"content": ucan.Link.parse(root), "shards": [each.link for each in blocks]}
    top = ucan.block({"index/sharded/dag@0.1": body})
    return ucan.write_car([top.link], [top, *blocks])


async def shard_bytes(path: str, shard: Shard) -> AsyncIterator[bytes]:
    """A shard's bytes: its header, then its range of the spooled CAR."""
    if shard.header:
        yield shard.header
    spooled = await asyncio.to_thread(open, path, "rb")
    try:
        spooled.seek(shard.start)
        left = shard.end - shard.start
        while left > 0:
            block = await asyncio.to_thread(spooled.read, min(left, 1024 * 1024))
            if not block:
                raise StorachaError("the spooled CAR is shorter than planned")
            left -= len(block)
            yield block
    finally:
        spooled.close()


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def nothing() -> AsyncIterator[Mapping[str, Any]]:
    return
    yield  # an async generator that yields nothing


def digest_of(shard: str) -> dict[str, Any]:
    """A shard's multihash as DAG-JSON bytes (the bridge decodes the body as DAG-JSON)."""
    encoded = base64.b64encode(bytes(CID.decode(shard).digest)).decode().rstrip("=")
    return {"/": {"bytes": encoded}}


def json_bytes(value: Any) -> bytes | None:
    """DAG-JSON bytes (``{"/": {"bytes": <base64>}}``) as bytes; None for anything else."""
    inner = value.get("/") if isinstance(value, Mapping) else None
    text = inner.get("bytes") if isinstance(inner, Mapping) else None
    if not isinstance(text, str):
        return None
    return base64.b64decode(text + "=" * (-len(text) % 4))


def car_of(digest: bytes | None) -> str | None:
    """The CAR CID a blob's sha256 multihash names (shards are CARs); None for another hash."""
    if digest is None or digest[:2] != bytes([0x12, 32]) or len(digest) != 34:
        return None
    return car_cid(digest[2:])


class HeaderSkip:
    """Drops the CAR header section at the start of a byte stream (when ``active``)."""

    def __init__(self, active: bool) -> None:
        self.pending = bytearray()
        self.length: int | None = None if active else 0
        self.left = 0

    def feed(self, chunk: bytes) -> bytes:
        if self.length is None:
            self.pending += chunk
            try:
                value, prefix, _ = varint.decode_raw(bytes(self.pending[:10]))
            except ValueError:
                if len(self.pending) < 10:
                    return b""  # the varint is not complete yet
                raise errors.Damaged("a shard does not start with a CAR header") from None
            self.length = self.left = int(prefix + value)
            chunk, self.pending = bytes(self.pending), bytearray()
        if self.left >= len(chunk):
            self.left -= len(chunk)
            return b""
        rest, self.left = chunk[self.left :], 0
        return rest


class StorachaBackend(httpservice.HttpService):
    error: ClassVar[type[errors.BackendError]] = StorachaError
    credential_keys: ClassVar[base.CredentialKeys] = base.CredentialKeys(
        alternatives=(frozenset({"xAuthSecret", "authorization"}),)
    )

    conf: StorachaConfig

    @classmethod
    def validate(cls, spec: Mapping[str, Any], credentials: base.Credentials) -> StorachaConfig:
        fields = base.Fields("storacha", spec)
        space = fields.text("spaceDid", empty=False).strip()
        if not space.startswith("did:key:"):
            raise fields.invalid("spaceDid", "must be a did:key: DID")
        if not fields.text("serviceDid", DEFAULT_SERVICE).startswith("did:"):
            raise fields.invalid("serviceDid", "must be a DID")
        return StorachaConfig(
            space=space,
            endpoint=fields.url("endpoint", DEFAULT_ENDPOINT),
            service=fields.text("serviceDid", DEFAULT_SERVICE, empty=False).strip(),
            gateway=fields.url("gateway", DEFAULT_GATEWAY),
            shard_size=fields.integer("shardSize", SHARD_SIZE, low=1024, high=4 * 2**30),
        )

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        self._checked = False
        self._abilities: set[str] = set()

    # -- plumbing ---------------------------------------------------------------------------------

    def make_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=TIMEOUT)

    def check_tokens(self) -> None:
        """The secret's agent holds a delegation on the space (see the module docstring)."""
        if self._checked:
            return
        secret = self.credentials.get("xAuthSecret") or ""
        authorization = self.credentials.get("authorization") or ""
        try:
            spaces = delegated(authorization, agent_of(secret))
        except Exception:  # multibase, varint, CBOR: no detail, it would quote the token
            raise errors.AuthFailed(
                "xAuthSecret or authorization is not what `storacha bridge generate-tokens` prints"
            ) from None
        if spaces is None:
            raise errors.AuthFailed(
                "the authorization delegates to another agent than xAuthSecret's: "
                "use the two values one `storacha bridge generate-tokens` printed"
            )
        if self.conf.space not in spaces and "ucan:*" not in spaces:
            raise errors.LocationNotFound(
                f"the bridge tokens grant nothing on space {self.conf.space}",
                reason=reasons.SPACE_NOT_DELEGATED,
            )
        self._abilities = spaces.get(self.conf.space, set()) | spaces.get("ucan:*", set())
        self._checked = True

    def granted(self, ability: str) -> bool:
        """Whether the tokens grant ``ability`` on the space. Tokens made for the legacy upload
        path (``store/*``, ``upload/*``) still read: the blob abilities are used where granted."""
        self.check_tokens()
        return grants(self._abilities, ability)

    def raise_for_status(self, response: httpx.Response, what: str) -> None:
        if response.is_success:
            return
        code = response.status_code
        shown = f"HTTP {code}"
        match code:
            case 401 | 403:
                raise errors.AuthFailed(f"{what}: the bridge rejected the tokens ({shown})")
            case 404:
                raise errors.LocationNotFound(f"{what}: no bridge at the endpoint ({shown})")
            case 413:
                raise errors.BackendError(f"{what}: {shown}", reason=reasons.CAR_TOO_LARGE)
            case 429:
                wait = errors.retry_after(response.headers.get("Retry-After"))
                if wait is None:  # no (readable) Retry-After: RateLimited's default wait
                    raise errors.RateLimited(f"{what}: {shown}")
                raise errors.RateLimited(f"{what}: {shown}", retry_after=wait)
        raise StorachaError(f"{what}: {shown}")

    async def invoke(self, ability: str, args: Mapping[str, Any], what: str) -> Any:
        """One task through the bridge; its receipt's ``ok``, or the error it maps to."""
        self.check_tokens()
        headers = {
            "X-Auth-Secret": (self.credentials.get("xAuthSecret") or "").strip(),
            "Authorization": (self.credentials.get("authorization") or "").strip(),
        }
        body = {"tasks": [[ability, self.conf.space, args]]}
        url = f"{self.conf.endpoint}/bridge"
        writing = ability not in READS
        with self.translating(what, writing=writing):
            response = await self.client().post(url, json=body, headers=headers)
        self.raise_for_status(response, what)
        try:
            out = bridge_out(response.json())
        except (ValueError, LookupError, TypeError):
            raise StorachaError(f"{what}: the answer is not a list of bridge receipts") from None
        return self.ok_of(out, what, writing=writing)

    def ok_of(self, out: Mapping[str, Any], what: str, *, writing: bool) -> Any:
        """A receipt's ``ok``, or the error its ``error`` maps to."""
        if "ok" in out:
            return out["ok"]
        failure = out.get("error")
        self.raise_failure(failure if isinstance(failure, Mapping) else {}, what, writing=writing)

    def agent(self) -> ucan.Signer:
        return agent_key(self.credentials.get("xAuthSecret") or "")

    def proofs(self) -> list[ucan.Block]:
        """The Authorization delegation's blocks: the proof of every native invocation."""
        try:
            return ucan.delegation(unbase(self.credentials.get("authorization") or ""))
        except Exception:  # checked by check_tokens already; no detail, it would quote the token
            raise errors.AuthFailed("the authorization is not a delegation archive") from None

    async def execute(self, invocation: ucan.Invocation, what: str) -> ucan.Receipt:
        """One invocation straight to the service (``POST {endpoint}/``, ucanto's CAR transport):
        the write path, whose attached receipts the bridge's JSON cannot carry."""
        self.check_tokens()
        headers = {"Content-Type": ucan.CAR_TYPE, "Accept": ucan.CAR_TYPE}
        with self.translating(what, writing=True):
            response = await self.client().post(
                f"{self.conf.endpoint}/", content=ucan.message([invocation]), headers=headers
            )
        self.raise_for_status(response, what)
        try:
            return ucan.receipts(response.content, [invocation])[0]
        except Exception:  # a CAR, CBOR or schema problem: the answer is no receipt
            raise StorachaError(f"{what}: the answer is not a CAR of receipts") from None

    async def native(
        self, ability: str, args: Mapping[str, Any], what: str
    ) -> tuple[Any, ucan.Receipt]:
        """``ability`` on the space, signed here by the agent with the delegation as proof; its
        ``ok`` (or the error it maps to) and the whole receipt (its effects)."""
        self.check_tokens()
        invocation = ucan.invocation(
            self.agent(), self.conf.service, ability, self.conf.space, args, proofs=self.proofs()
        )
        receipt = await self.execute(invocation, what)
        return self.ok_of(receipt.out, what, writing=True), receipt

    def raise_failure(self, failure: Mapping[str, Any], what: str, *, writing: bool) -> None:
        name = str(failure.get("name") or "Error")
        said = f"{name}: {httpservice.shown(str(failure.get('message') or ''))}"
        if writing and name == "ServiceUnavailable":
            # How the hosted service has refused every write since 2026-05-15 (upload-api's
            # disable-writes.js): nothing to retry until Storacha turns writes back on.
            raise errors.WritesDisabled(f"{what}: the service accepts no writes ({said})")
        if writing and name == "HandlerNotFound":
            # ucanto's answer for an ability the service does not implement (store/add since
            # upload-api 3.1.0): this write is gone for good, not a missing pin.
            raise errors.WritesDisabled(
                f"{what}: the service no longer accepts this write ({said})"
            )
        if name == "HandlerNotFound":
            raise StorachaError(f"{what}: the service does not offer this ({said})")
        if name == "Unauthorized":
            raise errors.AuthFailed(f"{what}: the service refused the delegation ({said})")
        if name.endswith("NotFound"):
            raise errors.PinNotFound(f"{what}: {said}")
        if name in ("InsufficientStorage", "NoStorageProvider"):
            raise errors.StorageFull(f"{what}: {said}", reason=reasons.QUOTA_EXCEEDED)
        if name == "RateLimited":
            raise errors.RateLimited(f"{what}: {said}")
        raise StorachaError(f"{what}: {said}")

    async def listing(self, ability: str) -> AsyncIterator[Mapping[str, Any]]:
        """Every item of ``upload/list`` or ``store/list``, over all pages."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            args: dict[str, Any] = {"size": PAGE}
            if cursor is not None:
                args["cursor"] = cursor
            page = await self.invoke(ability, args, ability)
            results = page.get("results") if isinstance(page, Mapping) else None
            if not isinstance(results, list):
                raise StorachaError(f"{ability}: the answer is not a list")
            for item in results:
                if isinstance(item, Mapping):
                    yield item
            following = page.get("cursor")
            if not results or not isinstance(following, str) or following in seen:
                return
            seen.add(following)
            cursor = following

    async def shards(self, cid: str) -> list[str]:
        answer = await self.invoke("upload/get", {"root": link(cid)}, f"look up {cid}")
        shards = answer.get("shards") if isinstance(answer, Mapping) else None
        return [unlink(shard) for shard in shards or ()]

    # -- the protocol -----------------------------------------------------------------------------

    async def health(self) -> None:
        """The tokens list the space's uploads: reachable, tokens accepted, space delegated.
        No write probe: an upload is visible in the space and counted against its plan."""
        await self.invoke("upload/list", {"size": 1}, "list uploads")

    async def sizes(self) -> dict[str, int]:
        """Shard CID -> bytes, for every blob in the space (``space/blob/list``) and every CAR
        stored the legacy way (``store/list``: spaces written before the blob protocol)."""
        sizes: dict[str, int] = {}
        blobs = self.granted("space/blob/list")
        async for item in self.listing("space/blob/list") if blobs else nothing():
            blob = item.get("blob")
            if isinstance(blob, Mapping):
                shard, size = car_of(json_bytes(blob.get("digest"))), blob.get("size")
                if shard is not None and isinstance(size, int) and not isinstance(size, bool):
                    sizes[shard] = size
        legacy = self.granted("store/list") or not blobs
        async for item in self.listing("store/list") if legacy else nothing():
            size = item.get("size")
            if isinstance(size, int) and not isinstance(size, bool):
                sizes[unlink(item.get("link"))] = size
        return sizes

    async def pins_with_sizes(self) -> AsyncIterator[base.PinInfo]:
        """Every upload as a pin; size and sha256 those of its shard (None for several shards)."""
        sizes = await self.sizes()
        async for item in self.listing("upload/list"):
            shards = [unlink(shard) for shard in item.get("shards") or ()]
            if len(shards) == 1:
                size, sha256 = sizes.get(shards[0]), sha256_of(shards[0])
            else:  # later shards repeat the header, whose length only their bytes tell
                size = sha256 = None
            yield base.PinInfo(cid=unlink(item.get("root")), size=size, sha256=sha256)

    async def usage(self) -> base.Usage:
        """Uploads, and the bytes of the CARs stored in the space."""
        count = 0
        async for _ in self.listing("upload/list"):
            count += 1
        return base.Usage(bytes=sum((await self.sizes()).values()), objects=count)

    async def shard_size(self, shard: str) -> int:
        what = f"look up shard {shard}"
        blobs = self.granted("space/blob/get/0/1")
        try:
            if not blobs:
                raise errors.PinNotFound(what)  # legacy tokens: store/get only
            answer = await self.invoke("space/blob/get/0/1", {"digest": digest_of(shard)}, what)
            blob = answer.get("blob") if isinstance(answer, Mapping) else None
            size = blob.get("size") if isinstance(blob, Mapping) else None
        except errors.PinNotFound:  # a CAR stored the legacy way
            try:
                answer = await self.invoke("store/get", {"link": link(shard)}, what)
            except errors.PinNotFound:
                if blobs:
                    raise
                raise errors.PermissionDenied(
                    f"{what}: not stored the legacy way, and the tokens do not grant "
                    "space/blob/get/0/1"
                ) from None
            size = answer.get("size") if isinstance(answer, Mapping) else None
        if not isinstance(size, int) or isinstance(size, bool):
            raise StorachaError(f"{what}: the answer has no size")
        return size

    async def list_pins(self) -> AsyncIterator[base.PinInfo]:
        async for info in self.pins_with_sizes():
            yield info

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
        """The blob protocol, as Storacha's own client uploads (upload-client ``uploadCAR``):
        each shard, then the sharded-DAG index, as blobs (:meth:`add_blob`); ``space/index/add``
        of the index; ``upload/add`` of the root and its shards."""
        missing = [ability for ability in WRITES if not self.granted(ability)]
        if missing:
            raise errors.PermissionDenied(
                f"put {meta.cid}: the tokens do not grant {', '.join(missing)} on the space: "
                "generate them with the --can flags README lists"
            )
        source = base.Source(content)
        fd, path = tempfile.mkstemp(prefix="pinsync-storacha-", suffix=".car")
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as spool:
                async for chunk in source:
                    size += len(chunk)
                    digest.update(chunk)
                    spool.write(chunk)
            if size <= self.conf.shard_size:
                shards = [Shard(start=0, end=size, header=b"", size=size, digest=digest.digest())]
            else:
                shards = await asyncio.to_thread(plan_shards, path, self.conf.shard_size, meta.cid)
            slices = await asyncio.to_thread(index_slices, path, shards, meta.cid)
            for shard in shards:
                await self.add_blob(meta.cid, shard.digest, shard.size, shard_bytes(path, shard))
            index = index_car(meta.cid, shards, slices)
            index_digest = hashlib.sha256(index).digest()
            await self.add_blob(meta.cid, index_digest, len(index), once(index))
            args = {"index": ucan.Link.parse(car_cid(index_digest))}
            await self.native("space/index/add", args, f"index {meta.cid}")
            added = {
                "root": ucan.Link.parse(meta.cid),
                "shards": [ucan.Link.parse(shard.cid) for shard in shards],
            }
            await self.native("upload/add", added, f"register {meta.cid}")
        finally:
            os.unlink(path)
        return base.PinInfo(cid=meta.cid, size=size, sha256=digest.hexdigest())

    async def add_blob(
        self, cid: str, digest: bytes, size: int, body: AsyncIterator[bytes]
    ) -> None:
        """One blob into the space (upload-client ``blob/add.js``): ``space/blob/add`` answers
        with effects -- ``blob/allocate`` (its receipt holds the PUT address, none if the blob
        is there already), ``http/put``, ``blob/accept``; the bytes are PUT, and the ``http/put``
        task is concluded (``ucan/conclude``) with a receipt signed by the key upload-api derives
        from the blob's digest for that task (its ``deriveDID``), whereupon the service accepts
        the blob."""
        what = f"upload {cid}"
        blob = {"digest": bytes([0x12, 32]) + digest, "size": size}
        _, answer = await self.native("space/blob/add", {"blob": blob}, what)
        tasks = {str(capability.get("can")): task for task, capability in answer.tasks()}
        allocate = tasks.get("blob/allocate") or tasks.get("web3.storage/blob/allocate")
        put = tasks.get("http/put")
        allocated = answer.embedded(allocate) if allocate is not None else None
        if put is None or allocated is None:
            raise StorachaError(f"{what}: space/blob/add named no allocation")
        address = self.ok_of(allocated.out, what, writing=True).get("address")
        put_done = answer.embedded(put)
        if put_done is not None and "ok" in put_done.out:
            return  # the space has it already
        if isinstance(address, Mapping):
            await self.send(cid, address, size, body)
        provider = ucan.Signer(digest)
        done = ucan.receipt(provider, ucan.Link(put), {"ok": {}})
        agent = self.agent()
        conclude = ucan.invocation(
            agent,
            self.conf.service,
            "ucan/conclude",
            agent.did,
            {"receipt": done.link},
            attached=[done],
            expires=None,
        )
        concluded = await self.execute(conclude, what)
        self.ok_of(concluded.out, what, writing=True)

    async def send(
        self, cid: str, address: Mapping[str, Any], size: int, body: AsyncIterator[bytes]
    ) -> None:
        """PUT a blob's bytes to the address ``blob/allocate`` answered: its headers (the
        checksum the URL is signed for), and the length, which a streamed body does not tell."""
        url, headers = address.get("url"), address.get("headers")
        if not isinstance(url, str) or not isinstance(headers, Mapping):
            raise StorachaError(f"upload {cid}: blob/allocate named no upload URL")
        what = f"upload {cid}"
        sent = {str(k).lower(): str(v) for k, v in headers.items()}
        sent["content-length"] = str(size)
        with self.translating(what, writing=True):
            response = await self.client().put(url, content=body, headers=sent)
        if not response.is_success:
            raise StorachaError(f"{what}: the storage node answered HTTP {response.status_code}")

    async def verify_pin(
        self, cid: str, *, deep: bool = False, listed: base.PinInfo | None = None
    ) -> base.PinInfo:
        shards = await self.shards(cid)
        if not shards:
            raise errors.Damaged(f"{cid}: the upload has no shards")
        sizes = [await self.shard_size(shard) for shard in shards]
        if not deep:
            if len(shards) == 1:
                return base.PinInfo(cid=cid, size=sizes[0], sha256=sha256_of(shards[0]))
            # The CAR is shard 0 plus every later shard without its copy of the header.
            header = await self.header_length(cid, shards[1])
            return base.PinInfo(cid=cid, size=sizes[0] + sum(n - header for n in sizes[1:]))
        digest, read = hashlib.sha256(), 0
        for index, shard in enumerate(shards):
            # Each shard is checked against its own CID (a sha256 multihash), not a sidecar.
            own = base.Hashing(self.read_shard(cid, shard))
            skip = HeaderSkip(index > 0)
            async for chunk in own:
                rest = skip.feed(chunk)
                digest.update(rest)
                read += len(rest)
            if own.sha256 != sha256_of(shard):
                raise errors.Damaged(
                    f"{cid}: the gateway's copy of shard {shard} does not hash to its CID"
                )
        return base.PinInfo(cid=cid, size=read, sha256=digest.hexdigest())

    async def header_length(self, cid: str, shard: str) -> int:
        """Bytes of the CAR header section a shard begins with (read from its first bytes)."""
        skip = HeaderSkip(True)
        async for chunk in self.read_shard(cid, shard):
            skip.feed(chunk)
            if skip.length is not None:
                return skip.length
        raise errors.Damaged(f"{cid}: shard {shard} holds no CAR header")

    async def remove_pin(self, cid: str) -> None:
        try:
            shards = await self.shards(cid)
        except errors.PinNotFound:
            return
        await self.invoke("upload/remove", {"root": link(cid)}, f"remove {cid}")
        for shard in shards:
            what = f"remove shard {shard}"
            try:
                if self.granted("space/blob/remove"):
                    await self.invoke("space/blob/remove", {"digest": digest_of(shard)}, what)
                    continue
            except errors.PinNotFound:
                pass  # not a blob: a CAR stored the legacy way, or removed meanwhile
            try:
                await self.invoke("store/remove", {"link": link(shard)}, what)
            except errors.PinNotFound:
                pass  # removed meanwhile

    async def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        """The CAR as it was put: shard 0, then each later shard without its header."""
        for index, shard in enumerate(await self.shards(cid)):
            skip = HeaderSkip(index > 0)
            async for chunk in self.read_shard(cid, shard):
                rest = skip.feed(chunk)
                if rest:
                    yield rest

    async def read_shard(self, cid: str, shard: str) -> AsyncIterator[bytes]:
        what = f"fetch {cid}"
        url = f"{self.conf.gateway}/ipfs/{shard}"
        with self.translating(what):
            async with self.client().stream("GET", url) as response:
                if response.status_code == 404:
                    raise errors.PinNotFound(f"{what}: the gateway has no shard {shard}")
                if not response.is_success:
                    raise StorachaError(f"{what}: the gateway answered HTTP {response.status_code}")
                async for chunk in response.aiter_bytes():
                    yield chunk


def encode_secret(secret: bytes) -> str:
    """A secret as ``X-Auth-Secret`` carries it (base64url multibase), for tools and tests."""
    return "u" + base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
