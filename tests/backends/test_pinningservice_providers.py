"""``type: pinningService`` against the providers as they were recorded answering.

:mod:`pinsync.devenv.psafake` answers as Pinata, Filebase or 4EVERLAND did in the reports of
ipfs-shipyard/pinning-service-compliance (``data/psa_recorded.json``, with their sources), or
as the spec says (``spec``). Each test here is a quirk of one of them that made the backend
fail: Pinata's ``DELETE`` answer, its ``INVALID_ORIGINS``, its ``x-ratelimit-*`` headers;
Filebase's and 4EVERLAND's ``count`` (what remains after ``before``) and Filebase's one-second
``created``; name filters that find nothing or everything.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest
from multiformats import CID, multihash

from pinsync.backends import base, errors, pinningservice, ratelimit
from pinsync.devenv import psafake

pytestmark = pytest.mark.asyncio(loop_scope="session")

RECORDED = pathlib.Path(__file__).parent / "data" / "psa_recorded.json"
PEER = "12D3KooWAFZCGTBta4GC3uHtdjKYNw1EHRFebY6N6KBTEiLEx6Vm"
KUBO_ADDRESSES = [  # what Kubo's `id` lists: loopback, LAN, quic-v1, webtransport, one public
    f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}",
    f"/ip4/192.168.1.20/tcp/4001/p2p/{PEER}",
    f"/ip4/10.0.0.5/udp/4001/quic-v1/p2p/{PEER}",
    f"/ip6/::1/udp/4001/quic-v1/webtransport/p2p/{PEER}",
    f"/ip4/84.17.40.10/tcp/4001/p2p/{PEER}",
]
Backend = pinningservice.PinningServiceBackend
Start = Callable[..., psafake.PsaFake]


@pytest.fixture(scope="module")
def start(workdir: pathlib.Path) -> Iterator[Start]:
    """Starts stand-ins (``start("pinata", rate_limit=...)``), all stopped after the module."""
    started: list[psafake.PsaFake] = []

    def run(profile: str, **options: Any) -> psafake.PsaFake:
        fake = psafake.PsaFake(workdir / "psafake", profile, recorded=RECORDED, **options)
        started.append(fake.start())
        return fake

    yield run
    for fake in started:
        fake.stop()


@pytest.fixture(scope="module")
def services(start: Start) -> dict[str, psafake.PsaFake]:
    """One stand-in per profile, rate limits high enough never to matter."""
    return {
        name: start(name, rate_limit=10_000) for name in ("spec", "pinata", "filebase", "4everland")
    }


@pytest.fixture
async def on() -> AsyncIterator[Callable[..., Backend]]:
    """Backends on a stand-in, each with a fresh name prefix."""
    built: list[Backend] = []

    def build(fake: psafake.PsaFake, **config: Any) -> Backend:
        spec = {"endpoint": fake.url, "namePrefix": f"psa-{uuid.uuid4().hex[:8]}/", **config}
        backend = Backend(spec, base.Credentials(data={"token": fake.token}))
        backend.poll_interval = 0.05
        built.append(backend)
        return backend

    yield build
    for backend in built:
        await backend.aclose()


class Node:
    """A node (:class:`base.Node`) with the given addresses, remembering nothing else."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.mine = list(addresses)

    async def addresses(self) -> list[str]:
        return list(self.mine)

    async def connect(self, addresses: Sequence[str]) -> None:
        pass


async def unread() -> AsyncIterator[bytes]:
    raise AssertionError("the pinning service backend read the content stream")
    yield b""  # pragma: no cover


def new_cid() -> str:
    return str(CID("base32", 1, "raw", multihash.digest(os.urandom(32), "sha2-256")))


async def listed(backend: Backend) -> list[str]:
    return [pin.cid async for pin in backend.list_pins()]


def answered(fake: psafake.PsaFake, method: str, status: int) -> list[str]:
    return [
        r["path"]
        for r in fake.state()["requests"]
        if (r["method"], r["status"]) == (method, status)
    ]


