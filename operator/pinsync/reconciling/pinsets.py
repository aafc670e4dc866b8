"""Reconciling a PinSet: resolve its CIDs and target backends, report through conditions."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pinsync import cids, conditions, kube
from pinsync.reconciling.context import Context

MAX_LISTED = 10
"""How many offending CIDs or names a condition message quotes before summarising."""


def label_selector(selector: Mapping[str, Any]) -> str:
    """A metav1.LabelSelector as the string form the API server's list call accepts."""
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr["key"], expr["operator"], ",".join(expr.get("values") or ())
        terms.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }[op]
        )
    return ",".join(terms)


def quoted(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else f"{shown} and {len(items) - MAX_LISTED} more"


@dataclasses.dataclass(frozen=True)
class Targets:
    names: list[str]
    missing: list[str]


async def targets(ctx: Context, namespace: str, spec: Mapping[str, Any]) -> Targets:
    """The StorageBackends a PinSet targets: named ones and those its selector matches."""
    existing = {b["metadata"]["name"] for b in await ctx.api.list(kube.STORAGEBACKENDS, namespace)}
    named = list(spec.get("backends") or ())
    selected: list[str] = []
    if spec.get("backendSelector") is not None:
        matched = await ctx.api.list(
            kube.STORAGEBACKENDS, namespace, label_selector=label_selector(spec["backendSelector"])
        )
        selected = [b["metadata"]["name"] for b in matched]
    names = list(dict.fromkeys([*named, *selected]))
    return Targets(
        names=[n for n in names if n in existing], missing=[n for n in named if n not in existing]
    )


async def reconcile(ctx: Context, namespace: str, name: str) -> None:
    obj = await ctx.api.get(kube.PINSETS, namespace, name)
    if obj is None:
        return
    spec = obj.get("spec", {})
    valid, invalid = cids.partition(spec.get("cids") or ())
    found = await targets(ctx, namespace, spec)
    counts = {"pins": len(valid), "backends": len(found.names)}
    if invalid:
        updates = conditions.stalled("InvalidCID", f"not a CID: {quoted(invalid)}")
    elif found.missing:
        updates = conditions.stalled(
            "BackendNotFound", f"StorageBackend(s) not found: {quoted(found.missing)}"
        )
    elif not found.names:
        updates = conditions.stalled("NoBackends", "spec.backendSelector matches no StorageBackend")
    else:
        updates = conditions.ready(
            "Resolved", f"{len(valid)} pin(s) for {len(found.names)} backend(s)"
        )
    await ctx.write_status(kube.PINSETS, obj, updates, counts=counts)
