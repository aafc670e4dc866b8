"""What the contract suite cannot say about ``type: pinningService``: pins as the service sees them.

Against the real Pinning Service API of ipfs-cluster (``pinsvcapi``) on the contract kit's
cluster peer, in front of the session's Kubo: a put really ends ``pinned`` on the cluster, with
pinsync's name, the spec's meta plus PinSet attribution, and of the Kubo node's addresses the
public ones as origins (the session's node has only loopback ones: none); bearer tokens are
enforced; a CID nobody provides stays in progress (retryable ``Pinning``), and on a cluster
with a short pin timeout turns ``failed``: then it is not present, and the next put replaces
the failed request; removal touches only pinsync's requests.

The error answers a cluster never gives (409, 429 and Retry-After, the spec's error body) are
checked on the mapping itself, with responses built in the test.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import os
import pathlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from multiformats import CID, multihash

from pinsync import ipfs as kubo_client
from pinsync.backends import base, errors, pinningservice
from pinsync.devenv import cluster, kubo, psamock

from .kit_pinningservice import PinningserviceKit

pytestmark = pytest.mark.asyncio(loop_scope="session")

Make = Callable[..., pinningservice.PinningServiceBackend]
Backend = pinningservice.PinningServiceBackend


def builder(endpoint: str, token: str) -> tuple[Make, list[Backend]]:
    built: list[Backend] = []

    def build(credentials: base.Credentials | None = None, **config: Any) -> Backend:
        spec = {"endpoint": endpoint, "namePrefix": f"psa-{uuid.uuid4().hex[:12]}/", **config}
        backend = Backend(spec, credentials or base.Credentials(data={"token": token}))
        built.append(backend)
        return backend

    return build, built


@pytest.fixture
async def make(pinningservice_kit: PinningserviceKit) -> AsyncIterator[Make]:
    """Builds backends on the kit's cluster (fresh prefix, the good token unless given)."""
    build, built = builder(pinningservice_kit.cluster.pinsvc_url, pinningservice_kit.token)
    yield build
    for backend in built:
        await backend.aclose()


@pytest.fixture
async def node(ipfs: kubo.Kubo) -> AsyncIterator[kubo_client.Kubo]:
    """The operator's own Kubo client for the session's node (what the engine hands a put)."""
    async with kubo_client.Kubo(ipfs.api_url) as client:
        yield client


async def unread() -> AsyncIterator[bytes]:
    """A content stream that fails the test if anybody reads it: the service fetches by CID."""
    raise AssertionError("the pinning service backend read the content stream")
    yield b""  # pragma: no cover


@pytest.fixture
def content(ipfs: kubo.Kubo) -> Iterator[Callable[[int], str]]:
    """Adds random bytes to Kubo as a real UnixFS DAG (several blocks) and returns its CID."""
    yield lambda size: ipfs.add(os.urandom(size), pin=False)


def raw_cid(data: bytes) -> str:
    return str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))


def peer_states(peer: cluster.IpfsCluster, cid: str) -> list[str]:
    return [p["status"] for p in peer.status(cid)["peer_map"].values()]


async def present(backend: Backend) -> list[str]:
    return [pin.cid async for pin in backend.list_pins()]


async def test_a_put_pin_ends_pinned_with_its_name_meta_and_the_nodes_public_origins(
    make: Make,
    pinningservice_kit: PinningserviceKit,
    node: kubo_client.Kubo,
    content: Callable[[int], str],
) -> None:
    backend = make(meta={"team": "media"})
    cid = content(600_000)
    meta = base.PinMeta(cid=cid, pinsets=("media/photos", "media/videos"), node=node)
    assert await backend.put_pin(meta, unread()) == base.PinInfo(cid=cid)
    peer = pinningservice_kit.cluster
    assert peer_states(peer, cid) == ["pinned"]
    pin = peer.allocation(cid)
    assert pin is not None
    assert pin["name"] == backend.prefix + cid
    assert pin["metadata"] == {"team": "media", "pinsync/pinset": "media/photos,media/videos"}
    addresses = await node.addresses()
    assert addresses and all("/p2p/" in address for address in addresses)
    # Loopback only here: nothing the API allows, and the cluster has the content anyway.
    assert pin["origins"] == pinningservice.allowed_origins(addresses) == []
    assert await present(backend) == [cid]
    used = await backend.usage()
    assert (used.bytes, used.objects, used.free) == (0, 1, None)
    listed = base.PinInfo(cid=cid)
    assert await backend.verify_pin(cid, listed=listed) == listed  # from the listing
    assert await backend.verify_pin(cid, deep=True) == listed  # asked again: GET /pins?cid=


