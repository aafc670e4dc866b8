"""Pins as uploads to a Storacha space (type ``storacha``), through Storacha's HTTP bridge.

Storacha's API is UCAN invocations in CAR-encoded DAG-CBOR; its HTTP bridge (spec
``w3-ucan-bridge``) turns ``POST {endpoint}/bridge`` with JSON tasks ``[ability, space, args]``
into such invocations, signed by an agent key derived from the ``X-Auth-Secret`` header with the
``Authorization`` header's delegation as proof, and answers the receipts as JSON. Both headers
are what ``storacha bridge generate-tokens`` prints: two opaque strings in a Secret, no key
management here, no UCAN signing in Python.

One pin is one upload: the exported CAR is spooled to a temporary file (a shard's CID, the CAR
codec over its sha256, must be known before it is announced). A CAR up to ``shardSize`` is one
shard, unchanged; a larger one is cut at block boundaries into shard CARs, each a CARv1 with
the CAR's own header (:func:`plan_shards`; shards are ranges of the spool file, nothing is copied).
Each shard is announced with ``store/add`` and PUT to the presigned URL the answer names (unless
the service already has it); then ``upload/add`` registers the shards under the pin's root CID.
A pin is present once ``upload/list`` shows it, so a put that stops half way leaves no pin.

The CAR comes back as shard 1 followed by every later shard without its header: a deep verify
and ``fetch_pin`` read shards from the gateway (``GET {gateway}/ipfs/<shard>``, which serves a
CAR CID as the CAR's own bytes), check each against its CID and rebuild the CAR byte for byte.
A shard's CID is the sha256 of its bytes, so a shallow verify of a single-shard pin
(``upload/get``, ``store/get``) reports size and sha256 without a download; for several shards
it reads the header length from the first bytes of shard 2.

Before any request, the two headers are checked against each other: the agent the secret
derives must be the audience of a delegation in the Authorization CAR (else ``AuthFailed``), and
that delegation must name the configured space (else ``SpaceNotDelegated``).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, ClassVar

import httpx
import libipld
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from multiformats import CID, multibase, multihash, varint

from pinsync import reasons
from pinsync.backends import base, errors

DEFAULT_ENDPOINT = "https://up.storacha.network"
DEFAULT_GATEWAY = "https://storacha.link"
"""Storacha's own gateway (storacha/docs ``how-to/retrieve.mdx``, ``concepts/ipfs-gateways.md``:
path style ``/ipfs/<cid>``; 200 requests a minute per IP). It runs storacha/freeway, whose
``withCarBlockHandler`` answers a CAR CID with the stored CAR's bytes, before any
authorization. Not w3s.link, the older name of the same gateway, announced to close."""
SHARD_SIZE = 133_169_152
"""uploadCAR's default shard size in Storacha's own client (127 MiB)."""
PAGE = 1000
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
SHOWN = 200
READS = frozenset({"upload/list", "upload/get", "store/list", "store/get"})
"""Abilities that change nothing in the space: any other is a write."""
ED25519_PUB = b"\xed\x01"
"""The multicodec prefix of an ed25519 public key in a did:key."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class StorachaConfig(base.Config):
    space: str
    endpoint: str
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


