"""The cluster pinset client (:mod:`pinsync.clusterpins`) against a real two-peer IPFS Cluster.

``cluster_pair`` (``tests/conftest.py``): two ``ipfs-cluster-service`` v1.1.6 peers of one CRDT
cluster, each in front of its own Kubo, basic auth on. The module pins the four example pins of
``record_cluster_answers`` through peer-0's REST API (``media/a`` allocated to peer-0 only,
``media/b`` to peer-1 only, ``archive/c`` on both, ``media/nowhere`` fetchable from nowhere),
and reads them back through peer-1's: the pinset is the cluster's, not one peer's.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from pinsync import clusterpins
from pinsync.clusterpins import ClusterPin, ClusterPins, Selector, kubo_for
from pinsync.devenv import cluster, kubo
from pinsync.devenv.processes import free_port

from .record_cluster_answers import pin_examples

pytestmark = pytest.mark.asyncio(loop_scope="session")

Pair = tuple[cluster.Member, cluster.Member]
Connect = Callable[..., ClusterPins]


@pytest.fixture(scope="module")
def examples(cluster_pair: Pair) -> dict[str, str]:
    """{name: CID} of the example pins, settled (see the module docstring)."""
    return pin_examples(*cluster_pair)


@pytest.fixture
async def connect(cluster_pair: Pair) -> AsyncIterator[Connect]:
    """Builds clients of peer-1's REST API (good credentials unless given or ``anonymous``);
    closes them."""
    built: list[ClusterPins] = []
    peer = cluster_pair[1].peer

    def build(*, anonymous: bool = False, **credentials: str) -> ClusterPins:
        if not credentials and not anonymous:
            assert peer.auth is not None
            credentials = {"username": peer.auth[0], "password": peer.auth[1]}
        client = ClusterPins(peer.api_url, **credentials, timeout=30)
        built.append(client)
        return client

    yield build
    for client in built:
        await client.aclose()


async def pins_by_name(client: ClusterPins, **kwargs: bool) -> dict[str, ClusterPin]:
    return {pin.name: pin async for pin in client.pins(**kwargs)}


async def test_pins_streams_every_pin_with_the_peers_holding_it(
    connect: Connect, cluster_pair: Pair, examples: dict[str, str]
) -> None:
    first, second = (member.peer.peer_id for member in cluster_pair)
    pins = await pins_by_name(connect())
    assert {name: pin.cid for name, pin in pins.items()} == examples
    assert pins["media/a"].pinned_on == (first,)
    assert pins["media/b"].pinned_on == (second,)
    assert set(pins["archive/c"].pinned_on) == {first, second}
    assert pins["media/nowhere"].pinned_on == ()
    assert pins["media/b"].metadata == {"team": "media", "tier": "hot"}
    assert pins["archive/c"].metadata == {}
    only = await pins_by_name(connect(), pinned_only=True)
    assert {name: pin.pinned_on for name, pin in only.items()} == {
        name: pins[name].pinned_on for name in ("media/a", "media/b", "archive/c")
    }


async def test_peers_lists_both_peers_by_id_with_their_names(
    connect: Connect, cluster_pair: Pair
) -> None:
    expected = {member.peer.peer_id: member.peer.peername for member in cluster_pair}
    assert (
        await connect().peers()
        == expected
        == {
            cluster_pair[0].peer.peer_id: "peer-0",
            cluster_pair[1].peer.peer_id: "peer-1",
        }
    )


async def test_the_selector_filters_the_live_pinset_by_prefix_and_metadata(
    connect: Connect, cluster_pair: Pair, examples: dict[str, str]
) -> None:
    api_url = cluster_pair[1].peer.api_url
    pins = list((await pins_by_name(connect())).values())

    def chosen(prefix: str = "", **metadata: str) -> set[str]:
        selector = Selector(api_url, name_prefix=prefix, metadata=metadata)
        return {pin.name for pin in pins if selector.matches(pin)}

    assert chosen() == set(examples)
    assert chosen("media/") == {"media/a", "media/b", "media/nowhere"}
    assert chosen(team="media", tier="hot") == {"media/b"}
    assert chosen("archive/") == {"archive/c"} and chosen("archive/", team="media") == set()


def exports_offline(node: kubo.Kubo, cid: str) -> bool:
    """Whether ``node`` has the whole DAG of ``cid`` locally (an offline ``dag/export``)."""
    response = httpx.post(
        f"{node.api_url}/api/v0/dag/export", params={"arg": cid, "offline": "true"}, timeout=30
    )
    return response.status_code == 200 and len(response.content) > 0


async def test_kubo_for_is_the_kubo_of_a_peer_holding_the_pin_by_id_or_peername(
    connect: Connect, cluster_pair: Pair, examples: dict[str, str]
) -> None:
    first, second = cluster_pair
    client = connect()
    pins, names = await pins_by_name(client), await client.peers()
    default = "http://default-node:5001"
    by_id = {first.peer.peer_id: first.kubo.api_url, second.peer.peer_id: second.kubo.api_url}
    by_name = {"peer-1": second.kubo.api_url, "peer-0": first.kubo.api_url}
    for urls in (by_id, by_name):
        assert kubo_for(pins["media/a"], urls, names, default) == first.kubo.api_url
        assert kubo_for(pins["media/b"], urls, names, default) == second.kubo.api_url
        assert kubo_for(pins["media/nowhere"], urls, names, default) == default
    assert kubo_for(pins["archive/c"], by_id, names, default) == first.kubo.api_url
    assert kubo_for(pins["archive/c"], by_name, names, default) == second.kubo.api_url  # order
    assert kubo_for(pins["media/a"], {"peer-1": second.kubo.api_url}, names, default) == default
    # The chosen node really has the content; the other peer's node (not allocated) does not.
    assert exports_offline(first.kubo, examples["media/a"])
    assert not exports_offline(second.kubo, examples["media/a"])
    assert exports_offline(second.kubo, examples["media/b"])


async def test_credentials_basic_and_bearer_and_their_rejection(
    connect: Connect, cluster_pair: Pair, examples: dict[str, str]
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    for client in (connect(username="pinsync", password=wrong), connect(token=wrong)):
        for read in (client.peers, lambda c=client: pins_by_name(c)):
            with pytest.raises(clusterpins.ClusterError) as caught:
                await read()
            assert caught.value.reason == "AuthFailed" and not caught.value.retryable
            assert wrong not in str(caught.value)
    with pytest.raises(clusterpins.ClusterError) as caught:
        await connect(anonymous=True).peers()
    assert caught.value.reason == "AuthFailed"
    token = cluster_pair[1].peer.token()  # the JWT POST /token issues for the basic-auth user
    assert len(await pins_by_name(connect(token=token))) == len(examples)


async def test_an_unreachable_cluster_is_unreachable(connect: Connect) -> None:
    client = ClusterPins(f"http://127.0.0.1:{free_port()}", timeout=5)
    try:
        with pytest.raises(clusterpins.ClusterError) as caught:
            await pins_by_name(client)
        assert caught.value.reason == "Unreachable" and caught.value.retryable
        with pytest.raises(clusterpins.ClusterError) as caught:
            await client.peers()
        assert caught.value.reason == "Unreachable"
    finally:
        await client.aclose()