async def test_origins_from_the_spec_are_sent_instead_of_the_nodes(
    make: Make, pinningservice_kit: PinningserviceKit, node: kubo_client.Kubo, ipfs: kubo.Kubo
) -> None:
    mine = (await node.addresses())[:1]
    backend = make(origins=mine)
    cid = pinningservice_kit.prepare_content(os.urandom(5000))
    await backend.put_pin(base.PinMeta(cid=cid, node=node), unread())
    pin = pinningservice_kit.cluster.allocation(cid)
    assert pin is not None and pin["origins"] == mine


async def test_a_wrong_or_absent_token_is_auth_failed_without_the_token(
    make: Make, pinningservice_kit: PinningserviceKit, content: Callable[[int], str]
) -> None:
    cid = content(1000)
    tokens = [pinningservice_kit.wrong_token, f"bogus-{uuid.uuid4().hex}", ""]
    calls: dict[str, Callable[[Backend], Awaitable[Any]]] = {
        "health": lambda b: b.health(),
        "put_pin": lambda b: b.put_pin(base.PinMeta(cid=cid), unread()),
        "verify_pin": lambda b: b.verify_pin(cid),
        "remove_pin": lambda b: b.remove_pin(cid),
    }
    for token, name in itertools.product(tokens, calls):
        with pytest.raises(errors.AuthFailed) as caught:
            await calls[name](make(credentials=base.Credentials(data={"token": token})))
        assert not caught.value.retryable, name
        text = f"{caught.value}{caught.value!r}"
        assert not any(s in text for s in (*pinningservice_kit.secrets(), token) if s), name


async def test_a_cid_nobody_has_stays_in_progress_and_verifies_as_retryable_pinning(
    make: Make, pinningservice_kit: PinningserviceKit
) -> None:
    backend, cid = make(), raw_cid(os.urandom(64))  # bytes that exist nowhere
    backend.put_wait, started = 1.0, time.monotonic()
    with pytest.raises(errors.InProgress) as caught:
        await backend.put_pin(base.PinMeta(cid=cid), unread())
    assert time.monotonic() - started < 10, "put_pin must give up after put_wait"
    assert (caught.value.reason, caught.value.retryable) == ("Pinning", True)
    try:
        assert await present(backend) == [cid]  # requested: present, not yet verified
        with pytest.raises(errors.InProgress) as caught:
            await backend.verify_pin(cid)
        assert caught.value.reason == "Pinning" and cid in str(caught.value)
        # A second put does not add a second request: it waits on the first.
        with pytest.raises(errors.InProgress):
            await backend.put_pin(base.PinMeta(cid=cid), unread())
        assert await present(backend) == [cid]
    finally:
        await backend.remove_pin(cid)  # also stops the cluster's fetch
    assert await present(backend) == []


@pytest.fixture(scope="module")
def impatient(workdir: pathlib.Path, ipfs: kubo.Kubo) -> Iterator[cluster.IpfsCluster]:
    """A cluster peer that gives up on a CID nobody provides after 2 s: pins really fail."""
    with cluster.running(workdir / "psa-impatient", ipfs.api_url, pin_timeout="2s") as peer:
        yield peer


async def test_a_failed_pin_is_service_pin_failed_not_present_and_replaced_by_the_next_put(
    impatient: cluster.IpfsCluster, ipfs: kubo.Kubo
) -> None:
    build, built = builder(impatient.pinsvc_url, impatient.token())
    try:
        backend = build()
        backend.put_wait = 30.0
        data = os.urandom(20_000)
        cid = raw_cid(data)  # not on the node yet: the cluster's pin times out
        with pytest.raises(errors.BackendError) as caught:
            await backend.put_pin(base.PinMeta(cid=cid), unread())
        assert caught.value.reason == "ServicePinFailed" and caught.value.retryable
        assert cid in str(caught.value)
        assert await present(backend) == []  # failed is not present: the engine sends it again
        with pytest.raises(errors.PinNotFound) as missing:
            await backend.verify_pin(cid)
        assert "failed" in str(missing.value)

        ipfs.ipfs("block", "put", "--cid-codec", "raw", input=data)  # now the node has it
        assert await backend.put_pin(base.PinMeta(cid=cid), unread()) == base.PinInfo(cid=cid)
        assert peer_states(impatient, cid) == ["pinned"]
        assert await present(backend) == [cid]
        await backend.remove_pin(cid)
        assert await present(backend) == []
    finally:
        for backend in built:
            await backend.aclose()


