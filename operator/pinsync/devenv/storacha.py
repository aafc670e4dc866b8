"""Storacha's upload service, run locally by Node (``devenv/node/storacha.mjs``).

The service logic is npm's ``@storacha/upload-api`` (its ``./test/context``: the real handlers
and UCAN validation over in-memory tables, a local HTTP bucket taking the CAR PUTs, local
storage-node servers). On one loopback port the script serves the service itself at ``POST /``
(UCAN invocations in CARs, as ``up.storacha.network`` takes them), a *contract fake* of
Storacha's HTTP bridge (its own bridge is hosted infrastructure, on no registry), a stand-in
of the gateway's ``GET /ipfs/<CAR CID>``, and test-control routes: one making a fresh provisioned
space with its bridge tokens, one switching writes off as the hosted service has
(:meth:`StorachaService.writes`). Installed with ``npm ci`` into ``devenv/node`` by
``make node-deps``.

``stop``/``start`` close and reopen the listener (SIGUSR1/SIGUSR2) without ending the process:
the service's memory (spaces, uploads) survives, as a restarted real service's storage would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import shutil
import signal
import socket
from collections.abc import Iterator, Sequence

import httpx

from pinsync.devenv.processes import Process, Server, free_port

NODE_DIR = pathlib.Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "storacha.mjs"
PACKAGE = NODE_DIR / "node_modules" / "@storacha" / "upload-api"
SERVICE_DID = "did:web:test.up.storacha.network"
"""The service's DID in upload-api's test context (``spec.storacha.serviceDid`` against it)."""


@dataclasses.dataclass(frozen=True)
class Space:
    """A provisioned space and the two headers ``storacha bridge generate-tokens`` prints."""

    did: str
    x_auth_secret: str
    authorization: str


class StorachaService(Server):
    """The service on a free loopback port; :meth:`space` makes a fresh space."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.listening = False

    def start(self) -> StorachaService:
        if self.process is not None and self.process.running:
            assert self.process.popen is not None
            self.process.popen.send_signal(signal.SIGUSR2)
        else:
            node = shutil.which("node")
            if node is None or not PACKAGE.exists():
                raise RuntimeError(f"run `make node-deps` first (needs node and {PACKAGE})")
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.process = Process(
                "storacha", [node, str(SCRIPT), str(self.port)], workdir=self.workdir
            )
            self.process.start()
        self.process.wait_until(self.answers, timeout=60, what="the Storacha service")
        self.listening = True
        return self

    @property
    def running(self) -> bool:
        return self.listening and super().running

    def stop(self) -> None:
        """Close the listener (and its connections); the process and its memory stay."""
        if self.process is not None and self.process.running:
            assert self.process.popen is not None
            self.process.popen.send_signal(signal.SIGUSR1)
            self.process.wait_until(self.refuses, timeout=10, what="the listener to close")
        self.listening = False

    def terminate(self) -> None:
        super().stop()
        self.listening = False

    def answers(self) -> bool:
        return httpx.get(f"{self.url}/ipfs/none", timeout=2).status_code == 400  # not a CID

    def refuses(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) != 0

    def writes(self, *, disabled: bool = False, removed: Sequence[str] = ()) -> None:
        """Switch writes off as the hosted service does (``disabled``: every write answers
        ``ServiceUnavailable``), or drop abilities (``removed``: ucanto answers
        ``HandlerNotFound``, as upload-api 3.1.0 does for ``store/add``); no arguments: back on."""
        settings = {"disabled": disabled, "removed": list(removed)}
        httpx.post(f"{self.url}/_test/writes", json=settings, timeout=10).raise_for_status()

    def indexes(self, root: str) -> list[str]:
        """The index CIDs the service claimed for ``root`` (``space/index/add`` publishes them)."""
        url = f"{self.url}/_test/indexes/{root}"
        found: list[str] = httpx.get(url, timeout=10).raise_for_status().json()["indexes"]
        return found

    def tokens(self, space: Space, abilities: Sequence[str]) -> Space:
        """Other tokens for ``space``, granting ``abilities`` only."""
        body = {"space": space.did, "abilities": list(abilities)}
        made = httpx.post(f"{self.url}/_test/tokens", json=body, timeout=30)
        made.raise_for_status()
        return Space(space.did, made.json()["xAuthSecret"], made.json()["authorization"])

    def space(self) -> Space:
        made = httpx.post(f"{self.url}/_test/space", timeout=30).raise_for_status().json()
        return Space(made["space"], made["xAuthSecret"], made["authorization"])


@contextlib.contextmanager
def running(workdir: pathlib.Path) -> Iterator[StorachaService]:
    """A started service, ended when the block ends."""
    service = StorachaService(workdir)
    try:
        yield service.start()
    finally:
        service.terminate()
