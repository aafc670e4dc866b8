# mypy: disable-error-code="arg-type"
# (kopf types handler callbacks as protocols with every kwarg; ours take only what they use.)
"""kopf glue: which events wake which reconcile loop. No business logic lives here.

Every StorageBackend and PinSet gets one daemon that loops "reconcile, then sleep until woken or
until the resync interval passes". Watch events only wake loops (see :mod:`pinsync.wakeups`), so
all work on one object is serialised and always starts from freshly read state.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from pinsync import GROUP, VERSION, kube, storage
from pinsync.reconciling import backends, marking, pinsets
from pinsync.reconciling.context import Context
from pinsync.settings import Settings

Reconciler = Callable[[Context, str, str], Awaitable[float | None]]
_ctx: Context | None = None


def context() -> Context:
    if _ctx is None:
        raise RuntimeError("the operator has not started")
    return _ctx


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _ctx
    storage.configure(settings)
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    _ctx = Context(api=kube.Api(), settings=Settings.from_env())


@kopf.on.cleanup()
async def close(**_: Any) -> None:
    """Close the Kubo clients' connection pools (the daemons, stopped first, were using them)."""
    if _ctx is not None:
        await _ctx.aclose()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own kubeconfig reader: it honours ``--kubeconfig`` (via $KUBECONFIG) at call time,
    whereas the client library fixed its default location when it was imported."""
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_via_client(**kwargs)


async def loop(
    reconcile: Reconciler,
    plural: str,
    namespace: str,
    name: str,
    logger: Any,
    stopped: kopf.DaemonStopped,
) -> None:
    ctx = context()
    key = (plural, namespace, name)
    try:
        # Cancelled by kopf when stopped; the flag also ends the loop should some library
        # swallow that cancellation (see Wakeups.sleep), rather than let it run on, orphaned.
        while not stopped:
            try:
                delay = await reconcile(ctx, namespace, name)
                if delay is None:
                    delay = ctx.settings.resync_interval
            except Exception:
                logger.exception("reconcile failed; retrying in %ss", ctx.settings.retry_interval)
                delay = ctx.settings.retry_interval
            await ctx.wakeups.sleep(key, delay)
    finally:
        # kopf cancels the daemon (a sync mid-transfer included) when this replica pauses for a
        # peer with a higher priority (see pinsync.peering), as when the object is deleted.
        ctx.wakeups.forget(key)
        await ctx.forget(key)
        if stopped.reason and kopf.DaemonStoppingReason.OPERATOR_PAUSING in stopped.reason:
            ctx.paused()


@kopf.daemon(GROUP, VERSION, kube.STORAGEBACKENDS, cancellation_timeout=1.0)
async def backend_daemon(
    namespace: str, name: str, logger: Any, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    await loop(backends.reconcile, kube.STORAGEBACKENDS, namespace, name, logger, stopped)


@kopf.daemon(GROUP, VERSION, kube.PINSETS, cancellation_timeout=1.0)
async def pinset_daemon(
    namespace: str, name: str, logger: Any, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    await loop(pinsets.reconcile, kube.PINSETS, namespace, name, logger, stopped)


@kopf.index(GROUP, VERSION, kube.STORAGEBACKENDS)
def backends_by_secret(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> Any:
    secret = (spec.get("credentialsSecretRef") or {}).get("name")
    return {(namespace, secret): name} if secret else None


def wake_pinsets(namespace: str, pinset_names: Any) -> None:
    for pinset in pinset_names.get(namespace, ()):
        context().wakeups.wake((kube.PINSETS, namespace, pinset))


@kopf.index(GROUP, VERSION, kube.PINSETS)
def pinsets_by_namespace(namespace: str, name: str, **_: Any) -> Any:
    return {namespace: name}


@kopf.on.event(GROUP, VERSION, kube.STORAGEBACKENDS)
async def backend_changed(
    namespace: str,
    name: str,
    meta: kopf.Meta,
    body: kopf.Body,
    type: str | None,
    pinsets_by_namespace: kopf.Index[str, str],
    **_: Any,
) -> None:
    ctx = context()
    if type == "DELETED":
        ctx.reported.pop((namespace, name), None)
        wake_pinsets(namespace, pinsets_by_namespace)
        return
    # A new, relabelled or newly synced backend changes what its PinSets report; progress
    # writes during a sync do not, and must not wake every PinSet of the namespace.
    seen = pinsets.reported(body)
    if ctx.reported.get((namespace, name)) != seen:
        ctx.reported[(namespace, name)] = seen
        wake_pinsets(namespace, pinsets_by_namespace)
    if ctx.echoes.is_own_write((kube.STORAGEBACKENDS, namespace, name), meta):
        return
    # Annotation marks are recorded right away, even while this backend's loop is mid-sync.
    await marking.consume_annotations(context(), dict(body))
    context().wakeups.wake((kube.STORAGEBACKENDS, namespace, name))


@kopf.index(GROUP, VERSION, kube.STORAGEBACKENDS)
def backends_by_namespace(namespace: str, name: str, **_: Any) -> Any:
    return {namespace: name}


@kopf.on.event(GROUP, VERSION, kube.PINSETS)
def pinset_changed(
    namespace: str,
    name: str,
    meta: kopf.Meta,
    backends_by_namespace: kopf.Index[str, str],
    **_: Any,
) -> None:
    if context().echoes.is_own_write((kube.PINSETS, namespace, name), meta):
        return
    context().wakeups.wake((kube.PINSETS, namespace, name))
    # Its backends' desired sets may have changed; each decides for itself (by digest).
    for backend in backends_by_namespace.get(namespace, ()):
        context().wakeups.wake((kube.STORAGEBACKENDS, namespace, backend))


@kopf.on.event("", "v1", "secrets")
def secret_changed(
    namespace: str, name: str, backends_by_secret: kopf.Index[tuple[str, str], str], **_: Any
) -> None:
    for backend in backends_by_secret.get((namespace, name), ()):
        context().wakeups.wake((kube.STORAGEBACKENDS, namespace, backend))