async def test_remove_pin_removes_our_requests_and_leaves_other_prefixes_alone(
    make: Make, pinningservice_kit: PinningserviceKit, content: Callable[[int], str]
) -> None:
    ours, theirs = make(), make()  # two prefixes: two "locations" on one service
    mine, foreign = content(40_000), content(40_000)
    for backend, cid in ((ours, mine), (theirs, foreign)):
        await backend.put_pin(base.PinMeta(cid=cid), unread())
    assert (await present(ours), await present(theirs)) == ([mine], [foreign])
    with pytest.raises(errors.PinNotFound):
        await ours.verify_pin(foreign)  # on the service, but not this backend's pin
    await ours.remove_pin(foreign)  # not ours to remove: a no-op
    allocation = pinningservice_kit.cluster.allocation
    assert allocation(foreign) is not None
    for _ in range(2):  # the second time there is nothing to remove: not an error
        await ours.remove_pin(mine)
    assert allocation(mine) is None and await present(ours) == []
    await theirs.remove_pin(foreign)


async def test_fetch_pin_is_unsupported(make: Make, content: Callable[[int], str]) -> None:
    backend = make()
    with pytest.raises(errors.BackendError) as caught:
        async for _ in backend.fetch_pin(content(1000)):
            pass
    assert caught.value.reason == "Unsupported" and not caught.value.retryable


# -- the spec's reference mock: what the cluster does not do -------------------------------------


@pytest.fixture(scope="module")
def mock(workdir: pathlib.Path) -> Iterator[psamock.PinningServiceMock]:
    with psamock.running(workdir / "psamock") as server:
        yield server


@pytest.fixture
async def on_mock(mock: psamock.PinningServiceMock) -> AsyncIterator[Make]:
    """Backends on the mock; ``status=`` picks the name prefix that makes its pins end so."""
    build, built = builder(mock.url, mock.token)

    def on(status: str = "pinned", **config: Any) -> Backend:
        return build(namePrefix=f"{status}-{uuid.uuid4().hex[:12]}/", **config)

    yield on
    for backend in built:
        await backend.aclose()


class Recorder:
    """A node (the engine's :class:`base.Node`) that only remembers what it was asked."""

    def __init__(self, addresses: list[str]) -> None:
        self.mine, self.dialled = addresses, list[str]()

    async def addresses(self) -> list[str]:
        return list(self.mine)

    async def connect(self, addresses: Sequence[str]) -> None:
        self.dialled += addresses


def mock_requests(mock: psamock.PinningServiceMock, cid: str) -> list[dict[str, Any]]:
    """Every request the mock holds for ``cid``, whatever its status, by the server's own API."""
    params = {"cid": cid, "status": "queued,pinning,pinned,failed"}
    headers = {"Authorization": f"Bearer {mock.token}"}
    answer = httpx.get(f"{mock.url}/pins", params=params, headers=headers, timeout=10)
    answer.raise_for_status()
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


async def test_listing_pages_through_a_server_that_lists_oldest_first_and_counts_the_page(
    on_mock: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pinningservice, "PAGE_LIMIT", 3)
    backend, other = on_mock(), on_mock()
    cids = [raw_cid(os.urandom(32)) for _ in range(8)]
    for cid in cids:
        await backend.put_pin(base.PinMeta(cid=cid), unread())
        await asyncio.sleep(0.005)  # distinct "created" instants: the cursor is a timestamp
    assert sorted(await present(backend)) == sorted(cids)  # 3 pages forward, 1 empty back
    assert (await backend.usage()).objects == 8
    assert await present(other) == []  # the other prefix's pins are not listed
    for cid in cids:
        await backend.remove_pin(cid)
    assert await present(backend) == []


async def test_request_ids_that_are_not_cids_serve_status_and_removal(
    on_mock: Make, mock: psamock.PinningServiceMock
) -> None:
    backend, cid = on_mock(), raw_cid(os.urandom(32))
    node = Recorder(
        ["/dns4/kubo.example.org/tcp/4001/p2p/12D3KooWAFZCGTBta4GC3uHtdjKYNw1EHRFebY6N6KBTEiLEx6Vm"]
    )
    await backend.put_pin(base.PinMeta(cid=cid, pinsets=("a/b",), node=node), unread())
    (request,) = mock_requests(mock, cid)
    assert request["requestid"].startswith("req-") and request["status"] == "pinned"
    assert request["pin"]["origins"] == node.mine
    assert request["pin"]["meta"] == {"pinsync/pinset": "a/b"}
    assert node.dialled == request["delegates"] and node.dialled  # the service's peers, dialled
    # What a node restoring a pin is told to connect to: the same peers.
    assert await backend.providers() == [d for d in request["delegates"] if "/p2p/" in d]
    assert await backend.providers()
    await backend.remove_pin(cid)
    assert mock_requests(mock, cid) == []


