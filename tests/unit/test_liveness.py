"""``pinsync worker --liveness``: answered by the event loop, so a blocked loop is not alive."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from pinsync import liveness


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_endpoint_answers_while_the_loop_runs_and_not_while_it_is_blocked() -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    runner = await liveness.serve(url)
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).status_code == 200
            assert (await client.get(url.replace("healthz", "other"))).status_code == 404

        def probe() -> str:  # the kubelet's probe, from outside the loop, with its timeout
            try:
                return str(httpx.get(url, timeout=0.5).status_code)
            except httpx.TimeoutException:
                return "timeout"

        asked = asyncio.get_running_loop().run_in_executor(None, probe)
        time.sleep(1.5)  # noqa: ASYNC251  (the point: the loop blocked, as by a stuck call)
        assert await asked == "timeout"
    finally:
        await runner.cleanup()


def test_an_endpoint_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        asyncio.run(liveness.serve("http://0.0.0.0/healthz"))
