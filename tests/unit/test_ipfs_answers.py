"""The Kubo client's handling of answers a real Kubo does not give (malformed or oversized).

A tiny aiohttp server stands in for a misbehaving endpoint; Kubo's real behaviour is covered
against a real daemon in ``tests/e2e/test_ipfs.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

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