async def test_a_failed_request_is_replaced_by_the_next_put_not_duplicated(
    on_mock: Make, mock: psamock.PinningServiceMock
) -> None:
    backend, cid = on_mock("failed"), raw_cid(os.urandom(32))
    with pytest.raises(errors.BackendError) as caught:
        await backend.put_pin(base.PinMeta(cid=cid), unread())
    assert caught.value.reason == "ServicePinFailed"
    ((first,),) = [mock_requests(mock, cid)]
    assert await present(backend) == []
    with pytest.raises(errors.BackendError):
        await backend.put_pin(base.PinMeta(cid=cid), unread())
    (second,) = mock_requests(mock, cid)
    assert second["requestid"] != first["requestid"]  # deleted and made anew, not a second one
    await backend.remove_pin(cid)


async def test_a_new_request_still_queued_when_the_wait_ends_is_left_to_the_service(
    on_mock: Make, mock: psamock.PinningServiceMock
) -> None:
    backend, cid = on_mock("queued"), raw_cid(os.urandom(32))
    backend.put_wait = 0.5
    with pytest.raises(errors.InProgress):
        await backend.put_pin(base.PinMeta(cid=cid), unread())
    assert await present(backend) == [cid]
    with pytest.raises(errors.InProgress):  # from the listing: one request for all pins
        await backend.verify_pin(cid, listed=base.PinInfo(cid=cid))
    assert len(mock_requests(mock, cid)) == 1
    await backend.remove_pin(cid)


async def test_delegates_that_never_answer_do_not_hold_a_put_for_long(
    on_mock: Make, node: kubo_client.Kubo
) -> None:
    backend, cid = on_mock(), raw_cid(os.urandom(32))
    started = time.monotonic()  # the mock's delegates are documentation addresses
    await backend.put_pin(base.PinMeta(cid=cid, node=node), unread())
    assert time.monotonic() - started < kubo_client.CONNECT_TIMEOUT + 5
    await backend.remove_pin(cid)


async def test_the_mocks_errors_reach_us_as_the_vocabulary_says(
    on_mock: Make, mock: psamock.PinningServiceMock
) -> None:
    with pytest.raises(errors.AuthFailed):
        await on_mock(credentials=base.Credentials(data={"token": "wrong"})).health()
    with pytest.raises(errors.LocationNotFound):
        await on_mock(endpoint=f"{mock.url}/no-such-api").health()
    with pytest.raises(errors.PinNotFound) as caught:  # its details are a stack trace
        await on_mock().request("GET", "/pins/req-404", "status of x", one_pin=True)
    text = str(caught.value)
    assert "NotFound" in text and "\n" not in text and len(text) < 300


# -- the spec, read before any I/O ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "endpoint"),
        ({"endpoint": "ftp://x"}, "endpoint"),
        ({"endpoint": "https://user:pw@psa.example"}, "endpoint"),
        ({"endpoint": "https://psa.example", "origins": "/ip4/1.2.3.4"}, "origins"),
        ({"endpoint": "https://psa.example", "origins": ["1.2.3.4"]}, "origins"),
        ({"endpoint": "https://psa.example", "origins": ["/ip4/1.2.3.4"] * 21}, "origins"),
        ({"endpoint": "https://psa.example", "meta": {"a": 1}}, "meta"),
        ({"endpoint": "https://psa.example", "meta": {"pinsync/pinset": "x"}}, "meta"),
        ({"endpoint": "https://psa.example", "namePrefix": "p" * 200}, "namePrefix"),
    ],
)
async def test_a_bad_spec_is_invalid_config_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(errors.InvalidConfig) as caught:
        Backend.validate(spec, base.Credentials(data={"token": "t"}))
    assert caught.value.field == field and "pw" not in str(caught.value)


async def test_defaults() -> None:
    conf = Backend.validate({"endpoint": "https://psa.example/"}, base.Credentials())
    assert (conf.endpoint, conf.prefix, conf.origins, conf.meta) == (
        "https://psa.example",
        "pinsync/",
        None,
        {},
    )


# -- error answers a cluster never gives -----------------------------------------------------------

TOKEN = "s3cr3t-token-value"


def answer(code: int, body: Any = None, **headers: str) -> httpx.Response:
    request = httpx.Request("GET", "https://psa.example/pins")
    return httpx.Response(code, json=body, headers=headers, request=request)


