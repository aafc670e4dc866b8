"""Big PinSets through ``kubectl apply``: server-side apply takes the schema's 20,000 CIDs, while
client-side apply stops at 4,224 (the README's figure) because it copies the whole object into
the ``kubectl.kubernetes.io/last-applied-configuration`` annotation, and an object's annotations
may total at most 262,144 bytes.

The real kubectl against the session's API server. The PinSets name a backend that does not
exist: the operator, if running, only reports ``BackendNotFound``; nothing here waits on it.
"""

from __future__ import annotations

import pathlib
import subprocess
from functools import cache

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from multiformats import CID, multihash

from pinsync import API_VERSION
from pinsync.devenv import controlplane
from tests.kubetools import Objects

pytestmark = pytest.mark.e2e

# Largest number of 59-character CIDs client-side apply takes (measured; README and CRD cite it).
CLIENT_SIDE_LIMIT = 4_224


@cache
def cids(count: int) -> list[str]:
    """``count`` distinct real CIDv1s (raw codec, sha2-256, base32: ``bafkrei…``, 59 characters)."""
    found = [
        str(CID("base32", 1, "raw", multihash.digest(i.to_bytes(8, "big"), "sha2-256")))
        for i in range(count)
    ]
    assert all(len(cid) == 59 and cid.startswith("bafkrei") for cid in found)
    return found


def manifest(tmp_path: pathlib.Path, namespace: str, name: str, count: int) -> pathlib.Path:
    """A PinSet file as kept in Git: ``count`` CIDs, one backend."""
    body = {
        "apiVersion": API_VERSION,
        "kind": "PinSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"cids": cids(20_000)[:count], "backends": ["no-such-backend"]},
    }
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.dump(body, Dumper=dumper))
    return path


def refusal(kubeconfig: pathlib.Path, *args: str) -> str:
    """kubectl's stderr for a command the API server must refuse."""
    with pytest.raises(subprocess.CalledProcessError) as caught:
        controlplane.kubectl(kubeconfig, *args)
    return str(caught.value.stderr)


def test_server_side_apply_takes_20000_cids(
    kubeconfig: pathlib.Path,
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: pathlib.Path,
) -> None:
    path = manifest(tmp_path, namespace, "big", 20_000)
    out = controlplane.kubectl(kubeconfig, "apply", "--server-side", "-f", str(path))
    assert "pinset.pinsync.io/big serverside-applied" in out
    stored = Objects(k8s, namespace, "pinsets").get("big")
    assert stored["spec"]["cids"] == cids(20_000)
    annotations = stored["metadata"].get("annotations") or {}
    assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations


def test_client_side_apply_stops_at_the_annotation_limit(
    kubeconfig: pathlib.Path,
    k8s: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: pathlib.Path,
) -> None:
    pinsets = Objects(k8s, namespace, "pinsets")
    error = refusal(kubeconfig, "apply", "-f", str(manifest(tmp_path, namespace, "big", 5_000)))
    # "Too long: may not be more than 262144 bytes" (older API servers: "must have at most").
    assert "metadata.annotations: Too long" in error and "262144 bytes" in error, error
    with pytest.raises(ApiException) as caught:
        pinsets.get("big")
    assert caught.value.status == 404

    # The README's figure, to the CID.
    edge = manifest(tmp_path, namespace, "edge", CLIENT_SIDE_LIMIT)
    assert "created" in controlplane.kubectl(kubeconfig, "apply", "-f", str(edge))
    assert len(pinsets.get("edge")["spec"]["cids"]) == CLIENT_SIDE_LIMIT
    over = manifest(tmp_path, namespace, "edge", CLIENT_SIDE_LIMIT + 1)
    assert "metadata.annotations: Too long" in refusal(kubeconfig, "apply", "-f", str(over))

    # Server-side apply takes the same file over, without conflicts, and drops the annotation.
    out = controlplane.kubectl(kubeconfig, "apply", "--server-side", "-f", str(over))
    assert "serverside-applied" in out
    stored = pinsets.get("edge")
    assert len(stored["spec"]["cids"]) == CLIENT_SIDE_LIMIT + 1
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (
        stored["metadata"].get("annotations") or {}
    )
