"""The harness itself: real servers answer, and Kubo content round-trips as a CAR."""

from __future__ import annotations

import io
import pathlib

import httpx
import kubernetes

from pinsync.devenv import controlplane, kubo


def test_kubo_answers_id(ipfs: kubo.Kubo) -> None:
    response = httpx.post(f"{ipfs.api_url}/api/v0/id", timeout=10)
    assert response.status_code == 200
    assert response.json()["ID"]


def test_added_file_exports_as_a_car_that_reimports_to_the_same_root(ipfs: kubo.Kubo) -> None:
    data = b"pinsync harness smoke test\n" * 40_000  # > 1 MiB: several blocks
    cid = ipfs.add(data)
    car = ipfs.export_car(cid)
    # CARv1 starts with a varint-prefixed dag-cbor header naming the roots.
    assert car[1:2] == b"\xa2" and b"roots" in car[:64]
    response = httpx.post(
        f"{ipfs.api_url}/api/v0/dag/import",
        params={"pin-roots": "true", "stats": "true"},
        files={"file": ("x.car", io.BytesIO(car))},
        timeout=60,
    )
    response.raise_for_status()
    assert f'"Cid":{{"/":"{cid}"}}' in response.text
    cat = httpx.post(f"{ipfs.api_url}/api/v0/cat", params={"arg": cid}, timeout=60)
    assert cat.content == data


def test_apiserver_serves_the_crds(k8s: kubernetes.client.ApiClient) -> None:
    api = kubernetes.client.ApiextensionsV1Api(k8s)
    names = {crd.metadata.name for crd in api.list_custom_resource_definition().items}
    assert {"storagebackends.pinsync.io", "pinsets.pinsync.io"} <= names


def test_kubectl_explain_documents_fields(kubeconfig: pathlib.Path) -> None:
    out = controlplane.kubectl(kubeconfig, "explain", "storagebackends.spec.s3.forcePathStyle")
    assert "DESCRIPTION" in out and len(out.split("DESCRIPTION", 1)[1].strip()) > 10
