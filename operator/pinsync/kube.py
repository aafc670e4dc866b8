"""The only module that talks to the Kubernetes API (besides kopf itself).

The official ``kubernetes`` client is synchronous; calls run in worker threads so the event loop
(and every backend's transfers) never block on the API server.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from pinsync import GROUP, VERSION

STORAGEBACKENDS = "storagebackends"
PINSETS = "pinsets"


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call in a worker thread (the client's own types are loose)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def load_config(kubeconfig: str | None = None) -> None:
    """Configure the client from a kubeconfig, the in-cluster service account, or the default."""
    try:
        kubernetes.config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]


class Api:
    """Typed, async wrappers over the few calls the operator makes."""

    def __init__(self) -> None:
        client = kubernetes.client.ApiClient()
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if it is gone."""
        try:
            obj: dict[str, Any] = await _call(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    async def list(
        self, plural: str, namespace: str, *, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        result = await _call(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            label_selector=label_selector,
        )
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource; None if the object is gone."""
        try:
            obj: dict[str, Any] = await _call(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": dict(status)},
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded; None if it does not exist. Values must never be logged."""
        try:
            secret = await _call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        data.update(secret.string_data or {})
        return data
