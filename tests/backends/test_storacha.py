"""The storacha backend beyond the contract: config and token checks before any request, the
real service's own refusals (UCAN validation), the shard limit, paging, and shard sizes. Against
the kit's local service (npm ``@storacha/upload-api`` behind the bridge contract fake)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import libipld
import pytest
from multiformats import CID, varint

from pinsync import car
from pinsync.backends import base, errors, storacha, ucan
from pinsync.devenv import kubo

from .conftest import Backends
from .kit_storacha import StorachaKit
from .test_contract import Blob, chunks, fetch, pins, put

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def kit(storacha_kit: StorachaKit) -> StorachaKit:
    return storacha_kit


@pytest.fixture
async def built(kit: StorachaKit) -> AsyncIterator[Backends]:
    made = Backends(kit)
    try:
        yield made
    finally:
        await made.aclose()


def build(built: Backends, config: dict[str, Any], credentials: base.Credentials) -> Any:
    backend = built.build(config, credentials)
    assert isinstance(backend, storacha.StorachaBackend)
    return backend


def index_size(root: str, data: bytes) -> int:
    """Bytes of the sharded-DAG index of one single-shard upload whose bytes are no CAR."""
    digest = hashlib.sha256(data).digest()
    shard = storacha.Shard(start=0, end=len(data), header=b"", size=len(data), digest=digest)
    return len(storacha.index_car(root, [shard], [[]]))


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({}, "spec.storacha.spaceDid is required"),
        ({"spaceDid": "did:web:x"}, "spec.storacha.spaceDid must be a did:key: DID"),
        ({"spaceDid": "did:key:z6Mk", "endpoint": "ftp://x"}, "must be an http(s) URL"),
        ({"spaceDid": "did:key:z6Mk", "shardSize": 10}, "spec.storacha.shardSize must be in"),
        ({"spaceDid": "did:key:z6Mk", "serviceDid": "up"}, "spec.storacha.serviceDid must be a"),
    ],
)
async def test_a_bad_spec_is_invalid_config_naming_the_field(
    spec: dict[str, Any], problem: str
) -> None:
    with pytest.raises(errors.InvalidConfig) as caught:
        storacha.StorachaBackend.validate(spec, base.Credentials())
    assert problem in str(caught.value)


async def test_the_defaults_are_storachas_service_gateway_and_shard_size() -> None:
    conf = storacha.StorachaBackend.validate({"spaceDid": "did:key:z6Mkx"}, base.Credentials())
    assert (conf.endpoint, conf.service, conf.gateway, conf.shard_size) == (
        "https://up.storacha.network",
        "did:web:up.storacha.network",
        "https://storacha.link",
        133_169_152,
    )


async def test_the_agent_is_derived_from_the_secret_padded_or_not() -> None:
    secret = storacha.encode_secret(bytes(range(32)))
    assert (
        storacha.agent_of(secret)
        == storacha.agent_of(secret + "=")
        == storacha.agent_of(f" {secret}\n")
    )
    assert storacha.agent_of(secret).startswith("did:key:z6Mk")


async def test_bridge_answers_are_read_in_the_current_and_the_older_shape() -> None:
    """Today's ``[{"p", "s"}]`` (what the local bridge answers, so every test here reads it) and
    the older ``[{"data", "sig"}]``; anything else is no receipt."""
    out = {"ok": {"results": []}}
    assert storacha.bridge_out([{"p": {"out": out}, "s": {}}]) == out
    assert storacha.bridge_out([{"data": {"out": out}, "sig": {}}]) == out
    for wrong in ([], {}, [{"q": {"out": out}}], [{"p": {"out": "ok"}}], [{"p": []}]):
        with pytest.raises((LookupError, TypeError)):
            storacha.bridge_out(wrong)


async def test_tokens_that_do_not_belong_together_fail_before_any_request(
    kit: StorachaKit, built: Backends
) -> None:
    config, credentials = kit.wrong_credentials()
    config["endpoint"] = "http://127.0.0.1:9"  # nothing listens: a request would be Unreachable
    backend = build(built, config, credentials)
    with pytest.raises(errors.AuthFailed, match="delegates to another agent"):
        await backend.health()


async def test_garbage_tokens_are_auth_failed_without_quoting_them(
    kit: StorachaKit, built: Backends
) -> None:
    config, _ = kit.good()
    garbage = "uNotADelegation" + "x" * 40
    backend = build(
        built,
        config,
        base.Credentials(data={"xAuthSecret": "u" + "A" * 43, "authorization": garbage}),
    )
    with pytest.raises(errors.AuthFailed) as caught:
        await backend.health()
    assert garbage not in str(caught.value)


async def test_the_service_itself_refuses_a_space_the_delegation_does_not_cover(
    kit: StorachaKit, built: Backends
) -> None:
    """The client-side check skipped: the real service's UCAN validation answers Unauthorized."""
    config, credentials = kit.missing_location()
    backend = build(built, config, credentials)
    backend._checked = True
    with pytest.raises(errors.AuthFailed, match="Unauthorized"):
        await backend.health()


