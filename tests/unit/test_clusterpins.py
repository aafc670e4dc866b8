"""Parsing and selecting a cluster's pinset (:mod:`pinsync.clusterpins`) on recorded answers.

``data/cluster_answers.json`` holds answers of a real ``ipfs-cluster-service`` v1.1.6: two CRDT
peers (peer-0, peer-1), each in front of its own Kubo, recorded by
``python -m tests.backends.record_cluster_answers`` (its docstring lists the four pins and
the situations). A tiny aiohttp server replays them here to the real client; the client against
the live cluster is ``tests/backends/test_clusterpins.py``.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from pinsync import clusterpins
from pinsync.clusterpins import ClusterPin, ClusterPins, JsonValues, Selector, kubo_for
from pinsync.devenv.processes import free_port

RECORDED: dict[str, Any] = json.loads(
    (pathlib.Path(__file__).parent / "data" / "cluster_answers.json").read_text()
)
ANSWERS: dict[str, dict[str, Any]] = RECORDED["answers"]
PEER_0, PEER_1 = RECORDED["peers"]["peer-0"], RECORDED["peers"]["peer-1"]
CIDS: dict[str, str] = RECORDED["cids"]
NAMES = {PEER_0: "peer-0", PEER_1: "peer-1"}


def parsed(answer: str, chunk: int | None = None) -> list[ClusterPin]:
    body = ANSWERS[answer]["body"]
    decoder = JsonValues(answer)
    step = chunk or max(1, len(body))
    values = [v for at in range(0, len(body), step) for v in decoder.feed(body[at : at + step])]
    decoder.close()
    return [ClusterPin.parse(value) for value in values]


def by_name(pins: list[ClusterPin]) -> dict[str, ClusterPin]:
    return {pin.name: pin for pin in pins}


def test_every_pin_is_parsed_with_the_peers_that_have_it_pinned() -> None:
    pins = by_name(parsed("pins"))
    assert set(pins) == set(CIDS)
    assert {name: pin.cid for name, pin in pins.items()} == CIDS
    assert pins["media/a"].pinned_on == (PEER_0,)  # peer-1: "remote"
    assert pins["media/b"].pinned_on == (PEER_1,)
    assert set(pins["archive/c"].pinned_on) == {PEER_0, PEER_1}
    assert pins["media/nowhere"].pinned_on == ()  # "pinning" on both
    assert pins["media/b"].metadata == {"team": "media", "tier": "hot"}
    assert pins["archive/c"].metadata == {}  # the cluster sends "metadata": null


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_the_stream_parses_the_same_in_any_pieces(chunk: int) -> None:
    assert parsed("pins", chunk) == parsed("pins")


def test_json_values_keeps_only_the_incomplete_value() -> None:
    line = ANSWERS["pins"]["body"].splitlines()[0]
    decoder = JsonValues("test")
    assert decoder.feed(line + "\n" + line[:40]) == [json.loads(line)]
    assert decoder.buffer == line[:40]
    assert decoder.feed(line[40:]) == [json.loads(line)] and decoder.buffer == ""
    decoder.feed(line[:10])
    with pytest.raises(clusterpins.ClusterError, match="cut off"):
        decoder.close()


def test_json_values_unpacks_an_array_and_refuses_what_is_not_objects() -> None:
    assert JsonValues("test").feed('[{"a": 1}, {"b": 2}] {"c": 3}') == [
        {"a": 1},
        {"b": 2},
        {"c": 3},
    ]
    with pytest.raises(ValueError, match="test: unexpected answer"):
        JsonValues("test", ValueError).feed("[1, 2]")


def test_filter_pinned_leaves_out_unheld_pins_and_remote_peers() -> None:
    pins = by_name(parsed("pins_filter_pinned"))
    assert set(pins) == {"media/a", "media/b", "archive/c"}
    assert pins["media/a"].pinned_on == (PEER_0,)
    for line in ANSWERS["pins_filter_pinned"]["body"].splitlines():
        statuses = {info["status"] for info in json.loads(line)["peer_map"].values()}
        assert statuses == {"pinned"}


def test_a_peer_whose_kubo_is_down_holds_nothing() -> None:
    pins = by_name(parsed("pins_one_kubo_down"))
    assert set(pins) == set(CIDS)
    assert pins["archive/c"].pinned_on == (PEER_0,)  # peer-1: cluster_error
    assert pins["media/b"].pinned_on == ()


def test_a_status_without_a_cid_is_refused() -> None:
    with pytest.raises(ValueError):
        ClusterPin.parse({"name": "x", "peer_map": {}})
    assert ClusterPin.parse({"cid": {"/": CIDS["media/a"]}}).cid == CIDS["media/a"]


def test_pins_are_hashable_and_equal_by_value() -> None:
    assert len(set(parsed("pins")) | set(parsed("pins"))) == len(CIDS)


def test_selector_filters_by_name_prefix_and_metadata() -> None:
    pins = parsed("pins")

    def chosen(**spec: Any) -> set[str]:
        selector = Selector.from_spec({"apiUrl": "http://cluster:9094", **spec})
        return {pin.name for pin in pins if selector.matches(pin)}

    assert chosen() == set(CIDS)
    assert chosen(namePrefix="media/") == {"media/a", "media/b", "media/nowhere"}
    assert chosen(metadata={"team": "media"}) == {"media/a", "media/b", "media/nowhere"}
    assert chosen(metadata={"team": "media", "tier": "hot"}) == {"media/b"}
    assert chosen(namePrefix="archive/", metadata={"team": "media"}) == set()
    assert chosen(metadata={"team": "Media"}) == set()
    assert Selector("http://c:9094") == Selector("http://c:9094", "", {})


def test_kubo_for_prefers_the_first_listed_peer_that_holds_the_pin() -> None:
    pins = by_name(parsed("pins"))
    urls = clusterpins.peer_urls(
        {
            "peers": [
                {"peer": "peer-1", "ipfsApiUrl": "http://ipfs-1:5001"},
                {"peer": PEER_0, "ipfsApiUrl": "http://ipfs-0:5001"},
            ]
        }
    )
    default = "http://default:5001"
    assert kubo_for(pins["media/a"], urls, NAMES, default) == "http://ipfs-0:5001"  # by ID
    assert kubo_for(pins["media/b"], urls, NAMES, default) == "http://ipfs-1:5001"  # by name
    assert kubo_for(pins["archive/c"], urls, NAMES, default) == "http://ipfs-1:5001"  # first
    assert kubo_for(pins["media/nowhere"], urls, NAMES, default) == default  # held nowhere
    assert kubo_for(pins["media/b"], urls, {}, default) == default  # peername unknown
    assert kubo_for(pins["archive/c"], {}, NAMES, default) == default  # no peers configured
    # Every holder, in spec order: a worker exports from the one on its own node.
    both = clusterpins.kubo_candidates(pins["archive/c"], urls, NAMES, default)
    assert both == ["http://ipfs-1:5001", "http://ipfs-0:5001"]


Replay = Callable[..., str]


@pytest_asyncio.fixture(loop_scope="function")  # served by the test's own loop
async def replay() -> AsyncIterator[Replay]:
    """A server replaying recorded answers: ``replay(pins="pins", ...)`` maps each path
    (``/pins``, ``/pins?filter=pinned`` as ``pins_filter_pinned``...) to a recorded answer and
    returns the server's URL. Bodies go out in small chunks; ``hits`` counts requests."""
    routes: dict[str, dict[str, Any]] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        key = request.path.strip("/") + "".join(f"_filter_{v}" for v in request.query.values())
        answer = routes.get(key) or {"status": 404, "body": "404 page not found\n"}
        response = web.StreamResponse(status=answer["status"])
        await response.prepare(request)
        body = answer["body"].encode()
        for at in range(0, len(body), 100):
            await response.write(body[at : at + 100])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")

    def serve(**answers: str | Mapping[str, Any]) -> str:
        for key, answer in answers.items():
            routes[key] = ANSWERS[answer] if isinstance(answer, str) else dict(answer)
        return url

    try:
        yield serve
    finally:
        await server.close()


