"""Operator-wide settings.

One frozen dataclass, read once from the environment (``PINSYNC_*``) or the command line, so that
every tunable has a type, a default and a documented unit in one place -- the same shape as
kopf's own ``OperatorSettings``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _names(value: str) -> tuple[str, ...]:
    return tuple(n for n in value.split(",") if n)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    ipfs_api_url: str = "http://127.0.0.1:5001"
    """Kubo RPC API used when a PinSet does not name one (``spec.ipfs.apiUrl``)."""

    global_concurrency: int = 16
    """Transfers in flight across all backends; each backend is further bounded by its spec."""

    mark_dirty_on_startup: bool = False
    """Mark every backend dirty when the operator starts (a full re-check after an outage)."""

    retry_interval: float = 30.0
    """Seconds before re-reconciling an object whose last reconcile failed unexpectedly."""

    resync_interval: float = 300.0
    """Seconds between level-based re-reconciles of an object nobody touched."""

    node_pins_interval: float = 15.0
    """Seconds a node's pin list is reused by every PinSet and backend that reads it (one
    ``pin/ls`` per node per interval; pins the operator adds itself are seen at once)."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to serve; empty means the whole cluster."""

    workers: int = 0
    """Worker Pods (``pinsync worker``) that transfer pins; 0: transfers run in the operator.
    With workers the operator only plans: it publishes each sync's transfers as shards, which
    the workers claim through Leases (:mod:`pinsync.reconciling.distributed`)."""

    shards: int = 0
    """Shards a sync's transfers are split into, at least; 0: four per worker, so that a slow
    shard does not hold up the others and workers that join find work."""

    lease_seconds: int = 15
    """A shard's claim lasts this long without renewal (renewed every third of it); then
    another worker takes the shard over."""

    @property
    def min_shards(self) -> int:
        return self.shards or 4 * max(1, self.workers)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Build settings from ``PINSYNC_*`` variables, falling back to the defaults above."""
        kwargs: dict[str, object] = {}
        for field, (variable, parse) in _FROM_ENV.items():
            if env.get(variable):
                kwargs[field] = parse(env[variable])
        return cls(**kwargs)  # type: ignore[arg-type]


_FROM_ENV: dict[str, tuple[str, Callable[[str], object]]] = {
    "ipfs_api_url": ("PINSYNC_IPFS_API_URL", str),
    "global_concurrency": ("PINSYNC_GLOBAL_CONCURRENCY", int),
    "mark_dirty_on_startup": ("PINSYNC_MARK_DIRTY_ON_STARTUP", _flag),
    "retry_interval": ("PINSYNC_RETRY_INTERVAL", float),
    "resync_interval": ("PINSYNC_RESYNC_INTERVAL", float),
    "node_pins_interval": ("PINSYNC_NODE_PINS_INTERVAL", float),
    "namespaces": ("PINSYNC_NAMESPACES", _names),
    "workers": ("PINSYNC_WORKERS", int),
    "shards": ("PINSYNC_SHARDS", int),
    "lease_seconds": ("PINSYNC_LEASE_SECONDS", int),
}
"""Settings field -> (environment variable, parser)."""