async def test_the_bridges_http_refusals_map_to_auth_failed_and_location_not_found(
    kit: StorachaKit, built: Backends
) -> None:
    """Past the client-side check: the bridge answers 401 without its headers, 404 elsewhere."""
    config, credentials = kit.good()
    headless = build(
        built, config, base.Credentials(data={"xAuthSecret": " ", "authorization": " "})
    )
    headless._checked = True
    with pytest.raises(errors.AuthFailed, match="HTTP 401"):
        await headless.health()
    nowhere = build(built, {**config, "endpoint": f"{config['endpoint']}/elsewhere"}, credentials)
    with pytest.raises(errors.LocationNotFound, match="no bridge at the endpoint"):
        await nowhere.health()


async def test_a_car_over_the_shard_size_is_refused_and_leaves_nothing(
    kit: StorachaKit, built: Backends
) -> None:
    config, credentials = kit.good()
    backend = build(built, {**config, "shardSize": 4096}, credentials)
    blob = Blob(10 * 1024)
    with pytest.raises(errors.BackendError) as caught:
        await backend.put_pin(blob.meta(), chunks(blob.data, 1024))
    assert caught.value.reason == "CarTooLarge" and not caught.value.retryable
    assert await pins(backend) == {}
    assert (await backend.usage()).bytes == 0


