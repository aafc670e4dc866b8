"""The IPFS Pinning Service API's reference mock (npm ``mock-ipfs-pinning-service``), run by Node.

The ``pinningService`` backend is tested against ipfs-cluster's real ``pinsvcapi`` (which pins
for real); this in-memory server by the spec's authors covers what the cluster cannot show: it
validates every request against the spec's OpenAPI document (``oas-tools``), pages by
``before``/``after`` and ``limit``, answers ``count`` as the page size, lists oldest first, has
opaque request ids (``req-N``), and names delegates. It pins nothing: a pin's status comes from
its name (``pinned-...``, ``failed-...``; anything else stays ``queued``), which is how tests
steer it. Installed with ``npm ci`` into ``devenv/node`` by ``make node-deps``.
"""

from __future__ import annotations

import contextlib
import pathlib
import secrets
import shutil
from collections.abc import Iterator

import httpx

from pinsync.devenv.processes import Process, Server, free_port

NODE_DIR = pathlib.Path(__file__).parent / "node"
CLI = NODE_DIR / "node_modules" / "mock-ipfs-pinning-service" / "cli.js"


class PinningServiceMock(Server):
    """One mock service on a free loopback port; ``token`` is the bearer token it wants."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(18)

    def start(self) -> PinningServiceMock:
        node = shutil.which("node")
        if node is None or not CLI.exists():
            raise RuntimeError(f"run `make node-deps` first (needs node and {CLI})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The CLI binds every interface; the port is random and the token secret, and nothing
        # is stored but what the tests put there.
        argv = [node, str(CLI), "--port", str(self.port), "--token", self.token]
        self.process = Process("psamock", [*argv, "--loglevel", "error"], workdir=self.workdir)
        self.process.start()
        self.process.wait_until(self.answers, timeout=60, what="the mock's GET /pins")
        return self

    def answers(self) -> bool:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.get(f"{self.url}/pins", headers=headers, timeout=2).status_code == 200


@contextlib.contextmanager
def running(workdir: pathlib.Path) -> Iterator[PinningServiceMock]:
    """A started mock, stopped when the block ends."""
    server = PinningServiceMock(workdir)
    try:
        yield server.start()
    finally:
        server.stop()
