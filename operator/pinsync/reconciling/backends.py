"""Reconciling a StorageBackend: validate what CEL cannot, then report through conditions."""

from __future__ import annotations

import dataclasses
from typing import Any

from pinsync import conditions, kube
from pinsync.backends import base, registry
from pinsync.reconciling.context import Context


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of validation: conditions to write, and on success what sync needs."""

    conditions: list[conditions.Condition]
    backend_class: type[base.Backend] | None = None
    credentials: base.Credentials | None = None

    @property
    def ok(self) -> bool:
        return self.backend_class is not None


async def validate(ctx: Context, obj: dict[str, Any]) -> Verdict:
    """Check the references and the Secret keys the backend type needs."""
    namespace = obj["metadata"]["namespace"]
    spec = obj.get("spec", {})
    if spec.get("suspend"):
        return Verdict(
            [
                conditions.condition("Ready", False, "Suspended", "spec.suspend is true"),
                conditions.condition("Reconciling", False, "Suspended"),
                conditions.condition("Stalled", False, "Suspended"),
            ]
        )
    try:
        cls = registry.load(spec["type"])
    except (registry.NotImplementedBackend, ImportError) as exc:
        return Verdict(conditions.stalled("NotImplemented", str(exc)))

    secret_name = (spec.get("credentialsSecretRef") or {}).get("name")
    if not secret_name:
        if cls.credential_keys.optional_secret:
            return Verdict(conditions.ready("Validated"), cls, base.Credentials())
        return Verdict(
            conditions.stalled(
                "SecretRequired", f"type {spec['type']} needs spec.credentialsSecretRef"
            )
        )
    data = await ctx.api.read_secret(namespace, secret_name)
    if data is None:
        message = f"Secret {secret_name!r} not found in namespace {namespace!r}"
        return Verdict(conditions.stalled("SecretNotFound", message))
    missing = cls.credential_keys.missing({k for k, v in data.items() if v})
    if missing is not None:
        message = f"Secret {secret_name!r} lacks key(s): {', '.join(sorted(missing))}"
        return Verdict(conditions.stalled("SecretKeyMissing", message))
    return Verdict(conditions.ready("Validated"), cls, base.Credentials(data=data))


async def reconcile(ctx: Context, namespace: str, name: str) -> None:
    obj = await ctx.api.get(kube.STORAGEBACKENDS, namespace, name)
    if obj is None:
        return
    verdict = await validate(ctx, obj)
    await ctx.write_status(kube.STORAGEBACKENDS, obj, verdict.conditions)
