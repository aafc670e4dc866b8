"""Which replica works: kopf peering, with a priority of its own for every pod.

pinsync runs as two replicas, and exactly one of them may work: each StorageBackend's loop
must be the only writer of its syncs. kopf's peering decides which one. Every operator renews
its entry (identity, priority, lifetime) in a peering object (``ClusterKopfPeering``, or one
``KopfPeering`` per served namespace); the live peer with the highest priority works, and the
others stand by -- watch streams closed, daemons cancelled -- until its entry goes stale
(``lifetime`` seconds without renewal: a killed pod) or disappears (a clean exit removes it).

kopf pauses *every* peer when live peers share the highest priority, since it cannot tell which
one should work. Replicas of one Deployment come from one pod template with the same arguments,
so a fixed ``--priority`` would freeze them all: each derives its own from its pod name instead
(the downward API's ``metadata.name`` in ``POD_NAME``; else the hostname, which in a pod is the
pod name). A hash, not a counter: no coordination needed, stable across container restarts in
one pod (the restarted container takes its old place at once), and two pods collide with a
probability of 2**-31. Derived priorities stay below 2**31, so an operator started by hand with
a larger ``--priority`` pauses the deployed ones (kopf's own use of peering: debugging live).

There are no per-object locks, so the hand-over has edges this operator is built to survive: a
new pod whose hash is higher than the working one's takes over at once (the paused one's
daemons are cancelled as soon as it sees the newcomer, mid-transfer: within 50 ms in the e2e
test), and a status write or git push already running in a worker thread still completes.
Both are safe because dirty marks are cleared under a resourceVersion precondition only for the
token their sync started from, and uploads are idempotent (an object is written whole, under
its final name, or not at all).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Mapping, Sequence

from pinsync import kube

POD_NAME = "POD_NAME"
"""The environment variable the manifests fill from the downward API (``metadata.name``)."""

MAX_DERIVED = 2**31 - 1
"""Derived priorities are 1 .. MAX_DERIVED; 0 is kopf's default, for peers that set none."""


def pod_name(env: Mapping[str, str] = os.environ) -> str:
    """This replica's name: ``$POD_NAME``, else the hostname."""
    return env.get(POD_NAME) or socket.gethostname()


def priority_of(name: str) -> int:
    """A priority derived from ``name``: stable for one name, distinct between names."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % MAX_DERIVED + 1


def identity(env: Mapping[str, str] = os.environ) -> str | None:
    """The peer's identity in the peering object: the pod name when the manifests give one
    (readable, and a restarted container replaces its own entry instead of waiting for it to
    expire); None lets kopf make one up (user, host, start time)."""
    return env.get(POD_NAME) or None


def served_names(namespaces: Sequence[str]) -> list[str]:
    """The namespaces that get a ``KopfPeering``: the literal names among kopf's namespace
    patterns (a glob or an exclusion has no object to create; its peerings are the user's)."""
    return [n for n in namespaces if not any(c in n for c in "*?[]!,")]


async def prepare(api: kube.Api, name: str, namespaces: Sequence[str]) -> list[str]:
    """Make sure the peering objects exist where kopf will look for them: one
    ``ClusterKopfPeering`` for a cluster-wide operator, a ``KopfPeering`` in each served
    namespace otherwise. Returns where one was created ("" for cluster-wide).

    Raises :class:`kube.PeeringUnavailable` (the CRDs are missing, RBAC forbids): better to stop
    with that message than to run paused forever.
    """
    created = []
    for namespace in served_names(namespaces) if namespaces else [None]:
        if await api.ensure_peering(name, namespace):
            created.append(namespace or "")
    return created
