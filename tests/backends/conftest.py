"""Fixtures for the backend contract suite, in the style of fsspec's abstract tests.

Every backend type the suite covers has a :class:`Kit`: it knows how to configure a backend of
that type for a fresh location (and for a broken variant: wrong credentials, an unreachable
server, a missing location), and how to reach behind the backend to the raw objects it stored.
The contract tests see only the kits, through the fixtures below.

Adding a backend type to the suite means writing ``tests/backends/kit_<type>.py`` with its Kit
and a session fixture ``<type>_kit``; this module discovers it (see the end of this file).
"""

from __future__ import annotations

import abc
import asyncio
import gc
import importlib
import pathlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest
import pytest_asyncio
from multiformats import CID, multihash

from pinsync.backends import base, registry
from pinsync.devenv import minio
from pinsync.devenv.processes import free_port

KIT_TYPES = ["s3"] + [
    path.stem.removeprefix("kit_")
    for path in sorted(pathlib.Path(__file__).parent.glob("kit_*.py"))
]
"""Backend types the contract suite runs against; each needs a ``<type>_kit`` fixture.
Known here, before ``backend_kit`` is declared: pytest copies ``params`` at declaration, so
types appended later would never be parametrised. The ``kit_<type>.py`` modules themselves are
imported at the end of this file (they subclass :class:`Kit`)."""


class Kit(abc.ABC):
    """What the contract suite needs to know about one backend type."""

    type_: str
    """The ``StorageBackend.spec.type``, as the registry knows it."""

    reasons: Mapping[str, str] = {}
    """Expected ``reason`` per scenario where a type is more specific than the error class
    (e.g. ``{"missing_location": "BucketNotFound"}``)."""

    capabilities: frozenset[str] = frozenset({"content", "raw"})
    """What the type and the kit can do, for tests marked ``@pytest.mark.needs(...)``: such a
    test is only generated for kits that have everything it needs (see
    ``pytest_generate_tests``), so nothing is skipped at run time.

    * ``content``: the backend stores the bytes it is given (False for a pinning service such
      as IPFS Cluster, which is asked to pin a CID, never reads the CAR stream and has no bytes
      to hand back); must agree with the backend's ``stores_content``.
    * ``raw``: the kit reaches behind the backend to the stored objects (``*_raw`` below).
    """

    @property
    def stores_content(self) -> bool:
        return "content" in self.capabilities

    def prepare_content(self, data: bytes) -> str:
        """Make ``data`` available to the backend and return the CID a pin of it goes under.

        Object stores take the bytes from the stream, so any valid CID will do: the raw-codec
        CIDv1 of the bytes. A pinning service fetches by CID, so its kit puts the bytes where
        the service can find them (the harness's Kubo) first.
        """
        return str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))

    @abc.abstractmethod
    def good(self) -> tuple[dict[str, Any], base.Credentials]:
        """Config and credentials for a fresh, empty, writable location."""

    @abc.abstractmethod
    def wrong_credentials(self) -> tuple[dict[str, Any], base.Credentials]:
        """A real location, with credentials the server rejects."""

    @abc.abstractmethod
    def unreachable(self) -> tuple[dict[str, Any], base.Credentials]:
        """Good credentials, a server address nothing listens on."""

    @abc.abstractmethod
    def missing_location(self) -> tuple[dict[str, Any], base.Credentials]:
        """A reachable server and good credentials, a location that does not exist."""

    @abc.abstractmethod
    def secrets(self) -> list[str]:
        """Every secret value the kit hands to backends; none may appear in an error message."""

    # -- behind the backend's back (object stores only) ----------------------------------------

    def write_raw(self, backend: base.Backend, name: str, data: bytes) -> None:
        """Write an object at ``<location>/<name>`` with the server's own means."""
        raise NotImplementedError

    def list_raw(self, backend: base.Backend) -> dict[str, int]:
        """{name relative to the location: size} of every object there."""
        raise NotImplementedError

    def incomplete_uploads(self, backend: base.Backend, names: Iterable[str]) -> list[str]:
        """Which of ``names`` the server still holds a partial upload of (temp files, S3
        multipart uploads)."""
        return []

    def free_bytes(self, backend: base.Backend) -> int | None:
        """The free space the backend should report for its location, found by the kit's own
        means; None for a type whose servers report none."""
        return None

    # -- the server itself ---------------------------------------------------------------------

    def server_running(self) -> bool:
        raise NotImplementedError

    def stop_server(self) -> None:
        raise NotImplementedError

    def start_server(self) -> None:
        """Start the server again where it was (same address, same data) and wait till ready."""
        raise NotImplementedError


