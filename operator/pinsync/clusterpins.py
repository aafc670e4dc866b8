"""The pinset of an IPFS Cluster, read through its REST API (v1.x), as a PinSet source.

``spec.fromCluster`` makes the pins of a cluster's shared pinset a PinSet's pins: every pin, or
those whose name starts with ``namePrefix`` and whose metadata has every ``metadata`` key=value
(:class:`Selector`). The content of a pin is then exported from the Kubo of a cluster peer that
holds it (:func:`kubo_for`), since the cluster itself serves no content.

What the REST API of ``ipfs-cluster-service`` v1.1.6 does, as read in its sources and observed
against the real daemon the suite runs:

* ``GET /pins`` answers one ``GlobalPinInfo`` per pin in the shared pinset, as JSON values one
  after another (one per line): ``cid``, ``name``, ``metadata``, ``allocations`` and a
  ``peer_map`` of cluster peer ID -> ``{peername, status, ipfs_peer_id, ipfs_peer_addresses,
  error, ...}``. Each peer reports every pin: ``pinned``, ``pinning``, ``remote`` (not allocated
  to it), ``pin_error``, ``unexpectedly_unpinned``, or ``cluster_error`` when it did not answer.
  An empty pinset is ``204 No Content``.
* The peer serving the request collects every peer's answer into one map *before* it sends the
  first byte, so the wait for the first byte grows with the pinset (``timeout`` covers it); the
  server's memory grows with the pinset, this client's does not (:meth:`ClusterPins.pins` parses
  the stream value by value).
* ``?filter=<status>`` (e.g. ``pinned``) is applied by each peer to its own statuses: a pin no
  peer has ``pinned`` is left out, and the peer map of the rest lists only the peers that have
  it pinned (no ``remote`` entries), which makes the answer smaller when pins are allocated to
  few of many peers. There is no server-side filter on names or metadata (``/pins`` takes
  ``filter``, ``local`` and ``cids`` only): :class:`Selector` filters here.
* Errors are ``{"code": ..., "message": ...}``; an error after the stream has started travels in
  the ``X-Stream-Error`` trailer, which httpx does not expose. For ``/pins`` that cannot cut a
  listing short in practice (the answer is complete before it starts; a peer that fails shows as
  ``cluster_error`` in the peer map instead), except in one case the server does not report at
  all: when *every* peer fails to list (e.g. the only peer's Kubo is down), the answer is an
  empty ``204``. :meth:`ClusterPins.pins` therefore checks an empty answer against the shared
  state (``GET /allocations``, which needs no Kubo) and raises rather than report an empty
  pinset that is not.

Credentials: ``token`` (a bearer token, e.g. the JWT ``POST /token`` issues) or ``username`` +
``password`` (HTTP basic auth); a token wins when both are given. Error messages never contain
them, nor the URL's userinfo or query.

This module sits beside the Kubo client (:mod:`pinsync.ipfs`): it imports neither backends nor
reconcilers. :class:`JsonValues`, the incremental parser of the cluster's streamed answers, is
shared with the ``ipfsCluster`` backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from pinsync import reasons
from pinsync.ipfs import redact_url

PINNED = "pinned"
"""The tracker status of a peer that holds a pin."""


class ClusterError(reasons.ReasonedError):
    """Reading the cluster failed. ``reason``: ``Unreachable`` (connection refused, DNS, connect
    timeout), ``AuthFailed`` (HTTP 401 or 403), ``InvalidConfig`` (an apiUrl httpx cannot use),
    else ``ClusterError``. The message has no secrets."""

    reason = reasons.CLUSTER_ERROR.name


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterPin:
    """One pin of the cluster's shared pinset, with the peers that hold it."""

    cid: str
    """As the cluster prints it (the CID it was pinned with, in its own base)."""
    name: str
    metadata: Mapping[str, str] = dataclasses.field(hash=False)
    pinned_on: tuple[str, ...]
    """Cluster peer IDs whose status is ``pinned``, in the order the cluster lists them."""

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> ClusterPin:
        """A ``GlobalPinInfo`` of ``GET /pins``; ValueError when it is not one."""
        cid = value.get("cid")
        if isinstance(cid, dict):  # {"/": "bafy..."} in answers of clusters before v1
            cid = cid.get("/")
        if not isinstance(cid, str) or not cid:
            raise ValueError("a pin status without a CID")
        peers = value.get("peer_map") or {}
        metadata = value.get("metadata") or {}
        if not isinstance(peers, dict) or not isinstance(metadata, dict):
            raise ValueError(f"{cid}: peer_map or metadata is not an object")
        return cls(
            cid=cid,
            name=str(value.get("name") or ""),
            metadata={str(key): str(item) for key, item in metadata.items()},
            pinned_on=tuple(
                str(peer)
                for peer, info in peers.items()
                if isinstance(info, dict) and info.get("status") == PINNED
            ),
        )