async def read(url: str, **kwargs: Any) -> list[ClusterPin]:
    async with contextlib.aclosing(ClusterPins(url, **kwargs)) as client:
        return [pin async for pin in client.pins()]


@pytest.mark.asyncio(loop_scope="function")
async def test_the_client_streams_the_recorded_pinset_and_peers(replay: Replay) -> None:
    url = replay(pins="pins", pins_filter_pinned="pins_filter_pinned", peers="peers")
    assert by_name(await read(url)) == by_name(parsed("pins"))
    async with contextlib.aclosing(ClusterPins(url + "/")) as client:
        assert await client.peers() == NAMES
        assert [p async for p in client.pins(pinned_only=True)] == parsed("pins_filter_pinned")


@pytest.mark.asyncio(loop_scope="function")
async def test_an_empty_answer_is_an_error_unless_the_pinset_is_empty(replay: Replay) -> None:
    url = replay(pins="pins_all_kubos_down", allocations="allocations_all_kubos_down")
    with pytest.raises(clusterpins.ClusterError, match="listed no pin") as caught:
        await read(url)
    assert caught.value.reason == "ClusterError" and caught.value.retryable
    replay(allocations={"status": 204, "body": ""})
    assert await read(url) == []


@pytest.mark.asyncio(loop_scope="function")
async def test_rejected_credentials_are_auth_failed(replay: Replay) -> None:
    url = replay(pins="pins_wrong_password", peers="pins_wrong_password")
    with pytest.raises(clusterpins.ClusterError) as caught:
        await read(url, username="pinsync", password="not-this-one")
    assert caught.value.reason == "AuthFailed" and not caught.value.retryable
    assert "not-this-one" not in str(caught.value) and "401" in str(caught.value)
    replay(pins={"status": 403, "body": "forbidden"})
    with pytest.raises(clusterpins.ClusterError) as caught:
        await read(url, token="sekrit")
    assert caught.value.reason == "AuthFailed" and "sekrit" not in str(caught.value)


