"""Restore end to end: pins synced to MinIO and an OpenSSH sftp server, then lost by the node
(``pin rm`` + ``repo gc``), come back from the backends byte-identical, through the operator.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pinsync.devenv import cluster, kubo, sshd
from tests.e2e.conftest import World
from tests.kubetools import create_secret, eventually

pytestmark = pytest.mark.e2e

REQUESTED_AT = "pinsync.io/restore-requested-at"


def sftp_backend(world: World, server: sshd.SSHD, name: str = "box", **spec: Any) -> pathlib.Path:
    directory = server.make_dir(f"{world.namespace}-{name}")
    create_secret(world.k8s, world.namespace, "ssh", {"privateKey": server.private_key})
    world.backends.create(
        name,
        {
            "type": "sftp",
            "sftp": {
                "host": server.host,
                "port": server.port,
                "username": server.username,
                "basePath": str(directory),
                "knownHosts": server.known_hosts,
            },
            "credentialsSecretRef": {"name": "ssh"},
            **spec,
        },
    )
    return directory


def api(world: World, command: str, **params: str) -> httpx.Response:
    return httpx.post(f"{world.ipfs.api_url}/api/v0/{command}", params=params, timeout=60)


def has_blocks(world: World, cid: str) -> bool:
    """Whether the node has the whole DAG locally (asked offline, so it answers at once)."""
    return api(world, "dag/stat", arg=cid, offline="true", progress="false").status_code == 200


def lose(world: World, cids: list[str]) -> None:
    """What a lost volume does to the node: the pins and their blocks are gone."""
    world.ipfs.ipfs("pin", "rm", *cids)
    world.ipfs.ipfs("repo", "gc")
    assert not any(has_blocks(world, cid) for cid in cids)


def node_pins(world: World) -> dict[str, str]:
    listed = api(world, "pin/ls", type="recursive", names="true").json()["Keys"]
    return {cid: info.get("Name", "") for cid, info in listed.items()}


def pinned_as(world: World, cids: list[str], name: str) -> bool:
    pins = node_pins(world)
    return all(pins.get(cid) == name for cid in cids)


def assert_intact(world: World, before: dict[str, bytes]) -> None:
    """Byte-identical ``dag export`` to before the loss, and ``ipfs pin verify`` passes."""
    for cid, car in before.items():
        assert world.ipfs.export_car(cid) == car
    verified = [
        json.loads(line)
        for line in world.ipfs.ipfs("pin", "verify", "--verbose", "--enc=json").splitlines()
    ]
    assert verified and all(entry["Ok"] for entry in verified)


def status_when(
    world: World, pinset: str, check: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict[str, Any]:
    """The PinSet's status, once ``check`` holds for it."""

    def ready() -> dict[str, Any] | None:
        status: dict[str, Any] = world.pinsets.get(pinset).get("status") or {}
        return status if check(status) else None

    found: dict[str, Any] = eventually(ready, timeout=timeout, interval=1)  # type: ignore[arg-type]
    return found


def request_restore(world: World, pinset: str, value: str) -> dict[str, Any]:
    world.pinsets.patch(pinset, {"metadata": {"annotations": {REQUESTED_AT: value}}})
    return status_when(world, pinset, lambda s: s.get("restoreRequestedAt") == value)


def samples(world: World, name: str) -> dict[str, float]:
    """``name``'s samples of this test's namespace, by backend."""
    scraped = httpx.get(world.operator.metrics_url, timeout=10).text
    return {
        s.labels["backend"]: s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.name == name and s.labels.get("namespace") == world.namespace
    }


def sync_to_both(world: World, server: sshd.SSHD, cids: list[str], **pinset: Any) -> None:
    world.backend(restorePriority=10)
    sftp_backend(world, server, restorePriority=20)
    world.pinsets.create("media", {"cids": cids, "backends": ["minio", "box"], **pinset})
    world.wait_synced("minio", present=len(cids))
    world.wait_synced("box", present=len(cids))
    world.pinsets.wait_condition("media", "Ready", "True")


def test_pins_the_node_lost_come_back_from_the_cheapest_backend_byte_identical(
    world: World, ssh_server: sshd.SSHD
) -> None:
    cids = [world.ipfs.add(os.urandom(size)) for size in (300_000, 3_000_000, 4096)]
    sync_to_both(world, ssh_server, cids)
    before = {cid: world.ipfs.export_car(cid) for cid in cids}
    lose(world, cids)

    # Auto (the default): the PinSet's next pass after the node's pin list is re-read.
    name = f"pinsync/{world.namespace}/media"
    eventually(lambda: pinned_as(world, cids, name), timeout=150, interval=1)
    assert_intact(world, before)
    status = status_when(world, "media", lambda s: s["counts"].get("restored") == 3)
    assert status["counts"]["restoreFailed"] == 0 and status["restoreFailures"] == []
    world.pinsets.wait_condition("media", "Ready", "True")
    events = [e for e in world.events() if e.reason == "Restored"]
    assert events and "minio: 3" in events[0].message
    assert samples(world, "pinsync_restored_pins_total") == {"minio": 3}
    assert samples(world, "pinsync_restored_bytes_total") == {
        "minio": sum(len(car) for car in before.values())
    }