@dataclasses.dataclass(frozen=True)
class Selector:
    """Which pins of a cluster a PinSet wants (``spec.fromCluster``, without the peers)."""

    api_url: str
    name_prefix: str = ""
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
    """Every key=value here must be in the pin's metadata."""

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Selector:
        """From ``spec.fromCluster`` (camelCase keys, as the API server stores them)."""
        metadata = spec.get("metadata") or {}
        return cls(
            api_url=str(spec["apiUrl"]),
            name_prefix=str(spec.get("namePrefix") or ""),
            metadata={str(key): str(value) for key, value in metadata.items()},
        )

    def matches(self, pin: ClusterPin) -> bool:
        if not pin.name.startswith(self.name_prefix):
            return False
        found = pin.metadata
        return all(found.get(key) == value for key, value in self.metadata.items())


def peer_urls(spec: Mapping[str, Any]) -> dict[str, str]:
    """``spec.fromCluster.peers`` as {peer ID or peername: Kubo API URL}, in spec order."""
    return {str(item["peer"]): str(item["ipfsApiUrl"]) for item in spec.get("peers") or ()}


def kubo_for(
    pin: ClusterPin, peer_urls: Mapping[str, str], names: Mapping[str, str], default: str
) -> str:
    """The Kubo API URL to export ``pin`` from: that of the first configured peer (in spec
    order) that has it pinned, named by its cluster peer ID or its peername (``names``: peer ID
    -> peername, as :meth:`ClusterPins.peers` returns); ``default`` when none has."""
    return kubo_candidates(pin, peer_urls, names, default)[0]


def kubo_candidates(
    pin: ClusterPin, peer_urls: Mapping[str, str], names: Mapping[str, str], default: str
) -> list[str]:
    """Every configured peer's Kubo API URL that has ``pin`` pinned, in spec order (a worker
    picks the one on its own node), else ``[default]``."""
    holders = {*pin.pinned_on, *(names[peer] for peer in pin.pinned_on if names.get(peer))}
    return [url for peer, url in peer_urls.items() if peer in holders] or [default]


