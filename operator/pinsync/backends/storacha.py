"""Pins as uploads to a Storacha space (type ``storacha``), through Storacha's HTTP bridge.

Storacha's API is UCAN invocations in CAR-encoded DAG-CBOR; its HTTP bridge (spec
``w3-ucan-bridge``) turns ``POST {endpoint}/bridge`` with JSON tasks ``[ability, space, args]``
into such invocations, signed by an agent key derived from the ``X-Auth-Secret`` header with the
``Authorization`` header's delegation as proof, and answers the receipts as JSON. Both headers
are what ``storacha bridge generate-tokens`` prints: two opaque strings in a Secret, no key
management here, no UCAN signing in Python.

One pin is one upload: the exported CAR is spooled to a temporary file (its CID, the CAR
codec over its sha256, must be known before it is announced), announced with ``store/add``,
PUT to the presigned URL the answer names (unless the service already has it), then registered
with ``upload/add`` under the pin's root CID. A pin is present once ``upload/list`` shows it, so
a put that stops half way leaves no pin. CARs over ``shardSize`` are refused (``CarTooLarge``):
splitting a CAR into several valid shard CARs is not written yet.

Because the shard's CID is the sha256 of the stored bytes, a shallow verify (``upload/get``,
then ``store/get`` of the shard for its size) reports size and sha256 without a download; a deep
verify and ``fetch_pin`` read the shard back from the gateway (``GET {gateway}/ipfs/<shard>``,
which serves a CAR CID as the CAR's own bytes) and re-hash it.

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
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import httpx
import libipld
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from multiformats import CID, multibase, multihash

from pinsync import reasons
from pinsync.backends import base, errors

DEFAULT_ENDPOINT = "https://up.storacha.network"
DEFAULT_GATEWAY = "https://w3s.link"
SHARD_SIZE = 133_169_152
"""uploadCAR's default shard size in Storacha's own client (127 MiB)."""
PAGE = 1000
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
SHOWN = 200
ED25519_PUB = b"\xed\x01"
"""The multicodec prefix of an ed25519 public key in a did:key."""
ABILITIES = ("store/add", "upload/add", "upload/list", "upload/get")
"""What the tokens must grant for a put and a listing (remove needs upload/remove as well)."""


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


def agent_of(secret: str) -> str:
    """The did:key of the agent the bridge derives from ``X-Auth-Secret``: ed25519 whose seed is
    the sha256 of the multibase-decoded secret (the bridge spec's ``deriveSigner``)."""
    seed = hashlib.sha256(multibase.decode(secret.strip())).digest()
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
    for block in car_blocks(multibase.decode(authorization.strip())):
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
        with self.translating(what, writing=ability not in ("upload/list", "upload/get")):
            response = await self.client().post(url, json=body, headers=headers)
        self.raise_for_status(response, what)
        try:
            receipts = response.json()
            out = receipts[0]["data"]["out"]
        except (ValueError, LookupError, TypeError):
            raise StorachaError(f"{what}: the answer is not a list of bridge receipts") from None
        if isinstance(out, Mapping) and "ok" in out:
            return out["ok"]
        failure = out.get("error") if isinstance(out, Mapping) else None
        self.raise_failure(failure if isinstance(failure, Mapping) else {}, what)

    def raise_failure(self, failure: Mapping[str, Any], what: str) -> None:
        name = str(failure.get("name") or "Error")
        said = f"{name}: {self.shown(str(failure.get('message') or ''))}"
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
        """Every upload as a pin, its size the sum of its stored shards (None if one is not)."""
        sizes = await self.sizes()
        async for item in self.listing("upload/list"):
            shards = [unlink(shard) for shard in item.get("shards") or ()]
            known = [sizes.get(shard) for shard in shards]
            size = None if None in known else sum(k or 0 for k in known)
            sha256 = sha256_of(shards[0]) if len(shards) == 1 else None
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
                    if size > self.conf.shard_size:
                        raise errors.BackendError(
                            f"{meta.cid}: the CAR is over shardSize ({self.conf.shard_size} "
                            "bytes); uploads in several shards are not supported yet",
                            reason=reasons.CAR_TOO_LARGE,
                        )
                    digest.update(chunk)
                    spool.write(chunk)
            shard = car_cid(digest.digest())
            args = {"link": link(shard), "size": size}
            answer = await self.invoke("store/add", args, f"announce {meta.cid}")
            if isinstance(answer, Mapping) and answer.get("status") == "upload":
                await self.send(meta.cid, path, answer)
            added = {"root": link(meta.cid), "shards": [link(shard)]}
            await self.invoke("upload/add", added, f"register {meta.cid}")
        finally:
            os.unlink(path)
        return base.PinInfo(cid=meta.cid, size=size, sha256=digest.hexdigest())

    async def send(self, cid: str, path: str, target: Mapping[str, Any]) -> None:
        """PUT the spooled CAR to the presigned URL ``store/add`` answered."""
        url, headers = target.get("url"), target.get("headers")
        if not isinstance(url, str) or not isinstance(headers, Mapping):
            raise StorachaError(f"upload {cid}: store/add named no upload URL")

        async def body() -> AsyncIterator[bytes]:
            spooled = await asyncio.to_thread(open, path, "rb")
            try:
                while block := await asyncio.to_thread(spooled.read, 1024 * 1024):
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
        if len(shards) != 1:
            raise errors.Damaged(f"{cid}: the upload has {len(shards)} shards, pinsync puts one")
        size = await self.shard_size(shards[0])
        if not deep:
            return base.PinInfo(cid=cid, size=size, sha256=sha256_of(shards[0]))
        digest, read = hashlib.sha256(), 0
        async for chunk in self.read_shard(cid, shards[0]):
            digest.update(chunk)
            read += len(chunk)
        if read != size or digest.hexdigest() != sha256_of(shards[0]):
            raise errors.Damaged(f"{cid}: the gateway's copy of its shard does not hash to its CID")
        return base.PinInfo(cid=cid, size=size, sha256=digest.hexdigest())

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
        shards = await self.shards(cid)
        for shard in shards:
            async for chunk in self.read_shard(cid, shard):
                yield chunk

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


__all__: Sequence[str] = ("StorachaBackend", "agent_of", "delegated_spaces", "encode_secret")
