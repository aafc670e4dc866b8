"""Deployable artefacts agree with their single sources: ``crds/`` and the dashboard in
``manifests/``. (The chart is rendered, linted and applied in ``tests/e2e/test_deploy.py``.)"""

from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_helm_chart_crds_do_not_drift_from_crds_dir() -> None:
    for source in sorted((ROOT / "crds").glob("*.yaml")):
        copy = ROOT / "helm" / "pinsync" / "crds" / source.name
        assert copy.read_bytes() == source.read_bytes(), f"run `make helm-crds` ({source.name})"


def test_helm_chart_dashboard_does_not_drift_from_manifests() -> None:
    source = ROOT / "manifests" / "grafana-dashboard.json"
    copy = ROOT / "helm" / "pinsync" / "dashboards" / "pinsync.json"
    assert copy.read_bytes() == source.read_bytes(), "run `make helm-crds`"
