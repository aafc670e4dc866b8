"""What the contract suite cannot say about ``type: ipfsCluster``: pins as the cluster sees them.

Against the same real single-peer cluster as the contract kit, in front of the session's Kubo:
a put really ends ``pinned`` (per the cluster's ``/pins/<cid>`` and Kubo's own pin list), with
pinsync's name and PinSet attribution recorded; authentication (basic and bearer) is enforced;
a CID nobody provides stays ``pinning`` and verifies as the retryable ``Pinning``; a pin Kubo
lost is reported and recovered; removal unpins, and never touches pins that are not pinsync's.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from multiformats import CID, multihash

from pinsync.backends import base, errors, ipfscluster
from pinsync.devenv import kubo

from .kit_ipfscluster import IpfsclusterKit

pytestmark = pytest.mark.asyncio(loop_scope="session")

Make = Callable[..., ipfscluster.IpfsClusterBackend]


@pytest.fixture
async def make(ipfscluster_kit: IpfsclusterKit) -> AsyncIterator[Make]:
    """Builds backends on the kit's cluster (fresh prefix, good credentials unless given)."""
    built: list[ipfscluster.IpfsClusterBackend] = []

    def build(
        credentials: base.Credentials | None = None, **config: Any
    ) -> ipfscluster.IpfsClusterBackend:
        backend = ipfscluster.IpfsClusterBackend(
            {**ipfscluster_kit.config(), **config}, credentials or ipfscluster_kit.credentials()
        )
        built.append(backend)
        return backend

    yield build
    for backend in built:
        await backend.aclose()


async def unread() -> AsyncIterator[bytes]:
    """A content stream that fails the test if anybody reads it: the cluster fetches by CID."""
    raise AssertionError("the cluster backend read the content stream")
    yield b""  # pragma: no cover


def peer_states(kit: IpfsclusterKit, cid: str) -> list[str]:
    return [peer["status"] for peer in kit.cluster.status(cid)["peer_map"].values()]


def pinned_on_kubo(node: kubo.Kubo, cid: str) -> bool:
    try:
        node.ipfs("pin", "ls", "--type=recursive", cid)
    except RuntimeError:
        return False
    return True


def nobodys_cid() -> str:
    """A valid CID of bytes that exist nowhere, so no IPFS node can ever provide them."""
    return str(CID("base32", 1, "raw", multihash.digest(os.urandom(64), "sha2-256")))


async def eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {check}"
        await asyncio.sleep(0.3)


@pytest.fixture
def content(ipfs: kubo.Kubo) -> Iterator[Callable[[int], str]]:
    """Adds random bytes to Kubo as a real UnixFS DAG (several blocks) and returns its CID."""
    yield lambda size: ipfs.add(os.urandom(size), pin=False)


async def test_a_put_pin_ends_pinned_with_its_name_and_pinset_attribution(
    make: Make, ipfscluster_kit: IpfsclusterKit, ipfs: kubo.Kubo, content: Callable[[int], str]
) -> None:
    backend = make()
    cid = content(600_000)
    meta = base.PinMeta(cid=cid, pinsets=("media/photos", "media/videos"))
    info = await backend.put_pin(meta, unread())
    assert info == base.PinInfo(cid=cid)
    # put_pin returned, so the pin is already pinned: no waiting here.
    assert peer_states(ipfscluster_kit, cid) == ["pinned"]
    assert pinned_on_kubo(ipfs, cid)
    pin = ipfscluster_kit.cluster.allocation(cid)
    assert pin is not None
    assert pin["name"] == backend.prefix + cid
    assert pin["metadata"] == {"pinsync/pinset": "media/photos,media/videos"}
    assert (pin["replication_factor_min"], pin["replication_factor_max"]) == (-1, -1)
    assert [p.cid async for p in backend.list_pins()] == [cid]
    used = await backend.usage()
    assert (used.bytes, used.objects) == (0, 1) and used.free is not None
    assert await backend.verify_pin(cid) == base.PinInfo(cid=cid)
    assert await backend.verify_pin(cid, deep=True) == base.PinInfo(cid=cid)


async def test_health_checks_the_peers_and_the_replication_settings(make: Make) -> None:
    await make().health()
    with pytest.raises(errors.BackendError) as caught:
        await make(replicationFactorMin=2, replicationFactorMax=3).health()
    assert caught.value.reason == "NotEnoughPeers" and caught.value.retryable
    with pytest.raises(errors.InvalidConfig):
        await make(replicationFactorMin=-1, replicationFactorMax=2).health()


async def test_a_wrong_password_raises_auth_failed_without_the_password(
    make: Make, ipfscluster_kit: IpfsclusterKit, content: Callable[[int], str]
) -> None:
    wrong = ipfscluster_kit.credentials(password=f"wrong-{uuid.uuid4().hex}")
    backend, cid = make(credentials=wrong), content(1000)
    operations: list[Callable[[], Awaitable[Any]]] = [
        backend.health,
        lambda: backend.put_pin(base.PinMeta(cid=cid), unread()),
        lambda: backend.verify_pin(cid),
        lambda: backend.remove_pin(cid),
    ]
    for operation in operations:
        with pytest.raises(errors.AuthFailed) as caught:
            await operation()
        assert not caught.value.retryable
        for secret in (*ipfscluster_kit.secrets(), wrong.data["password"]):
            assert secret not in str(caught.value) and secret not in repr(caught.value)
    anonymous = make(credentials=base.Credentials())
    with pytest.raises(errors.AuthFailed):
        await anonymous.health()