def agent_of(secret: str) -> str:
    """The did:key of the agent the bridge derives from ``X-Auth-Secret``: ed25519 whose seed is
    the sha256 of the multibase-decoded secret (the bridge spec's ``deriveSigner``)."""
    seed = hashlib.sha256(unbase(secret)).digest()
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return did_key(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def car_blocks(data: bytes) -> Iterator[Any]:
    """The blocks of a (small, in-memory) CAR, decoded from DAG-CBOR."""
    _header, blocks = libipld.decode_car(data)
    yield from blocks.values()


def delegated_spaces(authorization: str, agent: str) -> set[str] | None:
    """The resources delegations to ``agent`` in the Authorization CAR name; None when no
    delegation in it is to ``agent``. Raises ValueError if it is no delegation CAR at all."""
    spaces: set[str] | None = None
    for block in car_blocks(unbase(authorization)):
        ucan = block if isinstance(block, dict) else {}
        audience = ucan.get("aud")
        if not isinstance(audience, bytes) or not audience.startswith(ED25519_PUB):
            continue
        if did_key(audience[len(ED25519_PUB) :]) != agent:
            continue
        spaces = spaces or set()
        for capability in ucan.get("att") or ():
            if isinstance(capability, dict) and isinstance(capability.get("with"), str):
                spaces.add(capability["with"])
    return spaces


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


class StorachaBackend(base.Backend):
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
        return StorachaConfig(
            space=space,
            endpoint=fields.url("endpoint", DEFAULT_ENDPOINT),
            gateway=fields.url("gateway", DEFAULT_GATEWAY),
            shard_size=fields.integer("shardSize", SHARD_SIZE, low=1024, high=4 * 2**30),
        )

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        self._client: httpx.AsyncClient | None = None
        self._checked = False

    # -- plumbing ---------------------------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def check_tokens(self) -> None:
        """The secret's agent holds a delegation on the space (see the module docstring)."""
        if self._checked:
            return
        secret = self.credentials.get("xAuthSecret") or ""
        authorization = self.credentials.get("authorization") or ""
        try:
            spaces = delegated_spaces(authorization, agent_of(secret))
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
        self._checked = True

    def translate(self, exc: Exception, what: str, *, writing: bool = False) -> errors.BackendError:
        if isinstance(exc, httpx.TransportError):
            return errors.Unreachable(f"{what}: {type(exc).__name__}")
        return StorachaError(f"{what}: {type(exc).__name__}")

    @staticmethod
    def shown(text: str) -> str:
        text = "".join(c if c.isprintable() else " " for c in text).strip()
        return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"

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
        if "ok" in out:
            return out["ok"]
        failure = out.get("error")
        self.raise_failure(failure if isinstance(failure, Mapping) else {}, what, writing=writing)

    def raise_failure(self, failure: Mapping[str, Any], what: str, *, writing: bool) -> None:
        name = str(failure.get("name") or "Error")
        said = f"{name}: {self.shown(str(failure.get('message') or ''))}"
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
        """Shard CID -> bytes, for every CAR stored in the space (``store/list``)."""
        sizes: dict[str, int] = {}
        async for item in self.listing("store/list"):
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
        answer = await self.invoke("store/get", {"link": link(shard)}, f"look up shard {shard}")
        size = answer.get("size") if isinstance(answer, Mapping) else None
        if not isinstance(size, int) or isinstance(size, bool):
            raise StorachaError(f"look up shard {shard}: the answer has no size")
        return size

    async def list_pins(self) -> AsyncIterator[base.PinInfo]:
        async for info in self.pins_with_sizes():
            yield info

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
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
            for shard in shards:
                args = {"link": link(shard.cid), "size": shard.size}
                answer = await self.invoke("store/add", args, f"announce {meta.cid}")
                if isinstance(answer, Mapping) and answer.get("status") == "upload":
                    await self.send(meta.cid, path, shard, answer)
            added = {"root": link(meta.cid), "shards": [link(shard.cid) for shard in shards]}
            await self.invoke("upload/add", added, f"register {meta.cid}")
        finally:
            os.unlink(path)
        return base.PinInfo(cid=meta.cid, size=size, sha256=digest.hexdigest())

    async def send(self, cid: str, path: str, shard: Shard, target: Mapping[str, Any]) -> None:
        """PUT one shard (its header, then its range of the spooled CAR) to the presigned URL
        ``store/add`` answered."""
        url, headers = target.get("url"), target.get("headers")
        if not isinstance(url, str) or not isinstance(headers, Mapping):
            raise StorachaError(f"upload {cid}: store/add named no upload URL")

        async def body() -> AsyncIterator[bytes]:
            if shard.header:
                yield shard.header
            spooled = await asyncio.to_thread(open, path, "rb")
            try:
                spooled.seek(shard.start)
                left = shard.end - shard.start
                while left > 0:
                    block = await asyncio.to_thread(spooled.read, min(left, 1024 * 1024))
                    if not block:
                        raise StorachaError(
                            f"upload {cid}: the spooled CAR is shorter than planned"
                        )
                    left -= len(block)
                    yield block
            finally:
                spooled.close()

        what = f"upload {cid}"
        with self.translating(what, writing=True):
            response = await self.client().put(
                url, content=body(), headers={str(k): str(v) for k, v in headers.items()}
            )
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
            own = hashlib.sha256()
            skip = HeaderSkip(index > 0)
            async for chunk in self.read_shard(cid, shard):
                own.update(chunk)
                rest = skip.feed(chunk)
                digest.update(rest)
                read += len(rest)
            if own.hexdigest() != sha256_of(shard):
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
            try:
                await self.invoke("store/remove", {"link": link(shard)}, f"remove shard {shard}")
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
