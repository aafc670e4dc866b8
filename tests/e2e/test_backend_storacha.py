"""A ``type: storacha`` StorageBackend end to end: real API server, Kubo, the operator as a
subprocess, and the real Storacha upload service logic (npm ``@storacha/upload-api``) behind the
bridge contract fake of ``pinsync.devenv.storacha``. The bridge tokens travel through the
credentials Secret; what the space holds afterwards is read back through the service: each
pin an upload under its root CID whose shards, read back, are byte-identical to Kubo's ``dag
export`` (one pin is larger than ``shardSize`` and goes up in several shards).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import kubernetes
import pytest

from pinsync.backends import base, storacha
from pinsync.devenv import kubo
from pinsync.devenv import storacha as service
from tests.conftest import Operator
from tests.e2e.conftest import World
from tests.e2e.test_restore import assert_intact, lose, pinned_as, status_when
from tests.e2e.test_validation import backends as backend_objects
from tests.e2e.test_validation import rejection
from tests.kubetools import Objects, create_secret, eventually, wait_synced

pytestmark = pytest.mark.e2e


async def read_back(
    server: service.StorachaService, space: service.Space, cids: list[str]
) -> dict[str, bytes]:
    backend = storacha.StorachaBackend(
        {
            "spaceDid": space.did,
            "endpoint": server.url,
            "gateway": server.url,
            "serviceDid": service.SERVICE_DID,
        },
        base.Credentials(
            data={"xAuthSecret": space.x_auth_secret, "authorization": space.authorization}
        ),
    )
    try:
        listed = {info.cid async for info in backend.list_pins()}
        assert listed == set(cids)
        found = {}
        for cid in cids:
            found[cid] = b"".join([chunk async for chunk in backend.fetch_pin(cid)])
        assert [len(await backend.shards(cid)) for cid in cids] == [1, 1, 4]
        return found
    finally:
        await backend.aclose()


def space_backend(
    server: service.StorachaService,
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    backends: Objects,
    **spec: Any,
) -> service.Space:
    """A StorageBackend ``space`` on a fresh space, its bridge tokens in a Secret."""
    space = server.space()
    create_secret(
        k8s,
        namespace,
        "storacha",
        {"xAuthSecret": space.x_auth_secret, "authorization": space.authorization},
    )
    backends.create(
        "space",
        {
            "type": "storacha",
            "storacha": {
                "spaceDid": space.did,
                "endpoint": server.url,
                "gateway": server.url,
                "serviceDid": service.SERVICE_DID,
                "shardSize": 1024 * 1024,  # a 3 MiB pin goes up in 4 shards
            },
            "credentialsSecretRef": {"name": "storacha"},
            **spec,
        },
    )
    return space


def test_pinset_cids_are_uploaded_to_the_space_and_the_backend_is_synced(
    operator: Operator,
    storacha_service: service.StorachaService,
    ipfs: kubo.Kubo,
    k8s: kubernetes.client.ApiClient,
    namespace: str,
) -> None:
    backends = Objects(k8s, namespace, "storagebackends")
    space = space_backend(storacha_service, k8s, namespace, backends)
    backends.wait_condition("space", "Healthy", "True", timeout=60)
    cids = [ipfs.add(os.urandom(size)) for size in (300_000, 300_000, 3 * 1024 * 1024)]
    pinsets = Objects(k8s, namespace, "pinsets")
    pinsets.create("media", {"cids": cids, "backends": ["space"]})

    status = wait_synced(backends, "space", present=3)
    assert status["counts"] == {"desired": 3, "present": 3, "missing": 0, "failed": 0}
    assert status["lastSync"]["result"] == "Succeeded"
    backends.wait_condition("space", "Ready", "True", "Synced")
    stored = asyncio.run(read_back(storacha_service, space, cids))
    for cid in cids:
        assert stored[cid] == ipfs.export_car(cid), cid
    pinsets.wait_condition("media", "Ready", "True")
    log = operator.log()
    assert space.x_auth_secret not in log and space.authorization not in log


def test_pins_the_node_lost_come_back_from_the_space_byte_identical(
    world: World, storacha_service: service.StorachaService
) -> None:
    """Restore reads the shards back through the gateway and rebuilds each CAR."""
    space_backend(storacha_service, world.k8s, world.namespace, world.backends)
    cids = [world.ipfs.add(os.urandom(size)) for size in (300_000, 3 * 1024 * 1024)]
    world.pinsets.create("media", {"cids": cids, "backends": ["space"]})
    world.wait_synced("space", present=len(cids))
    before = {cid: world.ipfs.export_car(cid) for cid in cids}
    lose(world, cids)

    eventually(
        lambda: pinned_as(world, cids, f"pinsync/{world.namespace}/media"), timeout=150, interval=1
    )
    assert_intact(world, before)
    status = status_when(world, "media", lambda s: s["counts"].get("restored") == len(cids))
    assert status["counts"]["restoreFailed"] == 0


def test_with_writes_switched_off_the_backend_stalls_with_writes_disabled_and_still_restores(
    world: World, storacha_service: service.StorachaService
) -> None:
    """As the hosted service since 2026-05-15: a new pin cannot go up, so the backend says
    WritesDisabled (Stalled, still Healthy); pins the node lost still come back from it."""
    space_backend(storacha_service, world.k8s, world.namespace, world.backends)
    cids = [world.ipfs.add(os.urandom(300_000))]
    world.pinsets.create("media", {"cids": cids, "backends": ["space"]})
    world.wait_synced("space", present=1)
    before = {cid: world.ipfs.export_car(cid) for cid in cids}
    storacha_service.writes(disabled=True)
    try:
        world.pinsets.patch("media", {"spec": {"cids": [*cids, world.ipfs.add(os.urandom(999))]}})
        world.backends.wait_condition("space", "Stalled", "True", "WritesDisabled", timeout=90)
        conditions = {c["type"]: c for c in world.backends.get("space")["status"]["conditions"]}
        assert conditions["Ready"]["status"] == "False"
        assert "currently disabled" in conditions["Ready"]["message"]
        assert conditions["Healthy"]["status"] == "True"
        lose(world, cids)
        eventually(
            lambda: pinned_as(world, cids, f"pinsync/{world.namespace}/media"),
            timeout=150,
            interval=1,
        )
        assert_intact(world, before)
    finally:
        storacha_service.writes()


def test_tokens_for_another_space_stall_the_backend_with_space_not_delegated(
    operator: Operator,
    storacha_service: service.StorachaService,
    k8s: kubernetes.client.ApiClient,
    namespace: str,
) -> None:
    granted, other = storacha_service.space(), storacha_service.space()
    create_secret(
        k8s,
        namespace,
        "elsewhere",
        {"xAuthSecret": granted.x_auth_secret, "authorization": granted.authorization},
    )
    backends = Objects(k8s, namespace, "storagebackends")
    backends.create(
        "elsewhere",
        {
            "type": "storacha",
            "storacha": {"spaceDid": other.did, "endpoint": storacha_service.url},
            "credentialsSecretRef": {"name": "elsewhere"},
        },
    )
    backends.wait_condition("elsewhere", "Healthy", "False", "SpaceNotDelegated", timeout=60)


def test_the_schema_rejects_a_bad_storacha_block(
    k8s: kubernetes.client.ApiClient, namespace: str
) -> None:
    objects = backend_objects(k8s, namespace)

    def rejected(block: dict[str, object]) -> str:
        return rejection(objects, {"type": "storacha", "storacha": block})

    assert "spec.storacha must be set" in rejection(objects, {"type": "storacha"})
    assert "spaceDid" in rejected({"spaceDid": "did:web:example.com"})
    assert "https://" in rejected({"spaceDid": "did:key:z6Mkx", "gateway": "ftp://x"})
    assert "shardSize" in rejected({"spaceDid": "did:key:z6Mkx", "shardSize": 12})
    assert "serviceDid must be a DID" in rejected({"spaceDid": "did:key:z6Mkx", "serviceDid": "x"})
    objects.create("fine", {"type": "storacha", "storacha": {"spaceDid": "did:key:z6Mkx"}})
    spec = objects.get("fine")["spec"]["storacha"]
    assert spec == {
        "spaceDid": "did:key:z6Mkx",
        "endpoint": "https://up.storacha.network",
        "serviceDid": "did:web:up.storacha.network",
        "gateway": "https://storacha.link",
        "shardSize": 133169152,
    }
