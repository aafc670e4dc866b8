"""Argo CD's health checks (``argocd/pinsync.io/<Kind>/health.lua``) on Lua 5.1, over statuses
the operator really wrote (recorded by ``tests/e2e/test_gitops.py``), as Argo's own
``health_test.yaml`` files declare them; and the ``argocd-cm`` patch that installs them."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from tests import gitops
from tests.conftest import ROOT

KINDS = {
    "StorageBackend": {"Healthy", "Progressing", "Degraded", "Suspended"},
    "PinSet": {"Healthy", "Progressing", "Degraded"},  # a PinSet has no spec.suspend
}


def declared(kind: str) -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load(
        (gitops.ARGOCD / kind / "health_test.yaml").read_text()
    )["tests"]
    return tests


CASES = [(kind, case) for kind in KINDS for case in declared(kind)]


@pytest.mark.parametrize(
    ("kind", "case"), CASES, ids=[f"{k}-{pathlib.Path(c['inputPath']).stem}" for k, c in CASES]
)
def test_a_recorded_status_gets_its_declared_health(kind: str, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((gitops.ARGOCD / kind / case["inputPath"]).read_text())
    assert obj["kind"] == kind
    assert gitops.argo_health(kind, obj) == case["healthStatus"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_recording_is_declared_and_every_health_is_covered(kind: str) -> None:
    folder = gitops.ARGOCD / kind
    recorded = {f"testdata/{p.name}" for p in (folder / "testdata").glob("*.yaml")}
    assert recorded == {c["inputPath"] for c in declared(kind)}
    assert {c["healthStatus"]["status"] for c in declared(kind)} == KINDS[kind]


def test_the_argocd_cm_patch_installs_each_kinds_script_as_shipped() -> None:
    patch = yaml.safe_load((ROOT / "argocd" / "argocd-cm.yaml").read_text())
    assert patch["metadata"]["name"] == "argocd-cm"
    scripts = {
        key.removeprefix("resource.customizations.health.pinsync.io_"): value
        for key, value in patch["data"].items()
    }
    assert scripts == {kind: gitops.health_script(kind).read_text() for kind in KINDS}
    assert (ROOT / "argocd" / "argocd-cm.yaml").read_text() == gitops.argocd_cm(), (
        "run `python3 -m tests.gitops`"
    )


def test_the_interpreter_is_lua_51_in_argos_sandbox() -> None:
    assert gitops.lua("return _VERSION", {}) == "Lua 5.1"
    assert gitops.lua("return os == nil and io == nil and require == nil", {}) is True