class ServerKit(Kit):
    """A kit whose server is one devenv server (``running``, ``stop()``, ``start()`` again on
    the same port, with the same data)."""

    server: Any

    def server_running(self) -> bool:
        return bool(self.server.running)

    def stop_server(self) -> None:
        self.server.stop()

    def start_server(self) -> None:
        self.server.start()


class FileTreeKit(ServerKit):
    """A kit for file servers on this machine: raw access is plain filesystem access."""

    @abc.abstractmethod
    def directory(self, backend: base.Backend) -> pathlib.Path:
        """Where the backend's base path is on this machine's disk."""

    def own(self, path: pathlib.Path) -> None:
        """Give a file written behind the server's back to the server's user (if it matters)."""

    def write_raw(self, backend: base.Backend, name: str, data: bytes) -> None:
        path = self.directory(backend) / name
        path.write_bytes(data)
        self.own(path)

    def list_raw(self, backend: base.Backend) -> dict[str, int]:
        """Regular files at the top of the base path (``.tmp`` is a directory: not listed)."""
        return {p.name: p.stat().st_size for p in self.directory(backend).iterdir() if p.is_file()}

    def incomplete_uploads(self, backend: base.Backend, names: Iterable[str]) -> list[str]:
        tmp = self.directory(backend) / ".tmp"
        left = [path.name for path in tmp.iterdir()] if tmp.is_dir() else []
        return [name for name in names if any(entry.startswith(f"{name}.") for entry in left)]