def mapped(response: httpx.Response, *, one_pin: bool = False) -> errors.BackendError:
    backend = Backend({"endpoint": "https://psa.example"}, base.Credentials(data={"token": TOKEN}))
    with pytest.raises(errors.BackendError) as caught:
        backend.raise_for_status(response, "list pins", one_pin=one_pin)
    assert TOKEN not in str(caught.value)
    return caught.value


def spec_error(reason: str, details: str) -> dict[str, Any]:
    return {"error": {"reason": reason, "details": details}}


async def test_409_insufficient_funds_is_quota_exceeded_with_the_services_reason() -> None:
    error = mapped(answer(409, spec_error("INSUFFICIENT_FUNDS", "top up your account")))
    assert isinstance(error, errors.StorageFull) and error.reason == "QuotaExceeded"
    assert error.retryable and "INSUFFICIENT_FUNDS: top up your account" in str(error)


async def test_429_carries_the_retry_after_the_backoff_honours() -> None:
    error = mapped(answer(429, spec_error("RATE_LIMIT", "slow down"), **{"Retry-After": "120"}))
    assert isinstance(error, errors.RateLimited) and error.reason == "RateLimited"
    assert error.retry_after == 120.0 and error.retryable
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=300)
    dated = answer(429, None, **{"Retry-After": later.strftime("%a, %d %b %Y %H:%M:%S GMT")})
    wait = mapped(dated).retry_after
    assert wait is not None and 290 <= wait <= 300
    assert mapped(answer(429)).retry_after == errors.RateLimited("").retry_after  # its default


async def test_retry_after_reads_seconds_or_a_date_caps_them_and_ignores_garbage() -> None:
    assert errors.retry_after("7") == 7.0
    assert errors.retry_after(str(10**9)) == errors.RETRY_AFTER_CAP
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert errors.retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60.0
    assert errors.retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0.0  # past: now
    for garbage in (None, "", "  ", "soon", "-5", "1.5e3"):
        assert errors.retry_after(garbage) is None


async def test_details_are_one_short_printable_line_without_the_token() -> None:
    details = f"bad\n\x1b[31mtoken {TOKEN} " + "x" * 1000
    error = mapped(answer(400, spec_error("BAD_REQUEST", details)))
    assert error.reason == "ServiceRejected" and not error.retryable
    text = str(error)
    assert "\n" not in text and "\x1b" not in text and "[token]" in text
    assert len(text) < 300


@pytest.mark.parametrize(
    ("code", "one_pin", "kind", "reason"),
    [
        (401, False, errors.AuthFailed, "AuthFailed"),
        (403, False, errors.PermissionDenied, "PermissionDenied"),
        (404, False, errors.LocationNotFound, "LocationNotFound"),
        (404, True, errors.PinNotFound, "PinNotFound"),
        (500, False, pinningservice.ServiceError, "ServiceError"),
        (502, False, pinningservice.ServiceError, "ServiceError"),
    ],
)
async def test_http_errors_map_onto_the_backend_vocabulary(
    code: int, one_pin: bool, kind: type[errors.BackendError], reason: str
) -> None:
    error = mapped(answer(code, {"error": {"reason": "X"}}), one_pin=one_pin)
    assert isinstance(error, kind) and error.reason == reason


async def test_an_html_error_page_is_not_quoted() -> None:
    request = httpx.Request("GET", "https://psa.example/pins")
    page = httpx.Response(502, text="<html><body>Bad gateway</body></html>", request=request)
    assert "html" not in str(mapped(page))


# -- live: a real provider, only with credentials ------------------------------------------------

LIVE_URL = os.environ.get("PINSYNC_LIVE_PSA_URL")
LIVE_TOKEN = os.environ.get("PINSYNC_LIVE_PSA_TOKEN")
LIVE_CID = os.environ.get(
    "PINSYNC_LIVE_PSA_CID",
    # An empty UnixFS directory: one tiny block every provider can fetch (or already has).
    "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354",
)

if LIVE_URL and LIVE_TOKEN:  # generated only with credentials: no skip in CI without them

    @pytest.mark.live
    async def test_live_service_pins_lists_verifies_and_removes_a_pin() -> None:
        build, built = builder(LIVE_URL or "", LIVE_TOKEN or "")
        try:
            backend = build(meta={"purpose": "pinsync live test"})
            backend.put_wait = 300.0
            await backend.health()
            await backend.put_pin(base.PinMeta(cid=LIVE_CID, pinsets=("live/test",)), unread())
            assert LIVE_CID in await present(backend)
            await backend.verify_pin(LIVE_CID)
            await backend.remove_pin(LIVE_CID)
            await asyncio.sleep(2)  # some providers remove asynchronously
            assert LIVE_CID not in await present(backend)
        finally:
            for backend in built:
                await backend.aclose()
