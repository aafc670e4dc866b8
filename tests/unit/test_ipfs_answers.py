"""The Kubo client's handling of answers a real Kubo does not give (malformed or oversized).

A tiny aiohttp server stands in for a misbehaving endpoint; Kubo's real behaviour is covered
against a real daemon in ``tests/e2e/test_ipfs.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from pinsync import cids
from pinsync.ipfs import IpfsError, Kubo


@pytest_asyncio.fixture(loop_scope="function")  # served by the test's own loop
async def answering() -> AsyncIterator[dict[str, bytes]]:
    """A server whose ``/api/v0/pin/ls`` answers ``bodies["pin/ls"]``; yields that dict."""
    bodies: dict[str, bytes] = {}

    async def pin_ls(request: web.Request) -> web.Response:
        return web.Response(body=bodies["pin/ls"])

    app = web.Application()
    app.router.add_post("/api/v0/pin/ls", pin_ls)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    bodies["url"] = f"http://127.0.0.1:{port}".encode()
    try:
        yield bodies
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json\n", id="not-json"),
        pytest.param(b'{"Keys": {"x": "' + b"a" * (1 << 20) + b'"}}\n', id="one-huge-line"),
        pytest.param(b'["a list"]\n', id="not-an-object"),
    ],
)
async def test_a_pin_listing_kubo_would_not_send_is_an_ipfs_error(
    answering: dict[str, bytes], body: bytes
) -> None:
    answering["pin/ls"] = body
    async with Kubo(answering["url"].decode()) as kubo:
        with pytest.raises(IpfsError, match="unexpected answer"):
            await kubo.pins()
        with pytest.raises(IpfsError, match="unexpected answer"):
            await kubo.pin_listing()


V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
V1 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            # Kubo 0.39's streamed lines (recorded from a real daemon): Name left out when empty
            (
                f'{{"Cid":"{V0}","Name":"na\\"me/1","Type":"recursive"}}\n'
                f'{{"Cid":"{V1}","Type":"recursive"}}\n'
            ).encode(),
            id="streamed",
        ),
        pytest.param(
            # Kubo 0.39's whole-map answer (recorded from a real daemon), as pinsync asks for it
            (
                f'{{"Keys":{{"{V0}":{{"Type":"recursive","Name":"na\\"me/1"}},'
                f'"{V1}":{{"Type":"recursive","Name":""}}}}}}\n'
            ).encode(),
            id="keys-compact",
        ),
        pytest.param(  # the same, spaced out as JSON allows
            f'{{"Keys": {{"{V0}": {{"Type": "recursive", "Name": "na\\"me/1"}}, '
            f'"{V1}": {{"Type": "recursive"}}, "bafkqaaa": {{"Type": "indirect"}}}}}}'.encode(),
            id="keys-object",
        ),
    ],
)
async def test_a_pin_listing_by_identity_with_names(
    answering: dict[str, bytes], body: bytes
) -> None:
    answering["pin/ls"] = body
    async with Kubo(answering["url"].decode()) as kubo:
        listing = await kubo.pin_listing()
        assert await kubo.pins_digest() == listing.digest
    v0_key = cids.key(V0)
    by_key = dict(zip(listing.keys, listing.names.tolist(), strict=True))
    assert by_key == {v0_key: b'na"me/1', V1: b""}
