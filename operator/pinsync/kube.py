"""The only module that talks to the Kubernetes API (besides kopf itself).

The official ``kubernetes`` client is synchronous; calls run in worker threads so the event loop
(and every backend's transfers) never block on the API server.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from pinsync import GROUP, VERSION

logger = logging.getLogger(__name__)

STORAGEBACKENDS = "storagebackends"
PINSETS = "pinsets"
PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call in a worker thread (the client's own types are loose)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


ApiError = ApiException
"""What a failed call raises (``status``, ``reason``): for callers that report it."""


async def _one_object(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """A call on one object: what it answers, None if the object is gone; a 409 (the
    resourceVersion precondition failed) becomes :class:`Conflict`."""
    try:
        return await _call(fn, *args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        if exc.status == 409:
            raise Conflict(f"{what} changed since it was read") from None
        raise


class Conflict(Exception):
    """An optimistic-concurrency write lost the race; re-read and decide again."""


class PeeringUnavailable(Exception):
    """The peering object can be neither read nor created (CRDs not installed, RBAC)."""


class SecretForbidden(Exception):
    """The operator's ServiceAccount may not read the Secret: RBAC, not the Secret, is wrong."""


def load_config(kubeconfig: str | None = None, context: str | None = None) -> None:
    """Configure the client from a kubeconfig, the in-cluster service account, or the default."""
    try:
        kubernetes.config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        if context is not None or kubeconfig is not None:
            raise  # asked for by name: falling back would talk to another cluster, or fail vaguely
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]