async def test_a_car_over_the_shard_size_is_uploaded_in_shards_and_read_back_whole(
    kit: StorachaKit, built: Backends, ipfs: kubo.Kubo
) -> None:
    """A 3 MiB file (12 blocks of 256 KiB and a root) in shards of at most 1 MiB: each shard a
    CARv1 with the CAR's header, cut at block boundaries; the CAR comes back byte for byte."""
    cid = ipfs.add(os.urandom(3 * 1024 * 1024))
    data = ipfs.export_car(cid)
    config, credentials = kit.good()
    backend = build(built, {**config, "shardSize": 1024 * 1024}, credentials)
    info = await backend.put_pin(base.PinMeta(cid=cid), chunks(data, 64 * 1024))
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    shards = await backend.shards(cid)
    assert len(shards) == 4
    sizes = [await backend.shard_size(shard) for shard in shards]
    assert all(size <= 1024 * 1024 for size in sizes)
    assert await pins(backend) == {cid: None}  # the listing does not read headers
    assert (await backend.verify_pin(cid)).size == len(data)
    deep = await backend.verify_pin(cid, deep=True)
    assert (deep.size, deep.sha256) == (info.size, info.sha256)
    assert await fetch(backend, cid) == data
    # Every shard is a CAR of its own: the pin's root in its header, whole verified blocks.
    for shard in shards:
        raw = b"".join([c async for c in backend.read_shard(cid, shard)])
        length, prefix, _ = varint.decode_raw(raw)
        assert car.decode_header(raw[prefix : prefix + length]) == [cid]
        pos = prefix + length
        while pos < len(raw):
            length, prefix, _ = varint.decode_raw(raw[pos:])
            car.verify_block(raw[pos + prefix : pos + prefix + length])
            pos += prefix + length
        assert pos == len(raw)
    # space/index/add registered the index: each slice of it names a block's bytes in a shard.
    [index] = kit.server.indexes(cid)
    roots, blocks = ucan.read_car(b"".join([c async for c in backend.read_shard(cid, index)]))
    top = libipld.decode_dag_cbor(blocks[roots[0]])["index/sharded/dag@0.1"]
    assert top["content"] == bytes(CID.decode(cid)) and len(top["shards"]) == 4
    read = {}
    for each in shards:
        read[bytes(CID.decode(each).digest)] = b"".join(
            [c async for c in backend.read_shard(cid, each)]
        )
    for link in top["shards"]:
        shard, slices = libipld.decode_dag_cbor(blocks[bytes(link)])
        assert len(slices) > 1  # the shard itself and its blocks
        for digest, (offset, length) in slices:
            assert digest[2:] == hashlib.sha256(read[shard][offset : offset + length]).digest()
    await backend.remove_pin(cid)
    # The shards are gone; the small sharded-DAG index stays (nothing names it afterwards).
    assert await pins(backend) == {} and (await backend.usage()).objects == 0
    assert not set(shards) & set(await backend.sizes())


