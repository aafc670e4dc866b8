"""``pinsync worker --liveness``: an HTTP endpoint answered by the worker's own event loop.

kopf serves the operator's; the worker has no kopf. The answer comes from the loop that runs
the worker's claims, renewals and transfers, so a loop that is blocked (a stuck synchronous
call, a deadlock) stops answering and the kubelet restarts the container -- which a Prometheus
metrics port, served from a thread of its own, would not show. A worker whose loop runs but
cannot reach the API server stays alive: its claims lapse and other workers take them over.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web


async def serve(url: str) -> web.AppRunner:
    """Answer GET ``url``'s path on its host and port (e.g. ``http://0.0.0.0:8080/healthz``)
    until the returned runner is cleaned up."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.port:
        raise ValueError(f"liveness endpoint {url!r}: expected http://HOST:PORT/PATH")

    async def alive(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get(parts.path or "/", alive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname or "0.0.0.0", parts.port).start()
    return runner
