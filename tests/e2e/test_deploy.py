"""Deployable as shipped: manifests/ and the chart render, lint and apply on a fresh API server,
their RBAC grants what the README says (checked with ``kubectl auth can-i``), the dashboard
charts metrics the operator really exports, and the image's install steps yield a working
``pinsync`` without the test harness.

A control plane of its own: on the session's, other tests have already created namespaces and
RBAC, so "applies on a fresh cluster" would not be tested.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from pinsync.devenv import controlplane, tools
from tests.conftest import ROOT, Operator, control_plane
from tests.kubetools import eventually

pytestmark = pytest.mark.e2e
CHART = ROOT / "helm" / "pinsync"
DASHBOARD = ROOT / "manifests" / "grafana-dashboard.json"
# What the chart renders with every optional part switched on and the namespaced Secret shape.
CUSTOM = [
    "--set-json", 'namespaces=["team-a","team-b"]',
    "--set", "metrics.serviceMonitor.enabled=true",
    "--set", "metrics.serviceMonitor.labels.release=prometheus",
    "--set", "metrics.port=9400",
    "--set", "image.tag=0.1.0-test",
    "--set", "replicas=0",
]  # fmt: skip
WORKERS = ["--set", "workers.replicas=2"]
WORKERS_COMPONENT = ROOT / "manifests" / "optional" / "workers"
SHARD_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"],
     "verbs": ["create", "list", "get", "delete", "deletecollection"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["create", "list", "get", "delete", "deletecollection"]},
]  # fmt: skip
"""What the operator needs to publish shards for workers, and only with workers."""


@pytest.fixture(scope="module")
def fresh(workdir: pathlib.Path) -> Iterator[pathlib.Path]:
    """A control plane nobody has used, with pinsync's CRDs applied as README says."""
    with control_plane(workdir / "fresh-controlplane") as kubeconfig:
        yield kubeconfig