async def test_listing_pages_through_every_upload(
    kit: StorachaKit, built: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = build(built, *kit.good())
    blobs = [Blob(1024) for _ in range(5)]
    for blob in blobs:
        await put(backend, blob)
    monkeypatch.setattr(storacha, "PAGE", 2)
    assert await pins(backend) == {blob.cid: blob.size for blob in blobs}
    indexes = sum(index_size(blob.cid, blob.data) for blob in blobs)
    assert (await backend.usage()) == base.Usage(bytes=5 * 1024 + indexes, objects=5)


async def test_the_same_car_under_two_roots_is_stored_once_and_fetched_for_both(
    kit: StorachaKit, built: Backends
) -> None:
    """space/blob/add answers with the ``http/put`` receipt done for a blob the space already
    has: no second PUT, one shard; each root has its own index."""
    backend = build(built, *kit.good())
    blob = Blob(2048)
    other = Blob(16)
    await put(backend, blob)
    await backend.put_pin(base.PinMeta(cid=other.cid), chunks(blob.data, 1024))
    assert await fetch(backend, other.cid) == blob.data
    indexes = index_size(blob.cid, blob.data) + index_size(other.cid, blob.data)
    assert (await backend.usage()) == base.Usage(bytes=2048 + indexes, objects=2)


async def test_with_writes_switched_off_writes_are_writes_disabled_and_reads_still_work(
    kit: StorachaKit, built: Backends
) -> None:
    """As the hosted service since 2026-05-15: every write answers ServiceUnavailable; listing,
    verifying and fetching (what a restore reads) go on."""
    backend = build(built, *kit.good())
    blob, other = Blob(2048), Blob(1024)
    await put(backend, blob)
    kit.server.writes(disabled=True)
    try:
        with pytest.raises(errors.WritesDisabled) as caught:
            await backend.put_pin(other.meta(), chunks(other.data, 512))
        said = 'ServiceUnavailable: The "space/blob/add" capability is currently disabled.'
        assert said in str(caught.value)
        assert caught.value.reason == "WritesDisabled" and not caught.value.retryable
        with pytest.raises(errors.WritesDisabled):
            await backend.remove_pin(blob.cid)
        await backend.health()
        assert await pins(backend) == {blob.cid: blob.size}
        assert (await backend.verify_pin(blob.cid, deep=True)).size == blob.size
        assert await fetch(backend, blob.cid) == blob.data
    finally:
        kit.server.writes()
    await backend.put_pin(other.meta(), chunks(other.data, 512))  # back on: writes work again
    assert await pins(backend) == {blob.cid: blob.size, other.cid: other.size}


async def test_tokens_made_for_the_legacy_upload_path_still_read_but_cannot_write(
    kit: StorachaKit, built: Backends
) -> None:
    """Tokens with the abilities README listed before the blob protocol (store/*, upload/*):
    listing and fetching (a restore) work, the blob abilities being used only where granted; a
    verify of a blob and a put say which abilities are missing."""
    space = kit.server.space()
    blob, other = Blob(2048), Blob(1024)
    await put(build(built, kit.config(space.did), kit.credentials(space)), blob)
    legacy = [f"{kind}/{verb}" for kind in ("store", "upload") for verb in VERBS]
    old = build(built, kit.config(space.did), kit.credentials(kit.server.tokens(space, legacy)))
    assert await pins(old) == {blob.cid: None}  # no space/blob/list: the size is unknown
    with pytest.raises(errors.PermissionDenied, match="do not grant space/blob/get/0/1"):
        await old.verify_pin(blob.cid)  # not PinNotFound: that would have it sent again
    assert await fetch(old, blob.cid) == blob.data
    with pytest.raises(errors.PermissionDenied, match="space/blob/add, space/index/add"):
        await old.put_pin(other.meta(), chunks(other.data, 512))
    assert await pins(old) == {blob.cid: None}


VERBS = ("add", "get", "list", "remove")


async def test_puts_need_no_store_add_which_the_service_removed(
    kit: StorachaKit, built: Backends
) -> None:
    """Without store/add, as upload-api >= 3.1.0 serves: the blob protocol uploads anyway."""
    backend = build(built, *kit.good())
    blob = Blob(1024)
    kit.server.writes(removed=["store/add"])
    try:
        await put(backend, blob)
        assert await fetch(backend, blob.cid) == blob.data
    finally:
        kit.server.writes()


async def test_a_write_the_service_no_longer_implements_is_writes_disabled_not_a_missing_pin(
    kit: StorachaKit, built: Backends
) -> None:
    """ucanto answers an ability without a handler with HandlerNotFound, which ends in
    "NotFound" like a missing upload's error but means the write itself is gone."""
    backend = build(built, *kit.good())
    blob = Blob(1024)
    kit.server.writes(removed=["space/blob/add"])
    try:
        with pytest.raises(errors.WritesDisabled, match="no longer accepts this write") as caught:
            await backend.put_pin(blob.meta(), chunks(blob.data, 512))
        assert "HandlerNotFound" in str(caught.value)
    finally:
        kit.server.writes()


# -- live: Storacha itself, only with credentials --------------------------------------------------

LIVE_SPACE = os.environ.get("PINSYNC_LIVE_STORACHA_SPACE")
LIVE_SECRET = os.environ.get("PINSYNC_LIVE_STORACHA_SECRET")
LIVE_AUTHORIZATION = os.environ.get("PINSYNC_LIVE_STORACHA_AUTHORIZATION")

if LIVE_SPACE and LIVE_SECRET and LIVE_AUTHORIZATION:  # generated only with credentials

    @pytest.mark.live
    async def test_live_storacha_accepts_the_tokens_and_lists_the_space() -> None:
        """The tokens `storacha bridge generate-tokens` printed list the space at Storacha's
        bridge. Read-only: nothing is uploaded to a real, billed space."""
        credentials = {"xAuthSecret": LIVE_SECRET or "", "authorization": LIVE_AUTHORIZATION or ""}
        backend = storacha.StorachaBackend(
            {"spaceDid": LIVE_SPACE}, base.Credentials(data=credentials)
        )
        try:
            await backend.health()
            async for _ in backend.list_pins():
                pass
        finally:
            await backend.aclose()
