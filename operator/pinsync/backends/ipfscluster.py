"""IPFS Cluster, through its REST API (``ipfs-cluster-service``, v1.x): pinning by CID.

A cluster is a pinning service, not a store: pinsync asks it to pin a CID and the cluster's
peers fetch the blocks over IPFS themselves, so ``stores_content`` is False and ``put_pin`` never
reads the CAR stream it is handed (it closes it unread). For the pin to complete, the content
must be reachable from the cluster's IPFS daemons (the same Kubo, or one they can connect to).

What the protocol's words mean here:

* **location**: the pins whose name starts with ``pinNamePrefix`` (default ``pinsync/``). The
  cluster has one global pinset; the prefix is what marks a pin as pinsync's, so listing,
  counting and removing only ever touch those (a prune never unpins somebody else's pin; an
  empty prefix, though, claims every pin in the cluster). Two StorageBackends on one cluster
  therefore need different prefixes, and still share a CID's single cluster pin: the last one
  to pin it names it, and the other then lists it as missing.
* **present**: the pin is in the cluster's shared state (``GET /allocations``), named with the
  prefix. That is what the cluster promises to keep pinned, whatever the peers' progress.
* **verified**: ``GET /pins/<cid>`` reports ``pinned`` on at least ``replicationFactorMin`` peers
  (all allocated peers when it is -1 or 0). ``pinning``/``pin_queued`` raise the retryable
  reason ``Pinning``; ``pin_error``, ``unexpectedly_unpinned`` and the like raise
  ``ClusterPinError`` after asking the cluster to ``recover`` the pin. ``deep`` adds nothing:
  the cluster exposes no content to re-hash.
* **put**: ``POST /pins/<cid>`` (name, replication factors, and metadata ``pinsync/pinset``
  naming the PinSets that want it), then a bounded wait (``put_wait``, 60 s) for the status
  above. A pin still in progress when the wait ends stays in the cluster's pinset (the cluster
  keeps fetching; removing it would only restart the work) and ``put_pin`` raises ``Pinning``.
* **usage**: ``objects`` is the number of pinsync's pins; ``bytes`` is always 0. The cluster
  reports no per-pin sizes, and its ``freespace``/``reposize`` metrics describe whole IPFS
  repositories (other users' pins included), which is not "storage used by pinsync". ``free``
  is the smallest ``freespace`` metric among the peers.
* **fetch**: unsupported (reason ``Unsupported``). The REST API serves no content; reading a
  pin back would mean talking to a peer's IPFS API, which is not part of this backend's config.

The REST API streams listings as JSON values one after another and reports an error that occurs
mid-stream only in an HTTP trailer, which httpx does not expose: a listing cut short reads as a
shorter listing. The engine then sees pins as missing and pins them again, which is harmless.

Credentials (all optional): ``token`` (sent as a bearer token, e.g. a JWT from ``POST /token``)
or ``username`` + ``password`` (HTTP basic auth); a token wins when both are given.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import httpx

from pinsync import clusterpins, reasons
from pinsync.backends import base, errors, httpservice, ratelimit

logger = logging.getLogger(__name__)

PINSET_META = "pinsync/pinset"
"""Metadata key carrying the ``namespace/name`` of every PinSet that wants the pin."""

PINNED = "pinned"
IN_PROGRESS = frozenset({"pinning", "pin_queued"})
RECOVERABLE = frozenset({"pin_error", "unexpectedly_unpinned", "unpinned", "error"})
"""Statuses of an allocated peer that ``POST /pins/<cid>/recover`` makes it retry."""
UNAWARE = frozenset({"unpinned", "undefined"})
"""Statuses of a peer that has not yet received a just-added pin (shared state is eventual)."""
NOT_ALLOCATED = "remote"
"""A peer that tracks the pin but is not asked to hold it (replication below 'all peers')."""


class Rejected(errors.BackendError):
    """The cluster refused the request as invalid (bad CID, bad option): retrying cannot help."""

    reason = reasons.CLUSTER_REJECTED.name


class ClusterError(errors.BackendError):
    """The cluster answered, but with an error or something that is not its API's answer."""

    reason = reasons.CLUSTER_ERROR.name