@pytest.mark.asyncio(loop_scope="function")
async def test_other_errors_quote_the_cluster_but_not_other_servers(replay: Replay) -> None:
    message = '{"code":500,"message":"could not get pinset from IPFS"}\n'
    url = replay(pins={"status": 500, "body": message})
    with pytest.raises(clusterpins.ClusterError, match="HTTP 500: could not get pinset"):
        await read(url)
    with pytest.raises(clusterpins.ClusterError, match="404: no IPFS Cluster REST API") as caught:
        await read(url + "/not-the-api")
    assert caught.value.reason == "ClusterError" and caught.value.retryable
    replay(pins={"status": 200, "body": '{"cid": "bafy'})
    with pytest.raises(clusterpins.ClusterError, match="cut off"):
        await read(url)
    replay(pins={"status": 200, "body": '{"name": "no cid"}'})
    with pytest.raises(clusterpins.ClusterError, match="without a CID"):
        await read(url)


@pytest.mark.asyncio(loop_scope="function")
async def test_unreachable_and_unusable_urls() -> None:
    with pytest.raises(clusterpins.ClusterError) as caught:
        await read(f"http://user:pw@127.0.0.1:{free_port()}/api?token=t")
    assert caught.value.reason == "Unreachable" and caught.value.retryable
    assert "pw" not in str(caught.value) and "token" not in str(caught.value)
    with pytest.raises(clusterpins.ClusterError) as caught:
        await read("ftp://cluster:9094")
    assert caught.value.reason == "InvalidConfig" and not caught.value.retryable