async def test_the_profiles_are_the_recorded_answers() -> None:
    known = psafake.profiles(json.loads(RECORDED.read_text()))
    pinata, filebase, everland = known["pinata"], known["filebase"], known["4everland"]
    assert (pinata.post_status, pinata.delete_status, pinata.delete_body) == (200, 200, "OK")
    assert pinata.delete_type.startswith("text/plain") and pinata.rate_limit == 5
    assert pinata.refuses_origins["error"]["reason"] == "INVALID_ORIGINS"
    assert set(pinata.match.values()) == {"nothing"}
    assert (filebase.resolution, filebase.default_limit, filebase.request_ids) == (1.0, 10, "gid")
    assert everland.match == {
        "exact": "works",
        "iexact": "ignored",
        "partial": "nothing",
        "ipartial": "ignored",
    }
    assert known["spec"].refuses_origins is None and known["spec"].rate_limit is None


@pytest.mark.parametrize("profile", ["spec", "pinata", "filebase", "4everland"])
async def test_pin_list_verify_and_remove_on_each_provider(
    profile: str, services: dict[str, psafake.PsaFake], on: Callable[..., Backend]
) -> None:
    fake = services[profile]
    backend, cid = on(fake), new_cid()
    node = Node(KUBO_ADDRESSES)
    assert await backend.put_pin(base.PinMeta(cid=cid, node=node), unread()) == base.PinInfo(
        cid=cid
    )
    assert await listed(backend) == [cid]
    await backend.verify_pin(cid)
    # Pinata answers 200 text/plain "OK": done, not "the answer is not JSON".
    await backend.remove_pin(cid)
    assert await listed(backend) == []
    assert [p for p in fake.state()["pins"] if p["pin"]["cid"] == cid] == []


