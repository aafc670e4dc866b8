"""The Kubo RPC client against a real Kubo daemon (online, no peers)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from multiformats import CID, multihash

from pinsync.car import CarChecker, CarError
from pinsync.devenv import kubo
from pinsync.devenv.processes import free_port
from pinsync.ipfs import ContentUnavailable, Kubo, NodeUnreachable, PinTimeout

pytestmark = pytest.mark.e2e

MiB = 1 << 20


def unavailable_cid() -> str:
    """A valid CID whose block no node has."""
    return str(CID("base32", 1, "raw", multihash.digest(os.urandom(16), "sha2-256")))


async def test_id_names_the_node(ipfs: kubo.Kubo) -> None:
    async with Kubo(ipfs.api_url) as client:
        identity = await client.id()
    assert identity["ID"]
    assert identity["AgentVersion"].startswith("kubo/")


async def test_pins_lists_a_cid_with_the_name_it_was_pinned_under(ipfs: kubo.Kubo) -> None:
    cid = ipfs.add(os.urandom(1000), pin=False)
    async with Kubo(ipfs.api_url) as client:
        assert cid not in await client.pins()
        await client.pin_add(cid, name="pinsync/test/named", timeout=30)
        pins = await client.pins()
    assert pins[cid] == "pinsync/test/named"
    assert all(isinstance(name, str) for name in pins.values())


async def test_pinning_a_pinned_cid_again_replaces_its_name(ipfs: kubo.Kubo) -> None:
    # Kubo's behaviour, pinned down because the operator names its pins.
    cid = ipfs.add(os.urandom(1000), pin=False)
    async with Kubo(ipfs.api_url) as client:
        await client.pin_add(cid, name="first", timeout=30)
        await client.pin_add(cid, name="second", timeout=30)
        assert (await client.pins())[cid] == "second"
        await client.pin_add(cid, timeout=30)
        assert (await client.pins())[cid] == ""


async def test_local_cids_are_pinned_in_one_request_and_a_missing_one_fails_it_at_once(
    ipfs: kubo.Kubo,
) -> None:
    local = [ipfs.add(os.urandom(1000), pin=False) for _ in range(5)]
    async with Kubo(ipfs.api_url) as client:
        await client.pin_local(local, name="batch")
        pins = await client.pins()
        assert all(pins.get(cid) == "batch" for cid in local)
        more = ipfs.add(os.urandom(1000), pin=False)
        started = time.monotonic()
        with pytest.raises(ContentUnavailable):
            await client.pin_local([more, unavailable_cid()], name="batch")
        assert time.monotonic() - started < 5


async def test_export_streams_the_same_car_kubo_exports_and_the_checker_accepts_it(
    ipfs: kubo.Kubo,
) -> None:
    data = os.urandom(3 * MiB)
    cid = ipfs.add(data)
    async with Kubo(ipfs.api_url) as client:
        blocks, size = await client.dag_stat(cid)
        checker = CarChecker(
            client.export(cid, chunk_size=64 * 1024), root=cid, expected_blocks=blocks
        )
        chunks = [chunk async for chunk in checker]
    assert b"".join(chunks) == ipfs.export_car(cid)
    assert max(len(c) for c in chunks) <= 64 * 1024 and len(chunks) > 3 * MiB // (64 * 1024)
    assert blocks == 13  # 12 raw leaves of at most 256 KiB and one dag-pb root
    assert checker.blocks == blocks
    assert checker.block_bytes == size
    assert checker.size == sum(len(c) for c in chunks)


async def test_export_of_missing_content_fails_fast_offline(ipfs: kubo.Kubo) -> None:
    cid = unavailable_cid()
    async with Kubo(ipfs.api_url) as client:
        started = time.monotonic()
        with pytest.raises(ContentUnavailable, match="not found locally") as stat_error:
            await client.dag_stat(cid)
        with pytest.raises(ContentUnavailable, match="not found locally") as export_error:
            async for _ in client.export(cid):
                pytest.fail("an export of missing content yielded bytes")
    assert time.monotonic() - started < 5
    assert stat_error.value.reason == export_error.value.reason == "ContentUnavailable"
    assert cid in str(export_error.value)


async def test_a_block_missing_mid_dag_truncates_the_export_silently_but_not_the_count(
    ipfs: kubo.Kubo,
) -> None:
    cid = ipfs.add(os.urandom(3 * MiB), pin=False)
    async with Kubo(ipfs.api_url) as client:
        blocks, _ = await client.dag_stat(cid)
        async with httpx.AsyncClient(base_url=ipfs.api_url, timeout=30) as http:
            refs = await http.post("/api/v0/refs", params={"arg": cid})
            last_leaf = json.loads(refs.text.strip().splitlines()[-1])["Ref"]
            removed = await http.post("/api/v0/block/rm", params={"arg": last_leaf})
            assert removed.status_code == 200, removed.text

        with pytest.raises(ContentUnavailable):
            await client.dag_stat(cid)
        # Kubo answers 200 and stops between blocks; the error is only in an HTTP trailer.
        framed_only = CarChecker(client.export(cid), root=cid)
        assert len(b"".join([c async for c in framed_only])) > 2 * MiB
        assert framed_only.blocks == blocks - 1
        with pytest.raises(CarError, match=f"expected {blocks}"):
            async for _ in CarChecker(client.export(cid), root=cid, expected_blocks=blocks):
                pass


async def test_pin_add_of_unavailable_content_times_out_and_stops_the_search(
    ipfs: kubo.Kubo,
) -> None:
    cid = unavailable_cid()
    async with Kubo(ipfs.api_url) as client:
        started = time.monotonic()
        with pytest.raises(PinTimeout) as error:
            await client.pin_add(cid, name="never", timeout=2)
        elapsed = time.monotonic() - started
        assert cid not in await client.pins()
    assert 2 <= elapsed < 5
    assert error.value.reason == "PinTimeout" and cid in str(error.value)
    # Closing the request cancels it in Kubo: the CID leaves the bitswap wantlist.
    async with httpx.AsyncClient(base_url=ipfs.api_url, timeout=10) as http:
        for _ in range(50):
            wantlist = await http.post("/api/v0/bitswap/wantlist")
            if cid not in wantlist.text:
                break
            await asyncio.sleep(0.1)
        assert cid not in wantlist.text


async def test_an_unreachable_api_raises_node_unreachable_without_leaking_credentials() -> None:
    url = f"http://pinsync:s3cr3t-token@127.0.0.1:{free_port()}"
    async with Kubo(url, timeout=5) as client:
        calls: list[Callable[[], Awaitable[object]]] = [
            client.id,
            client.pins,
            lambda: client.dag_stat(unavailable_cid()),
        ]
        for call in calls:
            with pytest.raises(NodeUnreachable) as error:
                await call()
            assert error.value.reason == "NodeUnreachable"
            assert "127.0.0.1" in str(error.value)
            assert "s3cr3t-token" not in str(error.value) + repr(error.value)
        with pytest.raises(NodeUnreachable):
            async for _ in client.export(unavailable_cid()):
                pass