@dataclasses.dataclass(frozen=True, kw_only=True)
class IpfsClusterConfig(base.Config):
    api_url: str
    """Without a trailing slash."""
    replication_min: int
    replication_max: int
    """-1: every peer; 0: the cluster's default."""
    prefix: str


class IpfsClusterBackend(httpservice.HttpService):
    error: ClassVar[type[errors.BackendError]] = ClusterError
    credential_keys: ClassVar[base.CredentialKeys] = base.CredentialKeys(
        alternatives=(frozenset({"username", "password"}), frozenset({"token"})),
        exclusive=True,
        optional_secret=True,
    )
    stores_content: ClassVar[bool] = False

    put_wait: float = 60.0
    """Seconds ``put_pin`` waits for the pin to reach ``pinned`` (tests shorten it)."""
    poll_interval: float = 0.5

    conf: IpfsClusterConfig

    @classmethod
    def validate(cls, spec: Mapping[str, Any], credentials: base.Credentials) -> IpfsClusterConfig:
        """Also the cluster's own rule for replication factors (-1 on one side means -1 on
        both), so a bad spec is a clear InvalidConfig rather than the cluster's HTTP 500."""
        fields = base.Fields("ipfsCluster", spec)
        api_url = fields.url("apiUrl", "")
        if not api_url:
            raise fields.invalid("apiUrl", "is required")
        try:
            httpx.URL(api_url)
        except httpx.InvalidURL:
            raise fields.invalid("apiUrl", "is not a valid URL") from None
        low = fields.integer("replicationFactorMin", -1, low=-1)
        high = fields.integer("replicationFactorMax", -1, low=-1)
        if (low == -1) != (high == -1):
            raise fields.invalid(
                "replicationFactorMin",
                "and replicationFactorMax must both be -1 when one of them is",
            )
        if low > 0 and high > 0 and low > high:
            raise fields.invalid("replicationFactorMin", "is larger than replicationFactorMax")
        return IpfsClusterConfig(
            api_url=api_url,
            replication_min=low,
            replication_max=high,
            prefix=fields.text("pinNamePrefix", "pinsync/"),
        )

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        self.api_url = self.conf.api_url
        self.replication_min = self.conf.replication_min
        self.replication_max = self.conf.replication_max
        self.prefix = self.conf.prefix

    # -- plumbing ---------------------------------------------------------------------------------

    def make_client(self) -> httpx.AsyncClient:
        headers: dict[str, str] = {}
        auth: httpx.BasicAuth | None = None
        token = self.credentials.get("token")
        username, password = self.credentials.get("username"), self.credentials.get("password")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif username and password:
            auth = httpx.BasicAuth(username, password)
        return httpx.AsyncClient(
            base_url=self.api_url,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(30.0, connect=5.0),
        )

    async def request(
        self, method: str, path: str, what: str, *, params: Mapping[str, str] | None = None
    ) -> Any:
        """One REST call; the decoded JSON answer, or the backend error it maps to."""
        with self.translating(what):
            response = await self.client().request(method, path, params=params)
        raise_for_status(response, what)
        return self.decoded(response, what)

    async def stream(
        self, path: str, what: str, *, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The JSON objects of a streamed listing (``/peers``, ``/allocations``), one by one."""
        with self.translating(what):
            async with self.client().stream("GET", path, params=params) as response:
                if not response.is_success:
                    await response.aread()
                    raise_for_status(response, what)
                decoder = clusterpins.JsonValues(what, ClusterError)
                async for text in response.aiter_text():
                    for value in decoder.feed(text):
                        yield value
                decoder.close()

    def ours(self, pin: Mapping[str, Any]) -> bool:
        return str(pin.get("name") or "").startswith(self.prefix)

    # -- the protocol -----------------------------------------------------------------------------

    async def health(self) -> None:
        """The peer answers with our credentials, reaches its IPFS daemon, and enough peers
        answer for ``replicationFactorMin``. There is no write probe: pinning anything would
        need content the cluster can fetch, and a probe pin would show up in the pinset."""
        ident = await self.request("GET", "/id", "cluster /id")
        if not isinstance(ident, dict):
            raise ClusterError("cluster /id: unexpected answer")
        if ident.get("error"):
            raise errors.BackendError(
                f"cluster peer reports an error: {ident['error']}",
                reason=reasons.CLUSTER_UNHEALTHY,
            )
        ipfs_error = (ident.get("ipfs") or {}).get("error")
        if ipfs_error:
            raise errors.BackendError(
                f"cluster peer cannot reach its IPFS daemon: {ipfs_error}",
                reason=reasons.CLUSTER_IPFS_UNAVAILABLE,
            )
        healthy = 0
        async for peer in self.stream("/peers", "cluster /peers"):
            if not peer.get("error"):
                healthy += 1
        if self.replication_min > healthy:
            raise errors.BackendError(
                f"replicationFactorMin is {self.replication_min}, but only {healthy} cluster "
                "peer(s) answer",
                reason=reasons.NOT_ENOUGH_PEERS,
            )

    async def usage(self) -> base.Usage:
        # Bytes: see the module docstring (the cluster has no per-pin sizes).
        count = 0
        async for _ in self.list_pins():
            count += 1
        return base.Usage(bytes=0, objects=count, free=await self.free_space())

    async def free_space(self) -> int | None:
        """The least free space any peer reports (its ``freespace`` metric: the IPFS repo's
        StorageMax minus its size), since a pin is stored whole on each peer it is allocated to.
        None when no peer has a valid metric (another informer configured, or none yet)."""
        metrics = await self.request(
            "GET", "/monitor/metrics/freespace", "cluster freespace metrics"
        )
        values = []
        for metric in metrics if isinstance(metrics, list) else ():
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                if metric.get("valid"):
                    values.append(int(metric["value"]))
        return min(values, default=None)

    async def list_pins(self) -> AsyncIterator[base.PinInfo]:
        params = {"filter": "pin"}
        async for pin in self.stream("/allocations", "cluster /allocations", params=params):
            if self.ours(pin):
                yield base.PinInfo(cid=cid_of(pin))

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
        await base.close_unread(content)  # the cluster fetches by CID
        params = {"name": self.prefix + (meta.name or meta.cid)}
        if self.replication_min != 0:
            params["replication-min"] = str(self.replication_min)
        if self.replication_max != 0:
            params["replication-max"] = str(self.replication_max)
        if meta.pinsets:
            params[f"meta-{PINSET_META}"] = ",".join(meta.pinsets)
        await self.request("POST", f"/pins/{meta.cid}", f"pin {meta.cid}", params=params)
        deadline = time.monotonic() + self.put_wait
        interval = self.poll_interval
        while True:
            status = await self.status(meta.cid)
            try:
                return await self.judge(meta.cid, status, fresh=True)
            except errors.InProgress:
                if time.monotonic() + interval > deadline:
                    raise
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 5.0)

    async def verify_pin(
        self, cid: str, *, deep: bool = False, listed: base.PinInfo | None = None
    ) -> base.PinInfo:
        await self.pin_of(cid)
        return await self.judge(cid, await self.status(cid))

    async def remove_pin(self, cid: str) -> None:
        try:
            await self.pin_of(cid)
        except errors.PinNotFound:
            return  # absent, or somebody else's pin: neither is ours to remove
        try:
            await self.request("DELETE", f"/pins/{cid}", f"unpin {cid}")
        except errors.PinNotFound:
            pass  # removed meanwhile

    async def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        raise errors.Unsupported(
            f"{cid}: an IPFS Cluster backend cannot return content (the REST API serves none)"
        )
        yield b""  # pragma: no cover  (makes this an async generator)

    async def providers(self) -> list[str]:
        """The swarm addresses of every cluster peer's IPFS daemon (``/peers``, ``ipfs``), so a
        node restoring a pin can connect to them and fetch it over bitswap."""
        found: list[str] = []
        async for peer in self.stream("/peers", "cluster /peers"):
            for address in (peer.get("ipfs") or {}).get("addresses") or ():
                if isinstance(address, str) and "/p2p/" in address and address not in found:
                    found.append(address)
        return found

    # -- pin state --------------------------------------------------------------------------------

    async def pin_of(self, cid: str) -> dict[str, Any]:
        """The pin in the cluster's shared state; PinNotFound if absent or not pinsync's."""
        pin = await self.request("GET", f"/allocations/{cid}", f"pin {cid}")
        if not isinstance(pin, dict):
            raise ClusterError(f"pin {cid}: unexpected answer")
        if not self.ours(pin):
            raise errors.PinNotFound(
                f"pin {cid}: in the cluster's pinset, but not named with prefix {self.prefix!r}"
            )
        return pin

    async def status(self, cid: str) -> dict[str, Any]:
        status = await self.request("GET", f"/pins/{cid}", f"status of {cid}")
        if not isinstance(status, dict):
            raise ClusterError(f"status of {cid}: unexpected answer")
        return status

    async def judge(
        self, cid: str, status: Mapping[str, Any], *, fresh: bool = False
    ) -> base.PinInfo:
        """Pinned on enough peers, or the error saying why not (recovering failed peers).

        ``fresh``: the pin was just added, so a peer that has not heard of it yet (``unpinned``,
        ``undefined``: the shared state reaches peers asynchronously) is still on its way.
        """
        peers: Mapping[str, Any] = status.get("peer_map") or {}
        states = {
            str(info.get("peername") or peer): str(info.get("status") or "undefined")
            for peer, info in peers.items()
        }
        if fresh:
            states = {n: "pin_queued" if s in UNAWARE else s for n, s in states.items()}
        allocated = {name: state for name, state in states.items() if state != NOT_ALLOCATED}
        needed = self.replication_min if self.replication_min > 0 else max(1, len(allocated))
        pinned = sum(1 for state in allocated.values() if state == PINNED)
        if pinned >= needed:
            return base.PinInfo(cid=cid)
        summary = ", ".join(f"{name}: {state}" for name, state in sorted(allocated.items()))
        summary = summary or "no peer tracks it"
        failed = {name for name, state in allocated.items() if state in RECOVERABLE}
        if failed:
            await self.recover(cid)
            detail = "; ".join(
                f"{info.get('peername') or peer}: {info.get('error')}"
                for peer, info in peers.items()
                if info.get("error")
            )
            message = f"{cid}: pinned on {pinned} of {needed} peer(s) ({summary})"
            raise errors.BackendError(
                message + (f"; errors: {detail}" if detail else "") + "; recovery requested",
                reason=reasons.CLUSTER_PIN_ERROR,
            )
        if any(state in IN_PROGRESS for state in allocated.values()):
            raise errors.InProgress(
                f"{cid}: still pinning, pinned on {pinned} of {needed} peer(s) ({summary})",
                reason=reasons.PINNING,
            )
        raise errors.BackendError(
            f"{cid}: pinned on {pinned} of {needed} peer(s) ({summary})",
            reason=reasons.CLUSTER_PIN_ERROR,
        )

    async def recover(self, cid: str) -> None:
        """Ask the cluster to retry a failed pin; best effort, the caller raises anyway."""
        try:
            await self.request("POST", f"/pins/{cid}/recover", f"recover {cid}")
        except errors.BackendError as exc:
            logger.warning("could not request recovery of %s: %s", cid, exc)


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Map an HTTP error answer onto the backend error vocabulary.

    The cluster answers errors as ``{"code": ..., "message": ...}``; its messages name CIDs and
    peers, never credentials. Other servers' bodies (a proxy's HTML page) are not quoted.
    """
    if response.is_success:
        return
    code = response.status_code
    message = ""
    with contextlib.suppress(ValueError, AttributeError):
        message = str(json.loads(response.content).get("message") or "")[:300]
    shown = f"HTTP {code}" + (f": {message}" if message else "")
    if code == 401:
        raise errors.AuthFailed(f"{what}: the cluster rejected the credentials")
    if code == 403:
        raise errors.PermissionDenied(f"{what}: {shown}")
    if code == 404:
        if "pinset" in message:  # state.ErrNotFound: "pin is not part of the pinset"
            raise errors.PinNotFound(f"{what}: {message}")
        raise errors.LocationNotFound(
            f"{what}: no IPFS Cluster REST API at the configured apiUrl ({shown})"
        )
    if code == 400:
        raise Rejected(f"{what}: {shown}")
    if code == 429:  # a proxy in front of the cluster limiting requests: wait as it asks
        raise ratelimit.refused(f"{what}: {shown}", response.headers)
    raise ClusterError(f"{what}: {shown}")


def cid_of(pin: Mapping[str, Any]) -> str:
    """A pin's CID: a string in cluster v1, ``{"/": ...}`` in some older answers."""
    cid = pin.get("cid")
    if isinstance(cid, dict):
        cid = cid.get("/")
    return str(cid)
