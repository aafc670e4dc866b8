"""What Argo CD and Flux conclude about pinsync objects, computed as those tools compute it.

Argo CD runs ``argocd/<group>/<Kind>/health.lua`` on gopher-lua, a Lua 5.1; here it runs on
lupa's embedded Lua 5.1 with the same globals Argo gives it (``obj``, no ``os``/``io``), so a
5.2+ idiom in the script fails here as it would there. Flux decides with kstatus
(``sigs.k8s.io/cli-utils``); ``hack/kstatus`` is that library behind a JSON-in, JSON-out command.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import Mapping
from typing import Any

import lupa.lua51

from pinsync import GROUP
from pinsync.devenv import tools
from tests.conftest import ROOT

ARGOCD = ROOT / "argocd" / GROUP

# Argo's sandbox opens the base, table, string, math and coroutine libraries only.
_SANDBOX = "os, io, debug, package, require, dofile, loadfile, load, loadstring = nil"


def health_script(kind: str) -> pathlib.Path:
    return ARGOCD / kind / "health.lua"


def lua(source: str, obj: Mapping[str, Any]) -> Any:
    """Run ``source`` with ``obj`` as the global ``obj``, in Argo's sandbox; its return value."""
    runtime = lupa.lua51.LuaRuntime(register_eval=False, register_builtins=False)
    runtime.execute(_SANDBOX)
    # A JSON round trip first: Argo hands the script what the API server serialised.
    runtime.globals().obj = runtime.table_from(json.loads(json.dumps(obj)), recursive=True)
    return runtime.execute(source)


def argo_health(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """``{"status", "message"}`` as Argo CD's health check of ``kind`` returns it for ``obj``."""
    result = lua(health_script(kind).read_text(), obj)
    return {str(key): str(value) for key, value in result.items()}


def argocd_cm() -> str:
    """The ``argocd-cm`` patch that installs the scripts (``argocd/argocd-cm.yaml``)."""
    lines = [
        "# Installs pinsync's health checks into Argo CD (generated from argocd/pinsync.io by",
        "# `python3 -m tests.gitops`; tests/unit/test_argocd_health.py checks it):",
        "#   kubectl -n argocd patch configmap argocd-cm --patch-file argocd/argocd-cm.yaml",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "data:",
    ]
    for kind in ("StorageBackend", "PinSet"):
        lines.append(f"  resource.customizations.health.{GROUP}_{kind}: |")
        lines += [
            f"    {line}" if line else ""
            for line in health_script(kind).read_text().split("\n")[:-1]
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    (ROOT / "argocd" / "argocd-cm.yaml").write_text(argocd_cm())


def kstatus(obj: Mapping[str, Any]) -> dict[str, str]:
    """kstatus' verdict on one object: ``{"status": "Current"|"InProgress"|"Failed"|..., ...}``."""
    done = subprocess.run(
        [str(tools.binary("kstatus"))],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    verdict: dict[str, str] = json.loads(done.stdout)
    return verdict