class ClusterPins:
    """A client of one cluster REST API (one per apiUrl and credentials). It owns an
    ``httpx.AsyncClient``, made on first use: close it with :meth:`aclose` (or use it in
    ``async with contextlib.aclosing(ClusterPins(...))``).

    ``timeout`` bounds connecting and each wait for data, including the wait for the first
    byte of ``/pins`` (which the cluster sends only once it has every peer's statuses).
    """

    def __init__(
        self,
        api_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.where = redact_url(self.api_url)
        self.timeout = timeout
        self.headers: dict[str, str] = {}
        self.auth: httpx.BasicAuth | None = None
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif username and password:
            self.auth = httpx.BasicAuth(username, password)
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            try:
                self._client = httpx.AsyncClient(
                    base_url=self.api_url,
                    headers=self.headers,
                    auth=self.auth,
                    timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                )
            except (httpx.InvalidURL, TypeError, ValueError):
                raise ClusterError(
                    f"{self.where}: not a usable URL", reason=reasons.INVALID_CONFIG
                ) from None
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def pins(self, *, pinned_only: bool = False) -> AsyncIterator[ClusterPin]:
        """Every pin of the shared pinset, one by one as the answer streams in.

        ``pinned_only``: ask for ``?filter=pinned``: pins no peer holds yet are left out (and
        the cluster sends less). Raises ClusterError (see the class) when the cluster cannot be
        read, also when it answers an empty listing although its pinset is not empty.
        """
        params = {"filter": PINNED} if pinned_only else None
        count = 0
        async with contextlib.aclosing(self.stream("/pins", params=params)) as values:
            async for value in values:  # a caller that stops early closes the answer here
                try:
                    pin = ClusterPin.parse(value)
                except ValueError as exc:
                    raise ClusterError(f"cluster /pins at {self.where}: {exc}") from None
                count += 1
                yield pin
        if count == 0 and not pinned_only and await self.has_allocations():
            raise ClusterError(
                f"cluster /pins at {self.where} listed no pin, but its pinset is not empty: no "
                "peer could list its statuses (is their IPFS daemon down?)"
            )

    async def allocations_digest(self) -> bytes:
        """A digest of the shared pinset's bytes (``GET /allocations``: names, metadata,
        allocations; no peer statuses, which change all the time, and no Kubo involved),
        parsing nothing: an unchanged pinset of any size costs one hash of its answer."""
        what = f"cluster /allocations at {self.where}"
        hasher = hashlib.blake2b(digest_size=16)
        try:
            async with self.client().stream("GET", "/allocations") as response:
                if not response.is_success:
                    await response.aread()
                    raise_for_status(response, what)
                async for chunk in response.aiter_bytes():
                    hasher.update(chunk)
        except httpx.HTTPError as exc:
            raise translate(exc, what, self.timeout) from None
        return hasher.digest()

    async def has_allocations(self) -> bool:
        """Whether the shared pinset holds any pin (``GET /allocations``: no Kubo involved)."""
        async with contextlib.aclosing(self.stream("/allocations")) as pins:
            async for _ in pins:
                return True
        return False

    async def peers(self) -> dict[str, str]:
        """{cluster peer ID: peername} of every peer ``GET /peers`` lists (a peer that does not
        answer is listed with its ID and an empty name)."""
        found: dict[str, str] = {}
        async for peer in self.stream("/peers"):
            peer_id = peer.get("id")
            if isinstance(peer_id, str) and peer_id:
                found[peer_id] = str(peer.get("peername") or "")
        return found

    async def stream(
        self, path: str, *, params: Mapping[str, str] | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The JSON objects of a streamed answer, one by one."""
        what = f"cluster {path} at {self.where}"
        try:
            async with self.client().stream("GET", path, params=params) as response:
                if not response.is_success:
                    await response.aread()
                    raise_for_status(response, what)
                decoder = JsonValues(what)
                async for text in response.aiter_text():
                    for value in decoder.feed(text):
                        yield value
                decoder.close()
        except httpx.HTTPError as exc:
            raise translate(exc, what, self.timeout) from None


def translate(exc: httpx.HTTPError, what: str, timeout: float) -> ClusterError:
    """The ClusterError an httpx failure maps to (its message names no URL: httpx's may)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return ClusterError(f"{what}: no connection within the timeout", reason=reasons.UNREACHABLE)
    if isinstance(exc, httpx.ConnectError):
        return ClusterError(f"{what}: cannot connect", reason=reasons.UNREACHABLE)
    if isinstance(exc, httpx.TimeoutException):
        return ClusterError(f"{what}: no answer within {timeout:g}s ({type(exc).__name__})")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ClusterError(f"{what}: not an http(s) URL", reason=reasons.INVALID_CONFIG)
    return ClusterError(f"{what}: {type(exc).__name__}")


def raise_for_status(response: httpx.Response, what: str) -> None:
    """ClusterError for an HTTP error answer, quoting the cluster's ``message`` (which names
    CIDs and peers, never credentials); another server's body (a proxy's page) is not quoted."""
    if response.is_success:
        return
    code = response.status_code
    if code in (401, 403):
        raise ClusterError(
            f"{what}: the cluster rejected the credentials (HTTP {code})",
            reason=reasons.AUTH_FAILED,
        )
    message = ""
    with contextlib.suppress(ValueError, AttributeError):
        message = str(json.loads(response.content).get("message") or "")[:300]
    if code == 404 and not message:
        raise ClusterError(f"{what}: HTTP 404: no IPFS Cluster REST API at this URL")
    raise ClusterError(f"{what}: HTTP {code}" + (f": {message}" if message else ""))


_SPACE = frozenset(" \t\n\r")
"""JSON's whitespace."""


class JsonValues:
    """Splits a stream of concatenated JSON values (the cluster's streaming format) as text
    arrives; a top-level array (older clusters) is unpacked the same way. Memory holds at most
    one incomplete value (and the text of one ``feed``), not the whole answer.

    ``error`` makes the exception for an answer that is not this format (``what`` + why).
    """

    def __init__(self, what: str, error: Callable[[str], Exception] = ClusterError) -> None:
        self.what = what
        self.error = error
        self.buffer = ""
        self.decode = json.JSONDecoder().raw_decode

    def feed(self, text: str) -> list[dict[str, Any]]:
        buffer = self.buffer + text if self.buffer else text
        values: list[dict[str, Any]] = []
        at, size = 0, len(buffer)
        while True:
            while at < size and buffer[at] in _SPACE:
                at += 1
            if at == size:
                break
            try:
                value, at_end = self.decode(buffer, at)
            except ValueError:
                break  # incomplete: wait for more text
            at = at_end
            if isinstance(value, dict):
                values.append(value)
                continue
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, dict):
                    raise self.error(f"{self.what}: unexpected answer")
                values.append(item)
        self.buffer = buffer[at:]
        return values

    def close(self) -> None:
        if self.buffer.strip():
            raise self.error(f"{self.what}: listing cut off")
