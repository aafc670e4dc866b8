"""Validating a StorageBackend before any I/O to its storage: type, Secret, Secret keys, and
the backend type's own config block (``Backend.validate``: typed fields, ``InvalidConfig``).

A failed validation is a condition the user can act on (``Stalled`` with a reason naming the
Secret, key or field, never a value); it clears by itself when the Secret or spec is fixed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pinsync import conditions, kube, reasons
from pinsync.backends import base, errors, registry
from pinsync.reconciling.context import Context
from pinsync.status import BackendStatus


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of validation: conditions to write, and on success what sync needs."""

    conditions: list[conditions.Condition]
    backend_class: type[base.Backend] | None = None
    credentials: base.Credentials | None = None
    credentials_version: str = ""

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
                conditions.condition(
                    "Ready", False, reasons.SUSPENDED.name, "spec.suspend is true"
                ),
                conditions.condition("Reconciling", False, reasons.SUSPENDED.name),
                conditions.condition("Stalled", False, reasons.SUSPENDED.name),
            ]
        )
    try:
        cls = registry.load(spec["type"])
    except (registry.NotImplementedBackend, ImportError) as exc:
        return Verdict(conditions.stalled(reasons.NOT_IMPLEMENTED.name, str(exc)))

    secret_name = (spec.get("credentialsSecretRef") or {}).get("name")
    if not secret_name:
        if cls.credential_keys.optional_secret:
            return checked(Verdict([], cls, base.Credentials()), spec)
        message = f"type {spec['type']} needs spec.credentialsSecretRef"
        return Verdict(conditions.stalled(reasons.SECRET_REQUIRED.name, message))
    try:
        secret = await ctx.api.read_secret(namespace, secret_name)
    except kube.SecretForbidden as exc:
        # A Role missing in a namespace the operator serves: a condition to act on, where an
        # exception would only retry, condition-less, in the operator's log.
        message = (
            f"may not read Secret {secret_name!r} in namespace {namespace!r} ({exc}): "
            "grant the operator's ServiceAccount get/list/watch on Secrets there"
        )
        return Verdict(conditions.stalled(reasons.SECRET_FORBIDDEN.name, message))
    if secret is None:
        message = f"Secret {secret_name!r} not found in namespace {namespace!r}"
        return Verdict(conditions.stalled(reasons.SECRET_NOT_FOUND.name, message))
    if secret.undecodable:
        keys = ", ".join(secret.undecodable)
        message = f"Secret {secret_name!r}: the value of key(s) {keys} is not UTF-8 text"
        return Verdict(conditions.stalled(reasons.SECRET_VALUE_INVALID.name, message))
    present = {k for k, v in secret.data.items() if v}
    missing = cls.credential_keys.missing(present)
    if missing is not None:
        message = f"Secret {secret_name!r} lacks key(s): {', '.join(sorted(missing))}"
        return Verdict(conditions.stalled(reasons.SECRET_KEY_MISSING.name, message))
    if both := cls.credential_keys.conflicting(present):
        sets = " and ".join("/".join(sorted(alt)) for alt in both)
        message = f"Secret {secret_name!r} holds both {sets}: keep the keys of one of them"
        return Verdict(conditions.stalled(reasons.INVALID_CONFIG.name, message))
    return checked(Verdict([], cls, base.Credentials(data=secret.data), secret.version), spec)


def checked(verdict: Verdict, spec: dict[str, Any]) -> Verdict:
    """The verdict, unless the type's config block is invalid (found without any I/O)."""
    assert verdict.backend_class is not None and verdict.credentials is not None
    block = spec.get(registry.config_block(spec["type"])) or {}
    try:
        verdict.backend_class.validate(block, verdict.credentials)
    except errors.InvalidConfig as exc:
        return Verdict(conditions.stalled(exc.reason, exc.message))
    return verdict


async def client_for(ctx: Context, obj: dict[str, Any], verdict: Verdict) -> base.Backend:
    """The backend's client, kept across passes while its configuration is unchanged.

    Shared by the backend's own loop and PinSets restoring from it, so both use one
    connection pool (and one trust-on-first-use host key, from ``status.learned``).
    """
    assert verdict.backend_class is not None and verdict.credentials is not None
    cls, credentials = verdict.backend_class, verdict.credentials
    spec = obj.get("spec") or {}
    config = {
        **BackendStatus.of(obj).learned,
        **(spec.get(registry.config_block(spec["type"])) or {}),
    }
    stamp = (json.dumps(config, sort_keys=True), verdict.credentials_version, cls)
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    client, replaced = ctx.backend(key, stamp, lambda: cls(config, credentials))
    if replaced is not None:
        await replaced.aclose()
    return client
