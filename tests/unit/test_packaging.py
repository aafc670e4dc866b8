"""Deployable artefacts agree with the single source of truth in ``crds/``."""

from __future__ import annotations

import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_helm_chart_crds_do_not_drift_from_crds_dir() -> None:
    for source in sorted((ROOT / "crds").glob("*.yaml")):
        copy = ROOT / "helm" / "pinsync" / "crds" / source.name
        assert copy.read_bytes() == source.read_bytes(), f"run `make helm-crds` ({source.name})"


def test_manifest_rbac_matches_the_chart_rbac() -> None:
    manifest = [d for d in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text())]
    role = next(d for d in manifest if d["kind"] == "ClusterRole")
    chart = (ROOT / "helm" / "pinsync" / "templates" / "operator.yaml").read_text()
    rules = chart.split("rules:", 1)[1].split("---", 1)[0]
    assert yaml.safe_load(rules) == role["rules"]