def helm(workdir: pathlib.Path, *args: str) -> str:
    home = workdir / "helm-home"  # helm's cache and config, kept out of $HOME
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    done = subprocess.run(
        [str(tools.binary("helm")), *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def container(docs: list[dict[str, Any]], name: str | None = None) -> dict[str, Any]:
    deployment = one(docs, "Deployment", name)
    found: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return found


def with_workers(path: pathlib.Path) -> pathlib.Path:
    """An overlay of manifests/ with the optional workers component, as README shows."""
    path.mkdir(parents=True, exist_ok=True)
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "manifests", path)],
        "components": [os.path.relpath(WORKERS_COMPONENT, path)],
    }
    (path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    return path


def can_i(kubeconfig: pathlib.Path, account: str, *args: str) -> bool:
    answer = controlplane.kubectl_status(kubeconfig, "auth", "can-i", *args, f"--as={account}")
    assert answer in {"yes", "no"}, answer
    return answer == "yes"


# -- manifests/ -----------------------------------------------------------------------------------


def test_manifests_apply_on_a_fresh_cluster_dry_run_then_for_real(fresh: pathlib.Path) -> None:
    rendered = controlplane.kubectl(fresh, "kustomize", str(ROOT / "manifests"))
    kinds = [d["kind"] for d in documents(rendered)]
    assert kinds.index("Namespace") < kinds.index("Deployment")
    # A server-side dry run validates and admits every object but persists none, the Namespace
    # included, so on a fresh cluster it can pass only the cluster-scoped ones: the rest fail
    # with that NotFound and nothing else. After the real apply, a dry run passes for all.
    dry = subprocess.run(
        ["kubectl", f"--kubeconfig={fresh}", "apply", "--server-side", "--dry-run=server",
         "-k", str(ROOT / "manifests")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    namespaced = [d for d in documents(rendered) if "namespace" in d["metadata"]]
    assert dry.returncode == 1
    assert dry.stderr.splitlines() == ['Error from server (NotFound): namespaces "pinsync-system"'
                                       ' not found'] * len(namespaced), dry.stderr  # fmt: skip
    assert "namespace/pinsync-system serverside-applied (server dry run)" in dry.stdout
    assert "pinsync-system" not in controlplane.kubectl(fresh, "get", "namespaces", "-o", "name")

    applied = controlplane.kubectl(fresh, "apply", "-k", str(ROOT / "manifests"))
    for name in (
        "namespace/pinsync-system",
        "serviceaccount/pinsync",
        "clusterrole.rbac.authorization.k8s.io/pinsync",
        "configmap/pinsync-dashboard",
        "service/pinsync-metrics",
        "deployment.apps/pinsync",
    ):
        assert f"{name} created" in applied, applied
    again = controlplane.kubectl(fresh, "apply", "-k", str(ROOT / "manifests"), "--dry-run=server")
    assert "deployment.apps/pinsync unchanged (server dry run)" in again

    deployment = json.loads(
        controlplane.kubectl(fresh, "get", "deploy/pinsync", "-n", "pinsync-system", "-o", "json")
    )
    operator = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=8000" in operator["args"]
    assert {"name": "metrics", "containerPort": 8000, "protocol": "TCP"} in operator["ports"]
    dashboard = json.loads(
        controlplane.kubectl(fresh, "get", "cm/pinsync-dashboard", "-n", "pinsync-system",
                             "-o", "json")
    )  # fmt: skip
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["pinsync.json"]) == json.loads(DASHBOARD.read_text())


def install_service_monitor_crd(kubeconfig: pathlib.Path) -> None:
    """The Prometheus Operator's real ServiceMonitor CRD (from its Go module, cached)."""
    crd = tools.binary("servicemonitor-crd")
    controlplane.kubectl(kubeconfig, "apply", "--server-side", "-f", str(crd))
    controlplane.kubectl(
        kubeconfig, "wait", "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
    )  # fmt: skip


def test_the_optional_service_monitor_applies_where_the_prometheus_operator_is(
    fresh: pathlib.Path,
) -> None:
    install_service_monitor_crd(fresh)
    monitor = ROOT / "manifests" / "optional" / "servicemonitor.yaml"
    controlplane.kubectl_status(fresh, "create", "namespace", "pinsync-system")
    done = controlplane.kubectl(fresh, "apply", "--dry-run=server", "-f", str(monitor))
    assert "servicemonitor.monitoring.coreos.com/pinsync created (server dry run)" in done


def test_the_manifests_service_account_reads_secrets_cluster_wide(fresh: pathlib.Path) -> None:
    controlplane.kubectl(fresh, "apply", "-k", str(ROOT / "manifests"))
    account = "system:serviceaccount:pinsync-system:pinsync"
    assert can_i(fresh, account, "list", "secrets", "--all-namespaces")
    assert can_i(fresh, account, "watch", "storagebackends.pinsync.io", "--all-namespaces")
    assert not can_i(fresh, account, "create", "secrets", "-n", "default")
    assert not can_i(fresh, account, "delete", "pinsets.pinsync.io", "-n", "default")


# -- the chart ------------------------------------------------------------------------------------


def test_helm_lint_passes_with_default_and_custom_values(workdir: pathlib.Path) -> None:
    helm(workdir, "lint", "--strict", str(CHART))
    helm(workdir, "lint", "--strict", str(CHART), *CUSTOM)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (["--set", "globalConcurrency=0"], "/globalConcurrency"),
        (["--set", "metrics.port=8080"], "/metrics/port"),  # the liveness port
        (["--set", "ipfsApiUrl=ipfs:5001"], "/ipfsApiUrl"),
        (["--set-json", 'namespaces=["Team_A"]'], "/namespaces/0"),
        (["--set", "replica=2"], "replica"),  # a typo is refused, not ignored
        (["--set", "workers.replicas=-1"], "/workers/replicas"),
        (["--set", "workers.maxShards=0"], "/workers/maxShards"),
        (["--set", "workers.nearKubo=kubo:5001"], "/workers/nearKubo"),
        (["--set", "workers.replica=2"], "replica"),
    ],
)
def test_values_outside_the_schema_are_refused(
    workdir: pathlib.Path, values: list[str], complaint: str
) -> None:
    with pytest.raises(AssertionError) as refused:
        helm(workdir, "template", "pinsync", str(CHART), *values)
    assert "schema" in str(refused.value) and complaint in str(refused.value)