async def test_a_bearer_token_authenticates_and_a_bogus_one_is_rejected(
    make: Make, ipfscluster_kit: IpfsclusterKit
) -> None:
    async with httpx.AsyncClient(auth=ipfscluster_kit.cluster.auth, timeout=10) as client:
        response = await client.post(f"{ipfscluster_kit.cluster.api_url}/token")
    response.raise_for_status()
    await make(credentials=base.Credentials(data={"token": response.json()["token"]})).health()
    bogus = f"bogus-{uuid.uuid4().hex}"
    with pytest.raises(errors.AuthFailed) as caught:
        await make(credentials=base.Credentials(data={"token": bogus})).health()
    assert bogus not in str(caught.value)


async def test_a_cid_nobody_has_stays_pinning_and_verifies_as_retryable_pinning(
    make: Make, ipfscluster_kit: IpfsclusterKit
) -> None:
    backend = make()
    backend.put_wait = 1.0
    cid = nobodys_cid()
    started = time.monotonic()
    with pytest.raises(errors.BackendError) as caught:
        await backend.put_pin(base.PinMeta(cid=cid), unread())
    assert caught.value.reason == "Pinning" and caught.value.retryable
    assert time.monotonic() - started < 10, "put_pin must give up after put_wait"
    try:
        # The cluster keeps trying: the pin is in its pinset (present), but not verified.
        assert [p.cid async for p in backend.list_pins()] == [cid]
        assert set(peer_states(ipfscluster_kit, cid)) <= {"pinning", "pin_queued"}
        for deep in (False, True):
            with pytest.raises(errors.BackendError) as caught:
                await backend.verify_pin(cid, deep=deep)
            assert caught.value.reason == "Pinning" and caught.value.retryable
            assert cid in str(caught.value)
    finally:
        await backend.remove_pin(cid)  # also stops the cluster's fetch
    assert [p.cid async for p in backend.list_pins()] == []


async def test_a_pin_the_ipfs_node_lost_fails_verify_and_is_recovered(
    make: Make, ipfscluster_kit: IpfsclusterKit, ipfs: kubo.Kubo, content: Callable[[int], str]
) -> None:
    backend = make()
    cid = content(50_000)
    await backend.put_pin(base.PinMeta(cid=cid), unread())
    ipfs.ipfs("pin", "rm", cid)  # behind the cluster's back
    assert peer_states(ipfscluster_kit, cid) == ["unexpectedly_unpinned"]
    with pytest.raises(errors.BackendError) as caught:
        await backend.verify_pin(cid)
    assert caught.value.reason == "ClusterPinError" and caught.value.retryable
    assert "recovery requested" in str(caught.value)
    # verify_pin asked the cluster to recover: the pin comes back without another put.
    await eventually(lambda: peer_states(ipfscluster_kit, cid) == ["pinned"])
    assert pinned_on_kubo(ipfs, cid)
    await backend.verify_pin(cid)


async def test_remove_pin_unpins_and_leaves_other_pins_alone(
    make: Make, ipfscluster_kit: IpfsclusterKit, ipfs: kubo.Kubo, content: Callable[[int], str]
) -> None:
    ours, theirs = make(), make()  # two prefixes: two "locations" on one cluster
    cid, foreign = content(40_000), content(40_000)
    await ours.put_pin(base.PinMeta(cid=cid), unread())
    await theirs.put_pin(base.PinMeta(cid=foreign), unread())
    assert [p.cid async for p in ours.list_pins()] == [cid]
    with pytest.raises(errors.PinNotFound):
        await ours.verify_pin(foreign)  # in the cluster, but not this backend's pin

    await ours.remove_pin(foreign)  # not ours to remove: a no-op
    assert ipfscluster_kit.cluster.allocation(foreign) is not None

    await ours.remove_pin(cid)
    assert ipfscluster_kit.cluster.allocation(cid) is None
    await eventually(lambda: peer_states(ipfscluster_kit, cid) == ["unpinned"])
    assert not pinned_on_kubo(ipfs, cid)
    with pytest.raises(errors.PinNotFound):
        await ours.verify_pin(cid)
    assert [p.cid async for p in ours.list_pins()] == []
    await ours.remove_pin(cid)  # again: not an error
    await theirs.remove_pin(foreign)


async def test_fetch_pin_is_unsupported(make: Make, content: Callable[[int], str]) -> None:
    backend = make()
    cid = content(1000)
    await backend.put_pin(base.PinMeta(cid=cid), unread())
    with pytest.raises(errors.BackendError) as caught:
        async for _ in backend.fetch_pin(cid):
            pass
    assert caught.value.reason == "Unsupported" and not caught.value.retryable


async def test_providers_are_the_swarm_addresses_of_the_peers_ipfs_daemons(
    make: Make, ipfs: kubo.Kubo
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        identity = (await client.post(f"{ipfs.api_url}/api/v0/id")).json()
    providers = await make().providers()
    # One peer, whose IPFS daemon is the session's Kubo: a restoring node dials these.
    assert providers and all(a.endswith(f"/p2p/{identity['ID']}") for a in providers)
    assert set(providers) <= set(identity["Addresses"])


async def test_a_429_is_rate_limited_with_the_wait_the_answer_asks_for() -> None:
    request = httpx.Request("GET", "http://cluster.example/pins")
    asked = httpx.Response(429, headers={"Retry-After": "120"}, request=request)
    with pytest.raises(errors.RateLimited) as caught:
        ipfscluster.raise_for_status(asked, "list pins")
    assert caught.value.retry_after == 120.0 and caught.value.retryable
    quota = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "30"}
    with pytest.raises(errors.RateLimited) as caught:
        ipfscluster.raise_for_status(httpx.Response(429, headers=quota, request=request), "x")
    assert caught.value.retry_after == 30.0
