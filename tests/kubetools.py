"""Helpers the end-to-end tests share: custom-object CRUD, waiting, condition look-ups."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes

from pinsync import API_VERSION, GROUP, VERSION

T = TypeVar("T")


def eventually(check: Callable[[], T], *, timeout: float = 60, interval: float = 0.3) -> T:
    """Call ``check`` until it returns a truthy value without raising; re-raise the last error."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (AssertionError, LookupError, TypeError) as exc:
            last = exc
        if time.monotonic() > deadline:
            if last is not None:
                raise last
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        time.sleep(interval)


class Objects:
    """Custom objects of one kind in one namespace."""

    def __init__(self, client: kubernetes.client.ApiClient, namespace: str, plural: str):
        self.api = kubernetes.client.CustomObjectsApi(client)
        self.namespace, self.plural = namespace, plural

    def create(self, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
        kind = {"storagebackends": "StorageBackend", "pinsets": "PinSet"}[self.plural]
        body = {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": name, **metadata},
            "spec": spec,
        }
        obj: dict[str, Any] = self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, body, field_validation="Strict"
        )
        return obj

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, name
        )
        return obj

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, self.plural, name)

    def names(self) -> set[str]:
        listed = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, self.plural)
        return {o["metadata"]["name"] for o in listed["items"]}

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, name, patch
        )
        return obj

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        for cond in (self.get(name).get("status") or {}).get("conditions") or ():
            if cond["type"] == type_:
                return dict(cond)
        return None

    def wait_condition(
        self, name: str, type_: str, status: str, reason: str | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        def check() -> dict[str, Any]:
            cond = self.condition(name, type_)
            assert cond is not None, f"{name}: no {type_} condition yet"
            assert cond["status"] == status, f"{name}: {type_}={cond}"
            assert reason is None or cond["reason"] == reason, f"{name}: {type_}={cond}"
            return cond

        return eventually(check, timeout=timeout)


def create_secret(
    client: kubernetes.client.ApiClient, namespace: str, name: str, data: dict[str, str]
) -> None:
    kubernetes.client.CoreV1Api(client).create_namespaced_secret(
        namespace, {"metadata": {"name": name}, "stringData": data}
    )


def wait_synced(
    backends: Objects, name: str, *, present: int | None = None, timeout: float = 120
) -> dict[str, Any]:
    """Wait until a StorageBackend is clean and Synced (with ``present`` pins, if given)."""

    def check() -> dict[str, Any]:
        status = backends.get(name).get("status") or {}
        assert not (status.get("dirty") or {}).get("dirty", True), status.get("dirty")
        if present is not None:
            assert (status.get("counts") or {}).get("present") == present, status.get("counts")
        synced = [c for c in status.get("conditions") or () if c["type"] == "Synced"]
        assert synced and synced[0]["status"] == "True", synced
        return status

    return eventually(check, timeout=timeout)