async def test_a_failed_request_is_replaced_on_pinata_whose_delete_is_not_json(
    services: dict[str, psafake.PsaFake],
    on: Callable[..., Backend],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = services["pinata"]
    backend, cid = on(fake), new_cid()
    failed = {"requestid": "gone", "status": "failed", "pin": {"cid": cid, "name": backend.prefix}}
    await backend.put_pin(base.PinMeta(cid=cid), unread())
    (made,) = [p for p in fake.state()["pins"] if p["pin"]["cid"] == cid]

    async def as_failed(cids: Sequence[str]) -> dict[str, Any]:
        return {cid: {**failed, "requestid": made["requestid"]}}

    monkeypatch.setattr(backend, "requests_for", as_failed)
    await backend.put_pin(base.PinMeta(cid=cid), unread())  # deletes the failed one first
    (again,) = [p for p in fake.state()["pins"] if p["pin"]["cid"] == cid]
    assert again["requestid"] != made["requestid"]
    await backend.remove_pin(cid)


async def test_only_public_peer_addresses_are_offered_as_origins(
    services: dict[str, psafake.PsaFake], on: Callable[..., Backend]
) -> None:
    fake = services["pinata"]
    backend, cid = on(fake), new_cid()
    await backend.put_pin(base.PinMeta(cid=cid, node=Node(KUBO_ADDRESSES)), unread())
    (pin,) = [p for p in fake.state()["pins"] if p["pin"]["cid"] == cid]
    assert pin["pin"]["origins"] == [f"/ip4/84.17.40.10/tcp/4001/p2p/{PEER}"]
    assert not [p for p in answered(fake, "POST", 400)]
    await backend.remove_pin(cid)


async def test_origins_pinata_refuses_are_dropped_once_and_then_not_offered(
    start: Start, on: Callable[..., Backend]
) -> None:
    fake = start("pinata", rate_limit=10_000)
    public_quic = f"/ip4/84.17.40.10/udp/4001/quic-v1/p2p/{PEER}"  # allowed by the spec
    backend, node = on(fake), Node([public_quic, "/dnsaddr/bootstrap.libp2p.io"])
    first, second = new_cid(), new_cid()
    assert await backend.put_pin(base.PinMeta(cid=first, node=node), unread())
    assert await backend.put_pin(base.PinMeta(cid=second, node=node), unread())
    assert len(answered(fake, "POST", 400)) == 1  # INVALID_ORIGINS once, then no more offers
    assert [p["pin"]["origins"] for p in fake.state()["pins"]] == [[], []]
    assert sorted(await listed(backend)) == sorted([first, second])


async def test_allowed_origins_are_public_peer_addresses_or_dnsaddr() -> None:
    allowed = pinningservice.allowed_origins(
        [
            *KUBO_ADDRESSES,
            f"/ip6/2a01:4f8:1:2::3/tcp/4001/p2p/{PEER}",
            f"/ip6/fe80::1/tcp/4001/p2p/{PEER}",
            f"/dns4/ipfs.example.org/tcp/4001/p2p/{PEER}",
            f"/dns4/localhost/tcp/4001/p2p/{PEER}",
            f"/dns4/kubo.local/tcp/4001/p2p/{PEER}",
            "/ip4/84.17.40.10/tcp/4001",  # no peer id
            "/dnsaddr/bootstrap.libp2p.io",
            f"/ip4/100.64.0.1/tcp/4001/p2p/{PEER}",  # carrier-grade NAT
        ]
    )
    assert allowed == [
        f"/ip4/84.17.40.10/tcp/4001/p2p/{PEER}",
        f"/ip6/2a01:4f8:1:2::3/tcp/4001/p2p/{PEER}",
        f"/dns4/ipfs.example.org/tcp/4001/p2p/{PEER}",
        "/dnsaddr/bootstrap.libp2p.io",
    ]


@pytest.mark.parametrize("profile", ["filebase", "4everland", "spec"])
async def test_a_listing_pages_by_each_pages_own_count(
    profile: str, services: dict[str, psafake.PsaFake], on: Callable[..., Backend]
) -> None:
    # Pages of 10 whatever the limit, and count = what remains: 25, then 15 (with 20 seen),
    # which a count taken as the total read as the end.
    backend = on(services[profile])
    cids = [new_cid() for _ in range(25)]
    for cid in cids:
        await backend.put_pin(base.PinMeta(cid=cid), unread())
        await asyncio.sleep(0.1 if profile == "filebase" else 0.002)  # whole seconds there
    assert sorted(await listed(backend)) == sorted(cids)
    assert (await backend.usage()).objects == 25


async def test_pins_sharing_a_page_edges_second_are_all_listed(
    services: dict[str, psafake.PsaFake],
    on: Callable[..., Backend],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pinningservice, "PAGE_LIMIT", 3)
    fake = services["filebase"]
    backend = on(fake)
    cids = [new_cid() for _ in range(6)]
    # Two pins in each of three seconds (Filebase writes whole seconds): the first page holds
    # the newest second's two and one of the middle second's; the other shares its second.
    await asyncio.sleep(1 - time.time() % 1 + 0.05)
    for pair in (cids[0:2], cids[2:4], cids[4:6]):
        for cid in pair:
            await backend.put_pin(base.PinMeta(cid=cid), unread())
        await asyncio.sleep(1 - time.time() % 1 + 0.05)
    seconds = [p["created"] for p in fake.state()["pins"] if p["pin"]["cid"] in cids]
    assert len(set(seconds)) == 3 and all(".000-05:00" in s for s in seconds)
    assert sorted(await listed(backend)) == sorted(cids)


async def test_a_listing_ends_when_one_second_holds_more_pins_than_a_page(
    services: dict[str, psafake.PsaFake],
    on: Callable[..., Backend],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The spec's timestamp cursor cannot step through such a second (pinsync's own pins
    come far slower than a page of 1000 a second); the overlap must not loop on it."""
    monkeypatch.setattr(pinningservice, "PAGE_LIMIT", 2)
    backend = on(services["filebase"])
    await asyncio.sleep(1 - time.time() % 1 + 0.05)
    cids = [new_cid() for _ in range(5)]
    for cid in cids:
        await backend.put_pin(base.PinMeta(cid=cid), unread())
    found = await asyncio.wait_for(listed(backend), timeout=10)
    assert len(found) >= 2 and set(found) <= set(cids)


async def test_names_are_matched_here_not_by_the_services_filter(
    services: dict[str, psafake.PsaFake], on: Callable[..., Backend]
) -> None:
    for profile in ("pinata", "4everland"):  # name filters find nothing / everything there
        ours, theirs = on(services[profile]), on(services[profile])
        mine, other = new_cid(), new_cid()
        await ours.put_pin(base.PinMeta(cid=mine), unread())
        await theirs.put_pin(base.PinMeta(cid=other), unread())
        assert (await listed(ours), await listed(theirs)) == ([mine], [other])
        await ours.remove_pin(other)  # not ours: left alone
        assert await listed(theirs) == [other]


async def test_a_used_up_rate_limit_is_waited_out_not_refused(
    start: Start, on: Callable[..., Backend]
) -> None:
    fake = start("pinata", rate_limit=2, rate_window=2.0)
    backend = on(fake)
    started = time.monotonic()
    for _ in range(4):
        await backend.health()  # GET /pins: x-ratelimit-remaining 1, 0, then wait for reset
    assert time.monotonic() - started >= 0.5
    assert answered(fake, "GET", 429) == []


async def test_concurrent_requests_share_the_rate_limit_without_a_429(
    start: Start, on: Callable[..., Backend]
) -> None:
    fake = start("pinata", rate_limit=3, rate_window=2.0)
    backend = on(fake)
    await backend.health()  # the service is metered: its quota headers say so
    started = time.monotonic()
    await asyncio.gather(*(backend.health() for _ in range(8)))  # as a sync's workers do
    assert time.monotonic() - started >= 1.0  # 9 requests, 3 a window
    assert answered(fake, "GET", 429) == [] and len(fake.state()["requests"]) == 9


async def test_a_long_rate_limit_wait_is_rate_limited_without_a_request(
    start: Start, on: Callable[..., Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "PACE_IN_PLACE", 0.0)
    fake = start("pinata", rate_limit=1, rate_window=30.0)
    backend = on(fake)
    await backend.health()  # remaining 0 after this one
    with pytest.raises(errors.RateLimited) as caught:
        await backend.health()
    assert caught.value.retryable and 1 < caught.value.retry_after <= 31
    assert len(fake.state()["requests"]) == 1


async def test_quota_headers_read_as_unix_time_or_seconds() -> None:
    now = 1_687_906_966.0  # Pinata's recorded answer: reset 1687907020, 54 s later
    used_up = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1687907020"}
    assert ratelimit.quota_wait(used_up, now=now) == 54.0
    assert ratelimit.quota_wait({**used_up, "x-ratelimit-reset": "30"}, now=now) == 30.0
    assert ratelimit.quota_wait({**used_up, "x-ratelimit-remaining": "4"}, now=now) is None
    assert ratelimit.quota_wait({**used_up, "x-ratelimit-reset": "soon"}, now=now) is None
    assert ratelimit.quota_wait({}, now=now) is None
    assert ratelimit.wait_of({**used_up, "Retry-After": "7"}) == 7.0  # Retry-After first


async def test_the_cursor_reaches_one_second_back_and_a_server_ignoring_limit_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pinningservice, "PAGE_LIMIT", 2)
    pages = pinningservice.Pages()
    page = [
        {"requestid": "b", "created": "2023-01-25T18:01:56.000-05:00"},
        {"requestid": "a", "created": "2023-01-25T18:01:55.000-05:00"},
    ]
    assert len(pages.take(page)) == 2
    # Filebase's recorded second page: count 5 is what remains, not the total.
    assert pages.following(new=2, page=2, count=5) == ("before", "2023-01-25T23:01:56.000000Z")
    assert pages.take(page) == []  # the overlap brings them again: dropped
    assert pages.following(new=0, page=2, count=5) == ("before", "2023-01-25T23:01:55.000000Z")
    assert pages.following(new=3, page=3, count=3) is None  # more than asked: everything
