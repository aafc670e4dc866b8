"""RBAC for real: the operator's Pods act with their ServiceAccount token only, and a release
with ``namespaces`` listed reads Secrets in those namespaces only.

A release of its own, after test_realnode's is uninstalled (a cluster-wide release would serve
the same namespaces).
"""

from __future__ import annotations

import json
import pathlib
import time
import uuid
from collections.abc import Iterator

import pytest

from pinsync.devenv import kubo, minio, realnode, tools
from tests.e2e.conftest import Tenant
from tests.e2e.test_deploy import CHART, helm
from tests.e2e.test_realnode import install_values

pytestmark = pytest.mark.e2e
RELEASE, NAMESPACE = "scoped", "pinsync-scoped"

# What the Pod itself asks the API server, with the token Kubernetes mounted into it.
ASK = """
import json, ssl, sys, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
request = urllib.request.Request(
    "https://kubernetes.default.svc/api/v1/namespaces/%s/secrets",
    headers={"Authorization": "Bearer " + open(sa + "/token").read()})
try:
    urllib.request.urlopen(request, context=ssl.create_default_context(cafile=sa + "/ca.crt"))
    print(200)
except urllib.error.HTTPError as exc:
    print(exc.code)
"""


@pytest.fixture(scope="module")
def scoped(
    workdir: pathlib.Path, real_node: realnode.Node, host_servers: tuple[minio.MinIO, kubo.Kubo]
) -> Iterator[tuple[Tenant, str]]:
    """A release serving one namespace (a Tenant's); and a namespace it does not serve."""
    tenant = Tenant(real_node, host_servers[0])
    elsewhere = f"elsewhere-{uuid.uuid4().hex[:6]}"
    real_node.kubectl("create", "namespace", elsewhere)
    image = real_node.import_image(tools.image("operator"))
    kubeconfig = f"--kubeconfig={real_node.kubeconfig}"
    helm(workdir, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
         kubeconfig, *install_values(image, host_servers[1]),
         "--set-json", f'namespaces=["{tenant.namespace}"]')  # fmt: skip
    try:
        real_node.wait_rollout(NAMESPACE, f"deployment/{RELEASE}", timeout=180)
        yield tenant, elsewhere
    finally:
        helm(workdir, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", kubeconfig)


def pods(node: realnode.Node) -> list[str]:
    found = json.loads(node.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"]
    return [p["metadata"]["name"] for p in found]


def test_the_pods_token_reads_secrets_in_the_listed_namespace_only(
    real_node: realnode.Node, scoped: tuple[Tenant, str]
) -> None:
    tenant, elsewhere = scoped
    pod = pods(real_node)[0]

    def ask(namespace: str) -> str:
        script = ASK % namespace
        return real_node.kubectl("exec", "-n", NAMESPACE, pod, "--", "python3", "-c", script)

    assert ask(tenant.namespace).strip() == "200"
    assert ask(elsewhere).strip() == "403"
    assert ask("kube-system").strip() == "403"
    # Nor does the operator ask for more than it was granted (namespaces to discover: it was
    # given names).
    logs = real_node.kubectl("logs", "-n", NAMESPACE, pod)
    assert "forbidden" not in logs.lower(), logs[-3000:]


def test_a_refused_secret_is_a_condition_naming_the_refusal_not_a_crash_loop(
    real_node: realnode.Node, scoped: tuple[Tenant, str]
) -> None:
    tenant, _ = scoped
    # The release's grant in the tenant's namespace withdrawn, as a cluster admin might.
    real_node.kubectl("delete", "rolebinding", f"{RELEASE}-secrets", "-n", tenant.namespace)
    tenant.backend()
    condition = tenant.backends.wait_condition("minio", "Ready", "False", timeout=60)
    assert condition["reason"] == "SecretForbidden" and "403 Forbidden" in condition["message"]
    # kopf's watch of the namespace's Secrets is refused too; it retries for about a minute
    # (1+1+2+3+5+8+13+21 s) and then must not take the operator down.
    until = time.monotonic() + 75
    while time.monotonic() < until:
        statuses = json.loads(real_node.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))
        for pod in statuses["items"]:
            (container,) = pod["status"]["containerStatuses"]
            assert container["restartCount"] == 0 and container["ready"], container
        time.sleep(5)
    assert tenant.backends.condition("minio", "Ready") == condition  # still the reason shown
