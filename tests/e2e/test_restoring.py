"""The restore stream on its own: a real MinIO (through the S3 backend), a real Kubo.

What the operator-level tests cannot aim at precisely: a copy cut between two blocks, a bad
block's bytes never reaching the blockstore, Kubo's own import answer.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from multiformats import CID, multihash

from pinsync import car, reasons, restoring
from pinsync.backends import base, s3
from pinsync.devenv import kubo, minio
from pinsync.ipfs import ContentUnavailable, IpfsError, Kubo

pytestmark = pytest.mark.e2e


def s3_backend(server: minio.MinIO) -> s3.S3Backend:
    bucket = f"r-{uuid.uuid4().hex[:10]}"
    server.make_bucket(bucket)
    config = {"endpoint": server.endpoint, "bucket": bucket, "prefix": "p", "forcePathStyle": True}
    credentials = base.Credentials(
        data={"accessKeyId": server.access_key, "secretAccessKey": server.secret_key}
    )
    return s3.S3Backend(config, credentials)


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def store(backend: base.Backend, cid: str, data: bytes) -> None:
    """``data`` as the pin's CAR, with a sidecar that agrees with it (as an upload writes)."""
    await backend.put_pin(base.PinMeta(cid=cid), once(data))


def lose(node: kubo.Kubo, cid: str) -> None:
    node.ipfs("pin", "rm", cid)
    node.ipfs("repo", "gc")


def local(node: kubo.Kubo, cid: str) -> bool:
    params = {"arg": cid, "offline": "true"}
    return httpx.post(f"{node.api_url}/api/v0/block/stat", params=params).status_code == 200


def frames(data: bytes) -> list[bytes]:
    """The CAR's sections (header first), each with its length prefix."""
    out, pos = [], 0
    while pos < len(data):
        decoded = car._varint(data, pos)
        assert decoded is not None
        length, start = decoded
        out.append(data[pos : start + length])
        pos = start + length
    return out


def nowhere_cid() -> str:
    return str(CID("base32", 1, "raw", multihash.digest(os.urandom(16), "sha2-256")))


def pins(node: kubo.Kubo) -> dict[str, str]:
    listed = json.loads(node.ipfs("pin", "ls", "--type=recursive", "--names", "--enc=json"))
    return {cid: info.get("Name", "") for cid, info in listed["Keys"].items()}


async def test_an_intact_copy_is_imported_and_pinned_under_the_name(
    ipfs: kubo.Kubo, s3server: minio.MinIO
) -> None:
    cid = ipfs.add(os.urandom(2_000_000))
    before = ipfs.export_car(cid)
    async with s3_backend(s3server) as backend, Kubo(ipfs.api_url) as node:
        await store(backend, cid, before)
        lose(ipfs, cid)
        outcome = await restoring.restore(
            node, [cid], [("s3", backend)], name="pinsync/t/p", pin_timeout=5
        )
    assert (outcome.backend, outcome.bytes, outcome.attempts) == ("s3", len(before), ())
    assert pins(ipfs)[cid] == "pinsync/t/p"
    assert ipfs.export_car(cid) == before


async def test_a_corrupted_block_never_reaches_the_node_and_nothing_is_pinned(
    ipfs: kubo.Kubo, s3server: minio.MinIO
) -> None:
    cid = ipfs.add(os.urandom(1_000_000))
    sections = frames(ipfs.export_car(cid))
    bad = bytearray(sections[2])
    bad[-1] ^= 0xFF  # the last byte of a block's data
    decoded = car._varint(bad)
    assert decoded is not None
    cid_len = car.split_block(bytes(bad[decoded[1] :]))[0]
    bad_cid = car._show(CID.decode(bytes(bad[decoded[1] : decoded[1] + cid_len])))
    damaged = b"".join([*sections[:2], bytes(bad), *sections[3:]])
    async with s3_backend(s3server) as backend, Kubo(ipfs.api_url) as node:
        await store(backend, cid, damaged)
        lose(ipfs, cid)
        outcome = await restoring.restore(
            node, [cid], [("s3", backend)], name="pinsync/t/p", pin_timeout=5
        )
    assert outcome.backend is None
    (attempt,) = outcome.attempts
    assert (
        attempt.reason == reasons.CAR_INVALID.name and "does not match its hash" in attempt.message
    )
    assert outcome.failure()[0] == reasons.CAR_INVALID.name
    assert cid not in pins(ipfs)
    assert not local(ipfs, bad_cid)


async def test_a_copy_cut_between_two_blocks_passes_the_checker_but_is_not_pinned(
    ipfs: kubo.Kubo, s3server: minio.MinIO
) -> None:
    cid = ipfs.add(os.urandom(1_000_000))
    whole = ipfs.export_car(cid)
    cut = b"".join(frames(whole)[:-1])  # well framed, every block intact, one block short
    async with s3_backend(s3server) as backend, Kubo(ipfs.api_url) as node:
        await store(backend, cid, cut)
        lose(ipfs, cid)
        outcome = await restoring.restore(
            node, [cid], [("s3", backend)], name="pinsync/t/p", pin_timeout=5
        )
    (attempt,) = outcome.attempts
    assert attempt.reason == reasons.CAR_INVALID.name and "not the whole DAG" in attempt.message
    assert cid not in pins(ipfs)


async def test_backends_without_the_pin_are_passed_over_under_every_spelling(
    ipfs: kubo.Kubo, s3server: minio.MinIO
) -> None:
    cid = ipfs.add(os.urandom(10_000))
    before = ipfs.export_car(cid)
    async with (
        s3_backend(s3server) as empty,
        s3_backend(s3server) as holder,
        Kubo(ipfs.api_url) as node,
    ):
        await store(holder, cid, before)
        lose(ipfs, cid)
        nowhere = await restoring.restore(
            node,
            [nowhere_cid()],
            [("a", empty)],
            name="x",
            pin_timeout=5,
        )
        assert nowhere.failure()[0] == reasons.NOT_ON_ANY_BACKEND.name
        outcome = await restoring.restore(
            node, [nowhere_cid(), cid], [("a", empty), ("b", holder)], name="x", pin_timeout=5
        )
    assert outcome.backend == "b"
    assert [(a.backend, a.reason) for a in outcome.attempts] == [("a", "PinNotFound")]
    assert ipfs.export_car(cid) == before


async def test_kubo_walks_a_dag_missing_a_child_offline_at_once_but_an_offline_pin_hangs(
    ipfs: kubo.Kubo,
) -> None:
    # Kubo 0.39's behaviour, pinned down: it is why a restore walks the DAG before pinning it.
    cid = ipfs.add(os.urandom(1_000_000))
    cut = b"".join(frames(ipfs.export_car(cid))[:-1])
    lose(ipfs, cid)
    async with Kubo(ipfs.api_url, timeout=3) as node:
        await node.dag_import(once(cut))
        started = time.monotonic()
        with pytest.raises(ContentUnavailable):
            await node.dag_stat(cid, offline=True)
        assert time.monotonic() - started < 2
        with pytest.raises(IpfsError) as hung:
            await node.pin_local([cid], name="never")
    assert hung.value.reason == "RequestTimeout"
    assert cid not in pins(ipfs)