ConfigError = kubernetes.config.ConfigException
IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def default_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace kubectl would use: the context's, the pod's (in-cluster), or ``default``."""
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(kubeconfig)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        try:
            with open(IN_CLUSTER_NAMESPACE) as file:
                return file.read().strip() or "default"
        except OSError:
            return "default"
    chosen = next((c for c in contexts if c["name"] == context), None) if context else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace or "default")


@dataclasses.dataclass(frozen=True)
class Secret:
    data: dict[str, str] = dataclasses.field(repr=False)
    version: str = ""
    """resourceVersion, to notice credential changes without keeping the values around."""
    undecodable: tuple[str, ...] = ()
    """Keys whose value is not UTF-8 text (left out of ``data``; never shown)."""


class Api:
    """Typed, async wrappers over the few calls the operator makes."""

    def __init__(self) -> None:
        client = kubernetes.client.ApiClient()
        self.client = client
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.coordination = kubernetes.client.CoordinationV1Api(client)

    async def _object(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        """A call on one custom object: the object it answers, or None if it is gone (409s
        become :class:`Conflict`)."""
        what = f"{args[1]}/{args[0]}/{args[2]}"
        obj: dict[str, Any] | None = await _one_object(what, fn, GROUP, VERSION, *args)
        return obj

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if it is gone."""
        return await self._object(self.custom.get_namespaced_custom_object, namespace, plural, name)

    async def select(
        self, plural: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects in ``namespace`` (None: every namespace) matching ``label_selector``."""
        selector = {"label_selector": label_selector} if label_selector else {}
        if namespace is None:
            fn: Callable[..., Any] = self.custom.list_cluster_custom_object
            result = await _call(fn, GROUP, VERSION, plural, **selector)
        else:
            fn = self.custom.list_namespaced_custom_object
            result = await _call(fn, GROUP, VERSION, namespace, plural, **selector)
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        return await self.select(plural, namespace)

    async def annotate(
        self, plural: str, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> dict[str, Any] | None:
        """Merge ``annotations`` into the object's metadata; None if it does not exist."""
        body = {"metadata": {"annotations": dict(annotations)}}
        patch = self.custom.patch_namespaced_custom_object
        return await self._object(patch, namespace, plural, name, body)

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource; None if the object is gone.

        With ``resource_version``, the write succeeds only if nobody wrote the object since it
        was read (raises :class:`Conflict` otherwise): the read-modify-write of dirty state.
        """
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        patch = self.custom.patch_namespaced_custom_object_status
        return await self._object(patch, namespace, plural, name, body)

    async def ensure_peering(self, name: str, namespace: str | None) -> bool:
        """Create the kopf peering object ``name`` (cluster-wide, or in ``namespace``) unless it
        exists; True if created. kopf renews its entry there but never creates the object, and
        without it a peering operator waits, paused, forever and says so only at DEBUG level."""
        kind = "ClusterKopfPeering" if namespace is None else "KopfPeering"
        plural = f"{kind.lower()}s"
        meta = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
        body = {"apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}", "kind": kind, "metadata": meta}
        if namespace is None:
            get = functools.partial(self.custom.get_cluster_custom_object, name=name)
            create = functools.partial(self.custom.create_cluster_custom_object, body=body)
        else:
            get = functools.partial(
                self.custom.get_namespaced_custom_object, namespace=namespace, name=name
            )
            create = functools.partial(
                self.custom.create_namespaced_custom_object, namespace=namespace, body=body
            )
        what = f"{plural}.{PEERING_GROUP}/{name}" + (f" in {namespace}" if namespace else "")
        try:
            await _call(get, group=PEERING_GROUP, version=PEERING_VERSION, plural=plural)
            return False
        except ApiException as exc:
            if exc.status != 404:
                raise PeeringUnavailable(f"cannot read {what}: {exc.status} {exc.reason}") from None
        try:
            await _call(create, group=PEERING_GROUP, version=PEERING_VERSION, plural=plural)
        except ApiException as exc:
            if exc.status == 409:  # another replica was quicker
                return False
            hint = " (are crds/ applied?)" if exc.status == 404 else ""
            message = f"cannot create {what}: {exc.status} {exc.reason}{hint}"
            raise PeeringUnavailable(message) from None
        return True

    async def read_secret(self, namespace: str, name: str) -> Secret | None:
        """The Secret's data, decoded; None if it does not exist. Values must never be logged."""
        try:
            secret = await _call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 403:
                raise SecretForbidden(f"{exc.status} {exc.reason}") from None
            raise
        data: dict[str, str] = {}
        undecodable = []
        for key, value in (secret.data or {}).items():
            try:
                data[key] = base64.b64decode(value).decode()
            except (UnicodeDecodeError, ValueError):
                undecodable.append(key)
        data.update(secret.string_data or {})
        version = str(secret.metadata.resource_version or "")
        return Secret(data=data, version=version, undecodable=tuple(sorted(undecodable)))

    async def post_event(
        self, obj: Mapping[str, Any], *, type_: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event about ``obj``; failures to post are logged, never raised."""
        meta = obj["metadata"]
        now = datetime.datetime.now(datetime.UTC)
        event = kubernetes.client.CoreV1Event(
            metadata=kubernetes.client.V1ObjectMeta(generate_name=f"{meta['name']}."),
            involved_object=kubernetes.client.V1ObjectReference(
                api_version=obj.get("apiVersion"),
                kind=obj.get("kind"),
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=kubernetes.client.V1EventSource(component="pinsync"),
            reporting_component="pinsync.io/operator",
            reporting_instance="pinsync",
        )
        try:
            await _call(self.core.create_namespaced_event, meta["namespace"], event)
        except ApiException as exc:
            logger.warning("could not post event %s: %s", reason, exc.reason)


class Kind:
    """Plain-dict access to one kind of core or coordination object (Leases, ConfigMaps) in
    the shape ``kubectl get -o json`` shows: what the scale-out's claims and orders are made of."""

    def __init__(self, api: Api, kind: str) -> None:
        client = api.coordination if kind == "lease" else api.core
        self._api, self._client, self._kind = api, client, kind

    def _fn(self, verb: str) -> Callable[..., Any]:
        fn: Callable[..., Any] = getattr(self._client, f"{verb}_{self._kind}")
        return fn

    def _dict(self, obj: Any) -> dict[str, Any]:
        plain: dict[str, Any] = self._api.client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return plain

    async def _one(self, verb: str, *args: Any) -> dict[str, Any] | None:
        """One call: the object it answers; None if gone; 409 -> :class:`Conflict`."""
        found = await _one_object(f"{self._kind} {args[0]}", self._fn(verb), *args)
        return None if found is None else self._dict(found)

    async def select(self, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        """Objects matching ``label_selector`` in ``namespace`` (None: every namespace)."""
        if namespace is None:
            fn = getattr(self._client, f"list_{self._kind}_for_all_namespaces")
            result = await _call(fn, label_selector=label_selector)
        else:
            fn = self._fn("list_namespaced")
            result = await _call(fn, namespace, label_selector=label_selector)
        return [self._dict(item) for item in result.items]

    async def read(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._one("read_namespaced", name, namespace)

    async def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create ``body``; :class:`Conflict` if it exists already."""
        created = await self._one("create_namespaced", namespace, body)
        assert created is not None
        return created

    async def replace(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Replace the object as of ``body``'s resourceVersion (compare-and-swap):
        :class:`Conflict` if it changed since, None if it is gone."""
        meta = body["metadata"]
        return await self._one("replace_namespaced", meta["name"], meta["namespace"], body)

    async def delete_all(self, namespace: str, label_selector: str) -> None:
        fn = self._fn("delete_collection_namespaced")
        await _call(fn, namespace, label_selector=label_selector)