def test_a_corrupted_copy_is_refused_and_the_next_backend_restores(
    world: World, ssh_server: sshd.SSHD
) -> None:
    cids = [world.ipfs.add(os.urandom(1_000_000))]
    sync_to_both(world, ssh_server, cids)
    before = {cid: world.ipfs.export_car(cid) for cid in cids}
    key = f"pins/{cids[0]}.car"
    good = world.bucket.read(key)
    middle = len(good) // 2
    world.bucket.write(key, good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1 :])
    lose(world, cids)

    status = request_restore(world, "media", "2026-12-02T04:00:00Z")
    assert status["counts"]["restored"] == 1
    assert pinned_as(world, cids, f"pinsync/{world.namespace}/media")
    assert_intact(world, before)
    assert samples(world, "pinsync_restored_pins_total") == {"box": 1}
    restored = [e.message for e in world.events() if e.reason == "Restored"]
    assert restored and "box: 1" in restored[0]


def test_a_pin_no_backend_holds_fails_with_its_reason_while_the_others_restore(
    world: World,
) -> None:
    cids = [world.ipfs.add(os.urandom(50_000)) for _ in range(3)]
    world.backend()
    world.pinsets.create(
        "media", {"cids": cids, "backends": ["minio"], "ipfs": {"pinTimeout": "1s"}}
    )
    world.wait_synced(present=3)
    gone = cids[0]
    world.bucket.delete(f"pins/{gone}.car")
    world.bucket.delete(f"pins/{gone}.json")
    lose(world, cids)

    status = request_restore(world, "media", "now")
    assert status["counts"]["restored"] == 2 and status["counts"]["restoreFailed"] == 1
    assert pinned_as(world, cids[1:], f"pinsync/{world.namespace}/media")
    assert gone not in node_pins(world)
    (failure,) = status["restoreFailures"]
    assert failure["cid"] == gone and failure["reason"] == "NotOnAnyBackend"
    assert failure["attempts"] >= 1 and failure["nextRetryAt"]  # Auto may have tried first
    assert "minio" in failure["message"]
    # Not a restore that failed (no backend has it any more): what the network fetch did.
    cond = world.pinsets.condition("media", "Reconciling")
    assert cond is not None and cond["status"] == "True"
    assert cond["reason"] in {"NotOnAnyBackend", "PinFailed"}, cond
    assert "RestoreFailed" in {e.reason for e in world.events()}


def test_manual_restore_waits_for_the_annotation(world: World) -> None:
    cids = [world.ipfs.add(os.urandom(200_000))]
    world.backend()
    spec = {"cids": cids, "backends": ["minio"], "restore": "Manual", "ipfs": {"pinTimeout": "1s"}}
    world.pinsets.create("media", spec)
    world.wait_synced(present=1)
    before = {cid: world.ipfs.export_car(cid) for cid in cids}
    lose(world, cids)

    # A pass that saw the pin missing asked the network (which has nothing) and restored nothing.
    status = status_when(world, "media", lambda s: bool(s.get("failures")), timeout=150)
    assert status["failures"][0]["reason"] == "PinTimeout"
    assert status["counts"]["restored"] == 0 and not has_blocks(world, cids[0])

    status = request_restore(world, "media", "2026-12-02T04:30:00Z")
    assert status["counts"]["restored"] == 1 and status["failures"] == []
    assert_intact(world, before)


@pytest.fixture(scope="module")
def cluster_peer(workdir: pathlib.Path, ipfs: kubo.Kubo) -> Iterator[cluster.IpfsCluster]:
    """An IPFS Cluster peer on a Kubo of its own, connected to the operator's node so that the
    cluster can fetch what the PinSet pins (and later serve it back)."""
    own = kubo.Kubo(workdir / "restore-cluster-kubo").start()
    peer = cluster.IpfsCluster(workdir / "restore-cluster", own.api_url)
    try:
        address = next(a for a in ipfs_id(ipfs)["Addresses"] if "/127.0.0.1/" in a)
        own.ipfs("swarm", "connect", address)
        yield peer.start()
    finally:
        peer.stop()
        own.stop()


def ipfs_id(node: kubo.Kubo) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.post(f"{node.api_url}/api/v0/id", timeout=30).json()
    return answer


def test_a_cluster_backend_restores_by_connecting_the_node_to_its_peers(
    world: World, cluster_peer: cluster.IpfsCluster
) -> None:
    cids = [world.ipfs.add(os.urandom(600_000))]
    prefix = f"pinsync-{world.namespace}/"
    world.backends.create(
        "cluster",
        {
            "type": "ipfsCluster",
            "ipfsCluster": {"apiUrl": cluster_peer.api_url, "pinNamePrefix": prefix},
        },
    )
    world.pinsets.create(
        "media", {"cids": cids, "backends": ["cluster"], "ipfs": {"pinTimeout": "30s"}}
    )
    world.wait_synced("cluster", present=1)
    before = {cid: world.ipfs.export_car(cid) for cid in cids}
    lose(world, cids)
    for peer in ipfs_id_peers(world):  # nothing left over from the sync: restore must connect
        world.ipfs.ipfs("swarm", "disconnect", peer)

    status = request_restore(world, "media", "from-the-cluster")
    assert status["counts"]["restored"] == 1
    assert pinned_as(world, cids, f"pinsync/{world.namespace}/media")
    assert_intact(world, before)
    assert samples(world, "pinsync_restored_pins_total") == {"cluster": 1}
    assert samples(world, "pinsync_restored_bytes_total") == {"cluster": 0}  # came over bitswap


def ipfs_id_peers(world: World) -> list[str]:
    """Multiaddrs (with /p2p/) of the peers the operator's node is connected to."""
    answer = api(world, "swarm/peers").json()
    return [f"{p['Addr']}/p2p/{p['Peer']}" for p in answer.get("Peers") or ()]
