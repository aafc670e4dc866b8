"""Argo CD's and Flux's verdicts on live pinsync objects, in every state the operator reports.

Each state is reached for real (the operator against the API server, Kubo and MinIO), the object
is read back as the API server serves it, and both verdicts are checked: Argo CD's through
``argocd/pinsync.io/<Kind>/health.lua`` on Lua 5.1, Flux's through kstatus (cli-utils).

``PINSYNC_RECORD_GITOPS=1`` also writes each object into ``argocd/pinsync.io/<Kind>/testdata/``
and its verdict into ``health_test.yaml`` -- how the recorded statuses that
``tests/unit/test_argocd_health.py`` checks were made, and how to refresh them after the status
shape changes:

    PINSYNC_RECORD_GITOPS=1 python3 -m pytest tests/e2e/test_gitops.py -q
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml

from pinsync.devenv import controlplane
from tests import gitops
from tests.e2e.conftest import World
from tests.e2e.test_cost import unfetchable
from tests.kubetools import Objects, eventually

pytestmark = pytest.mark.e2e

KINDS = {"storagebackends": "StorageBackend", "pinsets": "PinSet"}
# Fields that change on every run and say nothing about health: left out of recordings so a
# refresh shows only what changed in the status.
VOLATILE = ("managedFields", "uid", "resourceVersion", "creationTimestamp")


def live(world: World, objects: Objects, name: str) -> dict[str, Any]:
    """The object as the API server serves it to Argo CD and Flux (``kubectl get -o json``)."""
    text = controlplane.kubectl(
        world.operator.kubeconfig, "get", f"{objects.plural}.pinsync.io", name,
        "-n", world.namespace, "-o", "json",
    )  # fmt: skip
    obj: dict[str, Any] = json.loads(text)
    return obj


def judge(
    world: World,
    objects: Objects,
    name: str,
    state: str,
    *,
    argo: str,
    flux: str,
    obj: dict[str, Any] | None = None,
) -> None:
    """Assert both verdicts on the live object (or on ``obj``, read live by the caller); record
    it when asked to."""
    kind = KINDS[objects.plural]
    obj = obj or live(world, objects, name)
    health = gitops.argo_health(kind, obj)
    assert health["status"] == argo, (state, health, obj.get("status"))
    verdict = gitops.kstatus(obj)
    assert verdict["status"] == flux, (state, verdict, obj.get("status"))
    if os.environ.get("PINSYNC_RECORD_GITOPS"):
        record(kind, state, obj)


def caught_up(objects: Objects, name: str) -> None:
    """Wait until the operator has observed the current generation and found it Ready."""

    def check() -> bool:
        obj = objects.get(name)
        status = obj.get("status") or {}
        ready = [c for c in status.get("conditions") or () if c["type"] == "Ready"]
        generation = obj["metadata"]["generation"]
        return status.get("observedGeneration") == generation and ready[0]["status"] == "True"

    eventually(check, timeout=120)


def record(kind: str, state: str, obj: dict[str, Any]) -> None:
    for field in VOLATILE:
        obj["metadata"].pop(field, None)
    obj["metadata"].get("annotations", {}).pop("kopf.zalando.org/last-handled-configuration", None)
    # The test's random namespace, in metadata and in messages, becomes "default".
    obj = json.loads(json.dumps(obj).replace(obj["metadata"]["namespace"], "default"))
    health = gitops.argo_health(kind, obj)
    folder = gitops.ARGOCD / kind
    path = f"testdata/{state}.yaml"
    (folder / path).write_text(yaml.safe_dump(obj, sort_keys=False))
    tests_file = folder / "health_test.yaml"
    tests = yaml.safe_load(tests_file.read_text())["tests"] if tests_file.exists() else []
    tests = [t for t in tests if t["inputPath"] != path]
    tests.append({"healthStatus": health, "inputPath": path})
    tests.sort(key=lambda t: t["inputPath"])
    tests_file.write_text(yaml.safe_dump({"tests": tests}, sort_keys=False))


def test_storage_backend_verdicts_in_every_state(world: World) -> None:
    backends = world.backends
    backends.create(
        "nosecret",
        {
            "type": "s3",
            "s3": {
                "endpoint": world.s3server.endpoint,
                "bucket": "nowhere",
                "forcePathStyle": True,
            },
            "credentialsSecretRef": {"name": "absent"},
        },
    )
    backends.wait_condition("nosecret", "Stalled", "True", "SecretNotFound")
    judge(world, backends, "nosecret", "stalled", argo="Degraded", flux="Failed")

    backends.create(
        "down",
        {
            "type": "s3",
            "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "nowhere", "forcePathStyle": True},
            "credentialsSecretRef": {"name": "minio"},
        },
    )
    backends.wait_condition("down", "Healthy", "False", "Unreachable")
    judge(world, backends, "down", "unhealthy", argo="Degraded", flux="InProgress")

    cids = world.add(24, 1_000_000)
    world.backend(sync={"concurrency": 1})
    world.pinsets.create("p", {"cids": cids, "backends": ["minio"]})
    # Judged on the very read that saw the sync running: a later one may find it finished.
    running = eventually(
        lambda: obj if (obj := live(world, backends, "minio")).get("status", {}).get("phase")
        == "Syncing" else None,
        timeout=120, interval=0.05,
    )  # fmt: skip
    judge(world, backends, "minio", "syncing", argo="Progressing", flux="InProgress", obj=running)

    world.wait_synced(present=len(cids))
    judge(world, backends, "minio", "healthy", argo="Healthy", flux="Current")

    backends.patch("minio", {"spec": {"suspend": True}})
    backends.wait_condition("minio", "Ready", "False", "Suspended")
    # kstatus knows no suspension: Ready=False is InProgress, so Flux waits on a suspended one.
    judge(world, backends, "minio", "suspended", argo="Suspended", flux="InProgress")

    world.operator.stop()  # so that the operator's verdict lags the spec, as after any edit
    try:
        backends.patch("minio", {"spec": {"suspend": False}})
        judge(world, backends, "minio", "generation-lag", argo="Progressing", flux="InProgress")
        backends.create("fresh", backends.get("down")["spec"])
        # kstatus treats an object without status.observedGeneration as Current: Flux's
        # healthChecks cannot tell a backend nobody has reconciled yet from a Ready one.
        judge(world, backends, "fresh", "new", argo="Progressing", flux="Current")
    finally:
        world.operator.start()
    caught_up(backends, "minio")
    judge(world, backends, "minio", "healthy", argo="Healthy", flux="Current")


def test_pinset_verdicts_in_every_state(world: World) -> None:
    pinsets = world.pinsets
    world.backend()
    pinsets.create("lost", {"cids": world.add(1, 1000), "backends": ["nope"]})
    pinsets.wait_condition("lost", "Stalled", "True", "BackendNotFound")
    judge(world, pinsets, "lost", "stalled", argo="Degraded", flux="Failed")

    # A backend of its own: the pin that never arrives keeps it from being Synced.
    s3 = {"endpoint": world.s3server.endpoint, "bucket": world.bucket.name, "prefix": "retrying"}
    world.backend("retrying", s3={**s3, "forcePathStyle": True})
    pinsets.create(
        "unfetchable",
        {"cids": unfetchable(1), "backends": ["retrying"], "ipfs": {"pinTimeout": "500ms"}},
    )
    # No backend has it either: not a failed restore but a CID only the network may have.
    pinsets.wait_condition("unfetchable", "Reconciling", "True", "PinFailed", timeout=120)
    message = pinsets.condition("unfetchable", "Reconciling")["message"]  # type: ignore[index]
    assert "no backend holds it" in message and "PinTimeout" in message
    judge(world, pinsets, "unfetchable", "progressing", argo="Progressing", flux="InProgress")

    pinsets.create("p", {"cids": world.add(2, 1000), "backends": ["minio"]})
    caught_up(pinsets, "p")
    judge(world, pinsets, "p", "healthy", argo="Healthy", flux="Current")

    world.operator.stop()
    try:
        pinsets.patch("p", {"spec": {"cids": world.add(3, 1000)}})
        judge(world, pinsets, "p", "generation-lag", argo="Progressing", flux="InProgress")
        pinsets.create("fresh", {"cids": world.add(1, 1000), "backends": ["minio"]})
        judge(world, pinsets, "fresh", "new", argo="Progressing", flux="Current")
    finally:
        world.operator.start()
    caught_up(pinsets, "p")
    judge(world, pinsets, "p", "healthy", argo="Healthy", flux="Current")