def test_the_default_chart_renders_what_manifests_ship(workdir: pathlib.Path) -> None:
    chart = documents(helm(workdir, "template", "pinsync", str(CHART), "-n", "pinsync-system"))
    manifests = documents(
        subprocess.run(
            ["kubectl", "kustomize", str(ROOT / "manifests")],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert one(chart, "ClusterRole")["rules"] == one(manifests, "ClusterRole")["rules"]
    assert container(chart)["args"] == container(manifests)["args"]
    assert container(chart)["ports"] == container(manifests)["ports"]
    assert one(chart, "Service")["spec"]["ports"] == one(manifests, "Service")["spec"]["ports"]
    board = one(chart, "ConfigMap", "pinsync-dashboard")
    assert json.loads(board["data"]["pinsync.json"]) == json.loads(DASHBOARD.read_text())
    assert not [d for d in chart if d["kind"] in {"ServiceMonitor", "Role", "RoleBinding"}]
    assert "PINSYNC_NAMESPACES" not in {e["name"] for e in container(chart)["env"]}
    # No workers by default: the operator transfers in-process, and needs no shard grants.
    assert [d["metadata"]["name"] for d in chart if d["kind"] == "Deployment"] == ["pinsync"]
    assert "PINSYNC_WORKERS" not in {e["name"] for e in container(chart)["env"]}
    assert not [r for r in one(chart, "ClusterRole")["rules"] if r in SHARD_RULES]


def test_custom_values_render_namespaced_secret_access_and_the_service_monitor(
    workdir: pathlib.Path,
) -> None:
    docs = documents(helm(workdir, "template", "ps", str(CHART), "-n", "ops", *CUSTOM))
    rules = one(docs, "ClusterRole")["rules"]
    assert not [r for r in rules if "secrets" in r["resources"]]
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(r["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                               "verbs": ["get", "list", "watch"]}] for r in roles)  # fmt: skip
    env = {e["name"]: e.get("value") for e in container(docs)["env"]}
    assert env["PINSYNC_NAMESPACES"] == "team-a,team-b"
    assert "POD_NAME" in env  # the peering priority is derived from it
    assert "--metrics-port=9400" in container(docs)["args"]
    assert container(docs)["image"] == "ghcr.io/pinsync/pinsync:0.1.0-test"
    assert one(docs, "Deployment")["spec"]["replicas"] == 0
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 9400


def test_workers_render_a_worker_deployment_as_manifests_optional_workers_ship(
    workdir: pathlib.Path,
) -> None:
    chart = documents(helm(workdir, "template", "pinsync", str(CHART), "-n", "pinsync-system",
                           *WORKERS))  # fmt: skip
    manifests = documents(
        subprocess.run(
            ["kubectl", "kustomize", str(with_workers(workdir / "workers-overlay"))],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    for docs in (chart, manifests):
        operator, worker = container(docs, "pinsync"), container(docs, "pinsync-worker")
        assert {"name": "PINSYNC_WORKERS", "value": "2"} in operator["env"]
        assert one(docs, "Deployment", "pinsync-worker")["spec"]["replicas"] == 2
        assert worker["args"][0] == "worker" and "--max-shards=2" in worker["args"]
        assert worker["securityContext"] == operator["securityContext"]
        pods = [one(docs, "Deployment", n)["spec"]["template"]["spec"] for n in
                ("pinsync", "pinsync-worker")]  # fmt: skip
        assert pods[0]["securityContext"] == pods[1]["securityContext"]
        assert pods[1]["serviceAccountName"] == "pinsync-worker"
        assert "POD_NAME" in {e["name"] for e in worker["env"]}  # its name in the Leases
        assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        # The operator's Deployment must not select the workers' Pods.
        selector = one(docs, "Deployment", "pinsync")["spec"]["selector"]["matchLabels"]
        labels = one(docs, "Deployment", "pinsync-worker")["spec"]["template"]["metadata"]
        assert not selector.items() <= labels["labels"].items()
        rules = one(docs, "ClusterRole", "pinsync")["rules"]
        assert [r for r in rules if r in SHARD_RULES] == SHARD_RULES
    for name in ("pinsync", "pinsync-worker"):
        assert (
            one(chart, "ClusterRole", name)["rules"] == one(manifests, "ClusterRole", name)["rules"]
        )
        assert container(chart, name)["args"] == container(manifests, name)["args"]
        assert container(chart, name)["resources"] == container(manifests, name)["resources"]


def test_workers_in_listed_namespaces_get_roles_there_and_near_kubo_uses_the_host_ip(
    workdir: pathlib.Path,
) -> None:
    docs = documents(helm(workdir, "template", "ps", str(CHART), "-n", "ops", *CUSTOM, *WORKERS,
                          "--set", "workers.nearKubo=http://$(HOST_IP):5001",
                          "--set", "workers.maxShards=3"))  # fmt: skip
    assert not [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] != "ps"]
    assert not [r for r in one(docs, "ClusterRole", "ps")["rules"] if r in SHARD_RULES]
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d["rules"]
             for d in docs if d["kind"] == "Role"}  # fmt: skip
    assert set(roles) == {(ns, name) for ns in ("team-a", "team-b")
                          for name in ("ps-secrets", "ps-shards", "ps-worker")}  # fmt: skip
    assert roles["team-a", "ps-shards"] == SHARD_RULES
    assert roles["team-b", "ps-worker"] == [
        {"apiGroups": ["pinsync.io"], "resources": ["storagebackends"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["list", "get", "update"]},
    ]  # fmt: skip
    bound = {(d["metadata"]["namespace"], d["roleRef"]["name"]): d["subjects"][0]["name"]
             for d in docs if d["kind"] == "RoleBinding"}  # fmt: skip
    assert bound["team-a", "ps-worker"] == "ps-worker" and bound["team-a", "ps-shards"] == "ps"
    worker = container(docs, "ps-worker")
    assert "--max-shards=3" in worker["args"]
    assert worker["image"] == "ghcr.io/pinsync/pinsync:0.1.0-test"
    env = [e["name"] for e in worker["env"]]
    # $(HOST_IP) expands only from a variable defined before it.
    assert env.index("HOST_IP") < env.index("PINSYNC_NEAR_KUBO")
    values = {e["name"]: e.get("value") or e.get("valueFrom") for e in worker["env"]}
    assert values["HOST_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert values["PINSYNC_NEAR_KUBO"] == "http://$(HOST_IP):5001"
    assert values["PINSYNC_NAMESPACES"] == "team-a,team-b"
    assert values["PINSYNC_LEASE_SECONDS"] == "15"
    assert {"name": "PINSYNC_LEASE_SECONDS", "value": "15"} in container(docs, "ps")["env"]


@pytest.mark.parametrize("shape", ["default", "custom", "workers"])
def test_the_rendered_chart_passes_a_server_side_dry_run(
    workdir: pathlib.Path, fresh: pathlib.Path, shape: str
) -> None:
    values = {"default": [], "custom": CUSTOM, "workers": [*CUSTOM, *WORKERS]}[shape]
    release = f"dry-{shape}"
    for namespace in (release, "team-a", "team-b"):
        controlplane.kubectl_status(fresh, "create", "namespace", namespace)
    if shape != "default":  # the ServiceMonitor needs its CRD
        install_service_monitor_crd(fresh)
    rendered = helm(workdir, "template", release, str(CHART), "-n", release, *values)
    done = controlplane.kubectl(
        fresh, "apply", "--server-side", "--dry-run=server", "-f", "-", input=rendered
    )
    lines = done.splitlines()
    assert len(lines) == len(documents(rendered)), done
    assert all(line.endswith("serverside-applied (server dry run)") for line in lines), done


def test_helm_install_grants_secrets_cluster_wide_or_only_in_listed_namespaces(
    workdir: pathlib.Path, fresh: pathlib.Path
) -> None:
    for namespace in ("team-a", "team-b", "elsewhere"):
        controlplane.kubectl_status(fresh, "create", "namespace", namespace)
    kubeconfig = f"--kubeconfig={fresh}"
    helm(workdir, "install", "wide", str(CHART), "-n", "wide", "--create-namespace", kubeconfig)
    helm(workdir, "install", "scoped", str(CHART), "-n", "scoped", "--create-namespace",
         kubeconfig, "--set-json", 'namespaces=["team-a","team-b"]')  # fmt: skip
    wide = "system:serviceaccount:wide:wide"
    scoped = "system:serviceaccount:scoped:scoped"

    assert can_i(fresh, wide, "list", "secrets", "--all-namespaces")
    assert can_i(fresh, wide, "get", "secrets", "-n", "elsewhere")

    assert not can_i(fresh, scoped, "list", "secrets", "--all-namespaces")
    assert not can_i(fresh, scoped, "get", "secrets", "-n", "elsewhere")
    for namespace in ("team-a", "team-b"):
        for verb in ("get", "list", "watch"):
            assert can_i(fresh, scoped, verb, "secrets", "-n", namespace)
        assert not can_i(fresh, scoped, "create", "secrets", "-n", namespace)
    # Its own resources and Events it still needs wherever it serves.
    assert can_i(fresh, scoped, "patch", "storagebackends.pinsync.io/status", "-n", "team-a")
    assert can_i(fresh, scoped, "create", "events", "-n", "team-b")

    listed = json.loads(helm(workdir, "list", "-A", "-o", "json", kubeconfig))
    assert {r["name"]: r["status"] for r in listed} == {"wide": "deployed", "scoped": "deployed"}


def test_workers_and_the_operator_get_what_they_need_for_shards_and_nothing_more(
    workdir: pathlib.Path, fresh: pathlib.Path
) -> None:
    for namespace in ("team-c", "elsewhere"):
        controlplane.kubectl_status(fresh, "create", "namespace", namespace)
    kubeconfig = f"--kubeconfig={fresh}"
    helm(workdir, "install", "crew", str(CHART), "-n", "crew", "--create-namespace", kubeconfig,
         *WORKERS)  # fmt: skip
    helm(workdir, "install", "team", str(CHART), "-n", "team", "--create-namespace", kubeconfig,
         *WORKERS, "--set-json", 'namespaces=["team-c"]')  # fmt: skip
    controlplane.kubectl(fresh, "apply", "-k", str(with_workers(workdir / "workers-apply")))

    for operator, worker, served, unserved in (
        ("crew:crew", "crew:crew-worker", "elsewhere", None),
        ("team:team", "team:team-worker", "team-c", "elsewhere"),
        ("pinsync-system:pinsync", "pinsync-system:pinsync-worker", "elsewhere", None),
    ):
        operator, worker = (f"system:serviceaccount:{a}" for a in (operator, worker))
        ns = ["-n", served]
        for verb in ("get", "list", "update"):
            assert can_i(fresh, worker, verb, "leases.coordination.k8s.io", *ns), (worker, verb)
        for what in ("configmaps", "secrets", "storagebackends.pinsync.io"):
            assert can_i(fresh, worker, "get", what, *ns), (worker, what)
        for verb, what in (
            ("create", "leases.coordination.k8s.io"),
            ("delete", "leases.coordination.k8s.io"),
            ("watch", "leases.coordination.k8s.io"),
            ("create", "configmaps"),
            ("update", "configmaps"),
            ("list", "secrets"),
            ("list", "storagebackends.pinsync.io"),
            ("update", "storagebackends.pinsync.io"),
            ("patch", "storagebackends.pinsync.io/status"),
            ("create", "events"),
        ):
            assert not can_i(fresh, worker, verb, what, *ns), (worker, verb, what)
        for verb in ("create", "list", "get", "delete", "deletecollection"):
            for what in ("leases.coordination.k8s.io", "configmaps"):
                assert can_i(fresh, operator, verb, what, *ns), (operator, verb, what)
        assert not can_i(fresh, operator, "update", "leases.coordination.k8s.io", *ns)
        if unserved is not None:
            assert not can_i(fresh, worker, "get", "secrets", "-n", unserved)
            assert not can_i(fresh, worker, "list", "leases.coordination.k8s.io", "-n", unserved)
            assert not can_i(fresh, operator, "create", "configmaps", "-n", unserved)
        else:  # serving the whole cluster: a worker lists shards in every namespace at once
            assert can_i(fresh, worker, "list", "leases.coordination.k8s.io", "--all-namespaces")


# -- metrics and the image ------------------------------------------------------------------------


def test_the_dashboard_charts_only_metrics_the_operator_exports(operator: Operator) -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    charted = {m for e in exprs for m in re.findall(r"\b(?:pinsync|process)_[a-z_]+\b", e)}

    def scrape() -> str | None:
        try:  # the operator may still be starting
            return httpx.get(operator.metrics_url, timeout=10).text
        except httpx.TransportError:
            return None

    text = eventually(scrape, timeout=60)
    # Every family has its TYPE line, samples or not; a counter's is named <family>_total,
    # and a counter's creation time is a family <family>_created of its own.
    families = {re.sub(r"_total$", "", f) for f in re.findall(r"^# TYPE (\S+) ", text, re.M)}
    charted = {re.sub(r"_total$", "", m) for m in charted}
    assert charted <= families, charted - families
    ours = {f for f in families if f.startswith("pinsync_") and not f.endswith("_created")}
    assert ours <= charted, f"not charted: {ours - charted}"


def test_the_image_install_steps_give_a_pinsync_without_the_test_harness(
    workdir: pathlib.Path,
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    steps = [
        "COPY pyproject.toml README.md ./",
        "COPY operator ./operator",
        "RUN rm -rf operator/pinsync/devenv && pip wheel --no-cache-dir --no-deps"
        " --wheel-dir /wheels .",
        "RUN pip install --no-cache-dir /wheels/*.whl",
    ]
    for step in steps:
        assert step in dockerfile, f"the Dockerfile changed: update this test ({step})"
    # The same steps, in a build context and a fresh venv standing in for the image.
    context, wheels, venv = workdir / "image-src", workdir / "image-wheels", workdir / "image-venv"
    subprocess.run(["rm", "-rf", str(context), str(wheels), str(venv)], check=True)
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (context / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run(["cp", "-r", str(ROOT / "operator"), str(context / "operator")], check=True)
    subprocess.run(["rm", "-rf", str(context / "operator/pinsync/devenv")], check=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), "."], cwd=context, check=True
    )
    wheel = next(wheels.glob("pinsync-*.whl"))
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if "/devenv/" in n]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # As in the image: nothing of this checkout on the path (the suite runs with PYTHONPATH).
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", "-q", "install", str(wheel)],
        check=True, timeout=600, env=env,
    )  # fmt: skip
    help_text = subprocess.run(
        [str(venv / "bin" / "pinsync"), "run", "--help"],
        capture_output=True, text=True, check=True, env={**env, "PATH": str(venv / "bin")},
    ).stdout  # fmt: skip
    assert "--metrics-port" in help_text and "--liveness" in help_text
    installed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    names = {p["name"].lower() for p in json.loads(installed)}
    assert "pinsync" in names and "kopf" in names
    assert not names & {"pytest", "pyftpdlib", "pyopenssl", "ruff", "mypy", "lupa"}, names
    harness = subprocess.run(
        [python, "-c", "import pinsync.devenv"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert harness.returncode != 0 and "ModuleNotFoundError" in harness.stderr
