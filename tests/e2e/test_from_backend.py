"""``spec.fromBackend`` end to end: leaving one backend for another with one PinSet.

Pins held only by an S3 bucket (synced there once, then the PinSet that wanted them deleted and
the node's copies lost) become a new PinSet's pins: restored onto the node from that bucket,
and replicated byte-identical to a second bucket, through the operator.
"""

from __future__ import annotations

import os

import kubernetes
import pytest

from pinsync.backends import layout
from pinsync.devenv import cluster, gitserver
from pinsync.devenv import storacha as service
from tests.e2e.conftest import Bucket, World
from tests.e2e.test_backend_storacha import space_backend
from tests.e2e.test_restore import lose, pinned_as
from tests.kubetools import create_secret, eventually

pytestmark = pytest.mark.e2e


def second_backend(world: World, name: str) -> Bucket:
    bucket = Bucket(world.s3server)
    world.backends.create(
        name,
        {
            "type": "s3",
            "s3": {
                "endpoint": world.s3server.endpoint,
                "bucket": bucket.name,
                "prefix": "moved",
                "forcePathStyle": True,
            },
            "credentialsSecretRef": {"name": "minio"},
        },
    )
    return bucket


def abandon(world: World, pinset: str) -> None:
    """Nobody wants the pins any more: the PinSet is gone (the operator never unpins, so
    wait for the object, not for the node)."""
    world.pinsets.delete(pinset)
    eventually(lambda: pinset not in world.pinsets.names(), timeout=60)


def test_pins_only_a_backend_holds_move_to_another_byte_identical(world: World) -> None:
    world.backend("old")
    cids = [world.ipfs.add(os.urandom(size)) for size in (200_000, 4096, 70_000)]
    world.pinsets.create("seed", {"cids": cids, "backends": ["old"]})
    world.wait_synced("old", present=3)
    before = {cid: world.ipfs.export_car(cid) for cid in cids}
    abandon(world, "seed")
    lose(world, cids)

    new = second_backend(world, "new")
    world.pinsets.create("move", {"fromBackend": {"name": "old"}, "backends": ["new"]})
    world.wait_synced("new", present=3, timeout=180)
    for cid, car in before.items():
        assert new.read(f"moved/{cid}.car") == car
    assert pinned_as(world, cids, f"pinsync/{world.namespace}/move")
    world.pinsets.wait_condition("move", "Ready", "True", timeout=60)
    status = world.pinsets.get("move")["status"]
    assert status["counts"]["restored"] == 3
    events = [e for e in world.events() if e.reason == "Restored"]
    assert any("old: 3" in e.message for e in events), [e.message for e in events]


def test_a_source_backend_that_does_not_exist_is_named_in_a_condition(world: World) -> None:
    world.backend()
    world.pinsets.create("orphan", {"fromBackend": {"name": "nowhere"}, "backends": ["minio"]})
    cond = world.pinsets.wait_condition(
        "orphan", "Ready", "False", reason="SourceBackendNotFound", timeout=60
    )
    assert "nowhere" in cond["message"]


def test_a_source_that_is_also_a_target_is_refused_by_the_schema(world: World) -> None:
    with pytest.raises(kubernetes.client.ApiException) as refused:
        world.pinsets.create("loop", {"fromBackend": {"name": "a"}, "backends": ["a"]})
    assert "spec.fromBackend names a backend that spec.backends also targets" in refused.value.body


def test_a_pinning_services_pins_move_to_a_git_repository(
    world: World, ipfs_cluster: cluster.IpfsCluster, git_server: gitserver.GitServer
) -> None:
    """Leaving a pinning service (the cluster's real pinsvcapi) for a git host: what the
    service lists becomes the PinSet's pins, committed to git byte-identical."""
    create_secret(world.k8s, world.namespace, "psa", {"token": ipfs_cluster.token()})
    world.backends.create(
        "service",
        {
            "type": "pinningService",
            "pinningService": {
                "endpoint": ipfs_cluster.pinsvc_url,
                "namePrefix": f"pinsync-{world.namespace}/",
            },
            "credentialsSecretRef": {"name": "psa"},
        },
    )
    cids = [world.ipfs.add(os.urandom(size)) for size in (150_000, 3000)]
    world.pinsets.create("seed", {"cids": cids, "backends": ["service"]})
    world.wait_synced("service", present=2)
    abandon(world, "seed")

    repo = git_server.make_repo(world.namespace)
    create_secret(world.k8s, world.namespace, "git", {"token": git_server.token})
    world.backends.create(
        "repo",
        {
            "type": "github",
            "github": {"url": git_server.repo_url(world.namespace), "basePath": "ipfs"},
            "credentialsSecretRef": {"name": "git"},
        },
    )
    world.pinsets.create("move", {"fromBackend": {"name": "service"}, "backends": ["repo"]})
    world.wait_synced("repo", present=2, timeout=180)
    for cid in cids:
        where = f"ipfs/{layout.shard(cid)}/{cid}.car"
        assert gitserver.git("show", f"refs/heads/main:{where}", cwd=repo) == (
            world.ipfs.export_car(cid)
        )
    world.pinsets.wait_condition("move", "Ready", "True", timeout=60)


def test_a_storacha_space_that_takes_no_writes_moves_to_s3(
    world: World, storacha_service: service.StorachaService
) -> None:
    """Leaving Storacha as its users must since 2026-05-15: writes are off, reads work; the
    space's pins come back onto the node from it and go to S3 byte-identical."""
    space_backend(storacha_service, world.k8s, world.namespace, world.backends)
    cids = [world.ipfs.add(os.urandom(size)) for size in (300_000, 2 * 1024 * 1024)]
    world.pinsets.create("seed", {"cids": cids, "backends": ["space"]})
    world.wait_synced("space", present=2)
    before = {cid: world.ipfs.export_car(cid) for cid in cids}
    abandon(world, "seed")
    lose(world, cids)
    storacha_service.writes(disabled=True)
    try:
        new = second_backend(world, "s3")
        world.pinsets.create("move", {"fromBackend": {"name": "space"}, "backends": ["s3"]})
        world.wait_synced("s3", present=2, timeout=240)
        for cid, car in before.items():
            assert new.read(f"moved/{cid}.car") == car
        assert pinned_as(world, cids, f"pinsync/{world.namespace}/move")
        assert world.pinsets.get("move")["status"]["counts"]["restored"] == 2
    finally:
        storacha_service.writes()