class S3Kit(Kit):
    """S3 against the session's real MinIO: a fresh bucket per location."""

    type_ = "s3"
    reasons = {"missing_location": "BucketNotFound"}

    def __init__(self, server: minio.MinIO) -> None:
        self.server = server
        self.wrong_secret = f"wrong-{uuid.uuid4().hex}"

    def config(self, bucket: str, endpoint: str | None = None) -> dict[str, Any]:
        return {
            "endpoint": endpoint or self.server.endpoint,
            "bucket": bucket,
            "prefix": "pinsync",
            "forcePathStyle": True,
            "region": "us-east-1",
        }

    def credentials(self, secret: str | None = None) -> base.Credentials:
        return base.Credentials(
            data={
                "accessKeyId": self.server.access_key,
                "secretAccessKey": secret or self.server.secret_key,
            }
        )

    def fresh_bucket(self) -> str:
        name = f"contract-{uuid.uuid4().hex[:12]}"
        self.server.make_bucket(name)
        return name

    def good(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(self.fresh_bucket()), self.credentials()

    def wrong_credentials(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(self.fresh_bucket()), self.credentials(self.wrong_secret)

    def unreachable(self) -> tuple[dict[str, Any], base.Credentials]:
        closed = f"http://127.0.0.1:{free_port()}"
        return self.config("contract-unreachable", endpoint=closed), self.credentials()

    def missing_location(self) -> tuple[dict[str, Any], base.Credentials]:
        return self.config(f"contract-missing-{uuid.uuid4().hex[:12]}"), self.credentials()

    def secrets(self) -> list[str]:
        return [self.server.secret_key, self.wrong_secret]

    def raw_client(self) -> Any:
        """A synchronous botocore client with the root credentials (no aiohttp sessions)."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.server.access_key,
            aws_secret_access_key=self.server.secret_key,
            config=Config(s3={"addressing_style": "path"}),
        )

    @staticmethod
    def where(backend: base.Backend, name: str = "") -> tuple[str, str]:
        prefix = str(backend.config["prefix"]).strip("/")
        return str(backend.config["bucket"]), f"{prefix}/{name}"

    def write_raw(self, backend: base.Backend, name: str, data: bytes) -> None:
        bucket, key = self.where(backend, name)
        self.raw_client().put_object(Bucket=bucket, Key=key, Body=data)

    def list_raw(self, backend: base.Backend) -> dict[str, int]:
        bucket, prefix = self.where(backend)
        found: dict[str, int] = {}
        for page in (
            self.raw_client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=prefix)
        ):
            for item in page.get("Contents", ()):
                found[item["Key"][len(prefix) :]] = int(item["Size"])
        return found

    def incomplete_uploads(self, backend: base.Backend, names: Iterable[str]) -> list[str]:
        # One listing per exact key: MinIO lists multipart uploads only for a prefix that is a
        # whole object key (a "pinsync/" prefix silently lists none).
        client, found = self.raw_client(), []
        for name in names:
            bucket, key = self.where(backend, name)
            listed = client.list_multipart_uploads(Bucket=bucket, Prefix=key)
            found += [upload["Key"] for upload in listed.get("Uploads", ()) if upload["Key"] == key]
        return found

    def server_running(self) -> bool:
        return self.server.process is not None and self.server.process.running

    def stop_server(self) -> None:
        self.server.stop()

    def start_server(self) -> None:
        self.server.start()


@pytest.fixture(scope="session")
def s3_kit(s3server: minio.MinIO) -> S3Kit:
    return S3Kit(s3server)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each contract test against every kit that has the capabilities it is marked with."""
    if "backend_kit" not in metafunc.fixturenames:
        return
    needed = {name for mark in metafunc.definition.iter_markers("needs") for name in mark.args}
    types = [t for t in KIT_TYPES if needed <= KIT_CAPABILITIES[t]]
    metafunc.parametrize("backend_kit", types, indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend_kit(request: pytest.FixtureRequest) -> Kit:
    kit: Kit = request.getfixturevalue(f"{request.param}_kit")
    return kit


BackendFactory = Callable[[], base.Backend]


class Backends:
    """Builds backends from a kit and closes every one it built when the test ends."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.built: list[base.Backend] = []

    def build(self, config: dict[str, Any], credentials: base.Credentials) -> base.Backend:
        backend = registry.load(self.kit.type_)(config, credentials)
        self.built.append(backend)
        return backend

    async def aclose(self) -> None:
        for backend in self.built:
            await backend.aclose()
        self.built.clear()


@pytest_asyncio.fixture
async def backends(backend_kit: Kit) -> AsyncIterator[Backends]:
    """Every backend a test builds, closed when it ends; fails the test if a client leaked.

    aiohttp reports a session or connector garbage-collected unclosed ("Unclosed client
    session") to the event loop's exception handler, which only logs it; here it fails the test
    that leaked it. (Under ``-W error::ResourceWarning`` the warning aiohttp raises first ends
    up in pytest's unraisable-exception hook instead.)
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    unclosed: list[str] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if message.startswith("Unclosed"):
            unclosed.append(message)
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    built = Backends(backend_kit)
    try:
        yield built
    finally:
        try:
            await built.aclose()
            gc.collect()  # surface leaks in reference cycles here, in this test
            await asyncio.sleep(0)
        finally:
            loop.set_exception_handler(previous)
    assert not unclosed, f"a backend left its client open: {unclosed}"


@pytest.fixture
def backend_factory(backends: Backends) -> BackendFactory:
    """Builds a configured backend for a fresh, empty location."""
    return lambda: backends.build(*backends.kit.good())


@pytest.fixture
def backend(backend_factory: BackendFactory) -> base.Backend:
    """One backend on a fresh location, for tests that need only one."""
    return backend_factory()


@pytest.fixture
def server_restarted(backend_kit: Kit) -> Iterator[Kit]:
    """For tests that stop the server: it runs again afterwards, whatever the test did."""
    try:
        backend_kit.server_running()
    except NotImplementedError:
        pytest.skip(f"the {backend_kit.type_} kit cannot stop and start its server")
    try:
        yield backend_kit
    finally:
        if not backend_kit.server_running():
            backend_kit.stop_server()  # reaps a server that died on its own
            backend_kit.start_server()


KIT_CAPABILITIES: dict[str, frozenset[str]] = {"s3": S3Kit.capabilities}

for _path in sorted(pathlib.Path(__file__).parent.glob("kit_*.py")):
    _module = importlib.import_module(f"tests.backends.{_path.stem}")
    globals().update({n: getattr(_module, n) for n in dir(_module) if n.endswith("_kit")})
    for _kit in vars(_module).values():
        if isinstance(_kit, type) and issubclass(_kit, Kit) and "type_" in vars(_kit):
            KIT_CAPABILITIES[_path.stem.removeprefix("kit_")] = _kit.capabilities
