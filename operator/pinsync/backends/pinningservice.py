"""Any provider of the IPFS Pinning Service API (type ``pinningService``): pinning by CID.

One backend type for every service that speaks the API (spec ``ipfs-pinning-service.yaml``):
Pinata, Filebase, 4EVERLAND, ipfs-cluster's own ``pinsvcapi``, ... Like ``ipfsCluster`` it is a
pinning service, not a store: pinsync asks it to pin a CID and the service fetches the blocks
over IPFS itself, so ``stores_content`` is False and ``put_pin`` closes its CAR stream unread.

What the protocol's words mean here:

* **location**: the pin requests whose name starts with ``namePrefix`` (default ``pinsync/``)
  on the account the token belongs to. The prefix is matched here, not by the service's
  ``name``/``match`` filter: providers differ in which match strategies they implement, and a
  filter a server silently ignored or applied exactly would make every pin look missing (and be
  pinned again, as a second request, at every pass).
* **present**: a request of ours in ``queued``, ``pinning`` or ``pinned``: the service has
  accepted it. A ``failed`` request is *not* present, so the engine's backoff schedules it again
  and ``put_pin`` then replaces it (delete, then add) rather than adding a second one.
* **verified**: the request is ``pinned``; ``queued``/``pinning`` raise the retryable
  ``Pinning`` (checked again later, never sent again). A verify right after a listing takes
  the status from that listing (one request per 1000 pins, not one per pin: providers meter
  requests); otherwise it asks ``GET /pins?cid=``.
* **put**: an existing request of ours for the CID is reused (a failed one is deleted first);
  else ``POST /pins`` with the prefixed name, ``origins`` and ``meta`` (the spec's, plus
  ``pinsync/pinset`` naming the PinSets that want the pin). Origins are the spec's, else those
  of the Kubo node's own addresses the API allows (:func:`allowed_origins`: public, ending in
  ``/p2p/<peer id>``, or ``/dnsaddr``): Kubo lists loopback, LAN, ``quic-v1`` and
  ``webtransport`` addresses, and Pinata refuses the whole pin for one of them with 400
  ``INVALID_ORIGINS``. That answer is taken as "this service refuses our origins": the pin is
  sent again without them, and so is every later one of this client. The ``delegates``
  the service answers are handed to Kubo (``swarm/connect``) so that its peers can fetch from
  us; then a bounded wait (``put_wait``) polls ``GET /pins/{requestid}``. A pin still in
  progress when the wait ends stays requested and ``put_pin`` raises ``Pinning``; ``failed``
  raises ``ServicePinFailed`` with the service's ``info``.
* **remove**: ``DELETE /pins/{requestid}`` for each of our requests for the CID. Any 2xx is
  done, whatever its body: the spec's is 202 and empty, Pinata's 200 ``text/plain`` ``OK``.
* **usage**: ``objects`` counts our present requests; ``bytes`` is 0 and ``free`` unknown (the
  API reports neither). **fetch**: unsupported; the API serves no content.

Listings page at ``limit=1000`` by ``created`` (see :class:`Pages`: ``count`` is what matches
*including* the cursor, so what remains, as Filebase and 4EVERLAND answer; ``created`` may have
one-second resolution; and servers that do not page, count only the page, or list oldest first
are coped with). ``requestid`` is opaque (ipfs-cluster uses the CID itself, the reference mock
``req-N``, Filebase a base64 id). The ``cid`` filter takes at most ten CIDs per request.

Errors follow the spec's ``{"error": {"reason", "details"}}``: 401 ``AuthFailed``, 403
``PermissionDenied``, 409 (insufficient funds) ``QuotaExceeded``, 429 ``RateLimited`` with the
``Retry-After`` the engine's backoff honours, 400 ``ServiceRejected``, the rest
``ServiceError``. Rate limits are also honoured before a refusal: an answer's
``x-ratelimit-remaining`` (Pinata) is the budget of requests until ``x-ratelimit-reset``, and
one that would exceed it waits for the reset (:class:`pinsync.backends.ratelimit.Pacer`).
``details`` is shown cut to a line of printable text, with the token removed should a service
ever echo it.

Credentials: ``token``, sent as ``Authorization: Bearer <token>`` (the API's only scheme).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import httpx

from pinsync import reasons
from pinsync.backends import base, errors, httpservice, ratelimit

logger = logging.getLogger(__name__)

PINSET_META = "pinsync/pinset"
"""Meta key carrying the ``namespace/name`` of every PinSet that wants the pin."""

PINNED = "pinned"
FAILED = "failed"
IN_PROGRESS = frozenset({"queued", "pinning"})
PRESENT = IN_PROGRESS | {PINNED}
RANK = {PINNED: 3, "pinning": 2, "queued": 1, FAILED: 0}
"""Which of several requests for one CID tells its state best (a pinned one wins)."""

PAGE_LIMIT = 1000
"""The spec's maximum ``limit``."""
MAX_CIDS = 10
"""The spec's maximum number of CIDs in one ``cid`` filter."""
MAX_ORIGINS = 20
"""The spec's maximum number of ``origins`` of a pin."""
MAX_NAME = 255
"""The spec's maximum length of a pin's name."""
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
"""Per request; connecting fails fast, so an unreachable service is reported at once."""
VISIBLE_WITHIN = 10.0
"""Seconds a new request may answer 404 (a service whose reads lag its writes) before it
counts as lost."""
OVERLAP = datetime.timedelta(seconds=1)
"""How far a page's cursor reaches back into the page before it: requests made in the same
second as a page's edge (Filebase writes ``created`` in whole seconds) are not skipped."""
INVALID_ORIGINS = "INVALID_ORIGINS"
"""The reason Pinata's 400 gives for origins it will not take."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinningServiceConfig(base.Config):
    endpoint: str
    """The API's base URL (``/pins`` is appended), without a trailing slash."""
    prefix: str
    origins: tuple[str, ...] | None
    """None: the Kubo node's own addresses, asked per pin."""
    meta: Mapping[str, str]


class ServiceError(errors.BackendError):
    """The service answered, but with an error or something that is not the API's answer."""

    reason = reasons.SERVICE_ERROR.name


class Rejected(errors.BackendError):
    """A 400: the service refused the request as made. ``said``: the spec error's ``reason``."""

    reason = reasons.SERVICE_REJECTED.name

    def __init__(self, message: str, *, said: str = "") -> None:
        super().__init__(message)
        self.said = said


class PinningServiceBackend(httpservice.HttpService):
    error: ClassVar[type[errors.BackendError]] = ServiceError
    credential_keys: ClassVar[base.CredentialKeys] = base.CredentialKeys(
        alternatives=(frozenset({"token"}),)
    )
    stores_content: ClassVar[bool] = False

    put_wait: float = 30.0
    """Seconds ``put_pin`` waits for ``pinned`` (tests shorten it). Shorter than the cluster's:
    a provider fetching over the internet often needs minutes, and each poll is a metered
    request; a later pass verifies the pin from its listing anyway."""
    poll_interval: float = 0.5

    conf: PinningServiceConfig

    @classmethod
    def validate(
        cls, spec: Mapping[str, Any], credentials: base.Credentials
    ) -> PinningServiceConfig:
        fields = base.Fields("pinningService", spec)
        endpoint = fields.url("endpoint", "")
        if not endpoint:
            raise fields.invalid("endpoint", "is required")
        try:
            url = httpx.URL(endpoint)
        except httpx.InvalidURL:
            raise fields.invalid("endpoint", "is not a valid URL") from None
        if url.userinfo:
            raise fields.invalid(
                "endpoint", "must not hold credentials; put the token in the Secret"
            )
        prefix = fields.text("namePrefix", "pinsync/")
        if len(prefix) > MAX_NAME - 100:  # room for a CID (and a pin name) after it
            raise fields.invalid("namePrefix", f"is longer than {MAX_NAME - 100} characters")
        return PinningServiceConfig(
            endpoint=endpoint,
            prefix=prefix,
            origins=origins_of(fields),
            meta=meta_of(fields),
        )

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        self.prefix = self.conf.prefix
        self._listed: dict[str, Mapping[str, Any]] = {}
        """CID -> its best request in the last listing, for the verifications that follow it."""
        self._pacer = ratelimit.Pacer()
        self._origins_refused = False
        """The service answered INVALID_ORIGINS once: pins go without origins from then on."""

    # -- plumbing ---------------------------------------------------------------------------------

    def make_client(self) -> httpx.AsyncClient:
        headers = {"Accept": "application/json"}
        token = self.credentials.get("token")
        if token:  # the Secret needs one; without it the service answers 401, as it should
            headers["Authorization"] = f"Bearer {token.strip()}"
        return httpx.AsyncClient(base_url=self.conf.endpoint, headers=headers, timeout=TIMEOUT)

    async def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        one_pin: bool = False,
    ) -> Any:
        """One API call; the decoded JSON answer (None when empty, and for a ``DELETE``, whose
        2xx is success whatever it says), or the backend error it maps to. ``one_pin``: a 404
        means that request is gone, not that there is no API here."""
        async with self._pacer.paced(what):
            with self.translating(what, writing=method != "GET"):
                response = await self.client().request(method, path, params=params, json=body)
            self._pacer.note(response.headers)
        self.raise_for_status(response, what, one_pin=one_pin)
        if method == "DELETE":
            return None
        return self.decoded(response, what)

    def scrub(self, text: str) -> str:
        """One line of printable text, cut short, without the token."""
        token = self.credentials.get("token")
        if token:
            text = text.replace(token, "[token]")
        return httpservice.shown(text)

    def raise_for_status(self, response: httpx.Response, what: str, *, one_pin: bool) -> None:
        """Map an HTTP error answer (the spec's ``{"error": {"reason", "details"}}``) onto the
        backend error vocabulary."""
        if response.is_success:
            return
        code = response.status_code
        said = self.scrub(error_text(response))
        shown = f"HTTP {code}" + (f": {said}" if said else "")
        match code:
            case 401:
                raise errors.AuthFailed(f"{what}: the service rejected the token ({shown})")
            case 403:
                raise errors.PermissionDenied(f"{what}: {shown}")
            case 404 if one_pin:
                raise errors.PinNotFound(f"{what}: {shown}")
            case 404:
                raise errors.LocationNotFound(
                    f"{what}: no Pinning Service API at the configured endpoint ({shown})"
                )
            case 409:  # the spec's "insufficient funds"
                raise errors.StorageFull(f"{what}: {shown}", reason=reasons.QUOTA_EXCEEDED)
            case 429:
                raise ratelimit.refused(f"{what}: {shown}", response.headers)
            case 400:
                raise Rejected(f"{what}: {shown}", said=self.scrub(error_reason(response)))
        raise ServiceError(f"{what}: {shown}")

    def ours(self, status: Mapping[str, Any]) -> bool:
        pin = status.get("pin")
        return isinstance(pin, Mapping) and str(pin.get("name") or "").startswith(self.prefix)

    async def statuses(
        self, what: str, params: Mapping[str, str]
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Every PinStatus ``GET /pins`` answers for ``params``, over all pages, each request
        once (see :class:`Pages` for the paging and the servers it tolerates)."""
        pages = Pages()
        cursor: dict[str, str] = {}
        while True:
            query = {**params, "limit": str(PAGE_LIMIT), **cursor}
            answer = await self.request("GET", "/pins", what, params=query)
            if not isinstance(answer, Mapping) or not isinstance(answer.get("results"), list):
                raise ServiceError(f"{what}: the answer is not a Pinning Service API pin list")
            results: list[Any] = answer["results"]
            if not all(isinstance(status, Mapping) for status in results):
                raise ServiceError(f"{what}: a result is not a PinStatus")
            fresh = pages.take(results)
            for status in fresh:
                yield status
            count = answer.get("count")
            matching = count if isinstance(count, int) and not isinstance(count, bool) else 0
            following = pages.following(new=len(fresh), page=len(results), count=matching)
            if following is None:
                return
            cursor = dict([following])

    async def requests_for(self, cids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """CID -> our best request for it, in any status (a CID with none is left out)."""
        best: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(cids), MAX_CIDS):
            chunk = cids[start : start + MAX_CIDS]
            params = {"cid": ",".join(chunk), "status": ",".join(RANK)}
            async for status in self.statuses(f"look up {', '.join(chunk)}", params):
                cid = cid_of(status)
                if self.ours(status) and cid in chunk:
                    keep_best(best, cid, status)
        return best

    # -- the protocol -----------------------------------------------------------------------------

    async def health(self) -> None:
        """The token lists pins: the endpoint is the API, reachable, and accepts the token.
        No write probe: pinning anything would need content the service can fetch, and a probe
        pin would be a metered, visible request."""
        answer = await self.request("GET", "/pins", "list pins", params={"limit": "1"})
        if not isinstance(answer, Mapping) or not isinstance(answer.get("results"), list):
            raise ServiceError("list pins: the answer is not a Pinning Service API pin list")

    async def providers(self) -> list[str]:
        """The delegates of one pinned request (a service names the same peers for every pin
        it holds), so that a node restoring a pin can connect to them and fetch it."""
        answer = await self.request(
            "GET", "/pins", "list pinned pins", params={"limit": "1", "status": PINNED}
        )
        results = answer.get("results") if isinstance(answer, Mapping) else None
        first = results[0] if isinstance(results, list) and results else {}
        delegates = first.get("delegates") if isinstance(first, Mapping) else None
        return [str(d) for d in delegates or () if isinstance(d, str) and "/p2p/" in d]

    async def usage(self) -> base.Usage:
        count = 0
        async for _ in self.list_pins():
            count += 1
        return base.Usage(bytes=0, objects=count)

    async def list_pins(self) -> AsyncIterator[base.PinInfo]:
        listed: dict[str, Mapping[str, Any]] = {}
        params = {"status": ",".join(sorted(PRESENT))}
        async for status in self.statuses("list pins", params):
            if self.ours(status) and str(status.get("status")) in PRESENT:
                cid = cid_of(status)
                first = cid not in listed
                keep_best(listed, cid, status)
                if first:
                    yield base.PinInfo(cid=cid)
        self._listed = listed

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
        await base.close_unread(content)  # the service fetches by CID
        cid = meta.cid
        existing = (await self.requests_for([cid])).get(cid)
        if existing is not None and str(existing.get("status")) in PRESENT:
            status = existing  # already asked for (an earlier put that timed out): not twice
        else:
            body: dict[str, Any] = {
                "cid": cid,
                "name": (self.prefix + (meta.name or cid))[:MAX_NAME],
                "meta": {**self.conf.meta, **attribution(meta)},
            }
            if existing is not None:
                # A failed request goes before a new one is made, so there are never two. Not
                # the spec's replace (POST /pins/{requestid}): ipfs-cluster, whose requestid is
                # the CID, takes a replace by the same CID as "unpin the old one" and drops it.
                with contextlib.suppress(errors.PinNotFound):
                    await self.request(
                        "DELETE", f"/pins/{request_id(existing, cid)}", f"unpin {cid}", one_pin=True
                    )
            status = await self.add(meta, body)
        return await self.wait(meta, status)

    async def verify_pin(
        self, cid: str, *, deep: bool = False, listed: base.PinInfo | None = None
    ) -> base.PinInfo:
        status = self._listed.get(cid) if listed is not None else None
        if status is None:
            status = (await self.requests_for([cid])).get(cid)
        if status is None:
            raise errors.PinNotFound(f"{cid}: no pin request named with prefix {self.prefix!r}")
        if str(status.get("status")) == FAILED:
            # Not pinned: PinNotFound makes the engine send it again (put_pin replaces it).
            raise errors.PinNotFound(
                f"{cid}: the service reports the pin failed{self.info(status)}"
            )
        return self.judge(cid, status)

    async def remove_pin(self, cid: str) -> None:
        params = {"cid": cid, "status": ",".join(RANK)}
        found = [s async for s in self.statuses(f"look up {cid}", params)]
        for status in found:
            if self.ours(status) and cid_of(status) == cid:
                request = request_id(status, cid)
                with contextlib.suppress(errors.PinNotFound):  # removed meanwhile
                    await self.request("DELETE", f"/pins/{request}", f"unpin {cid}", one_pin=True)

    async def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        raise errors.Unsupported(
            f"{cid}: a pinning service backend cannot return content (the API serves none)"
        )
        yield b""  # pragma: no cover  (makes this an async generator)

    # -- one pin ----------------------------------------------------------------------------------

    async def add(self, meta: base.PinMeta, body: dict[str, Any]) -> Mapping[str, Any]:
        """``POST /pins``, with origins unless the service refused ours: then again without."""
        origins = [] if self._origins_refused else await self.origins(meta)
        offered = {**body, "origins": origins} if origins else body
        try:
            status = await self.request("POST", "/pins", f"pin {meta.cid}", body=offered)
        except Rejected as exc:
            if exc.said != INVALID_ORIGINS or not origins:
                raise
            # Origins are a hint (the service finds the content through the DHT too), so the
            # pin must not fail over them; and once refused, they are not offered again.
            logger.warning("%s: pins are sent without origins from now on", exc)
            self._origins_refused = True
            status = await self.request("POST", "/pins", f"pin {meta.cid}", body=body)
        if not isinstance(status, Mapping):
            raise ServiceError(f"pin {meta.cid}: the answer is not a PinStatus")
        return status

    async def origins(self, meta: base.PinMeta) -> list[str]:
        """Where the service should fetch from: the spec's list, else the node's addresses
        that the API allows."""
        if self.conf.origins is not None:
            return list(self.conf.origins)
        if meta.node is None:
            return []
        try:
            return allowed_origins(await meta.node.addresses())[:MAX_ORIGINS]
        except reasons.ReasonedError as exc:
            # Origins are a hint; the service can still find the content through the DHT.
            logger.warning("no origins for %s: the node's addresses: %s", meta.cid, exc)
            return []

    async def wait(self, meta: base.PinMeta, status: Mapping[str, Any]) -> base.PinInfo:
        """Poll the request until pinned, failed, or ``put_wait`` is up; hand every new set of
        delegates to the node on the way (the service may name its peers only once it works)."""
        cid = meta.cid
        request = request_id(status, cid)
        started = time.monotonic()
        deadline = started + self.put_wait
        interval = self.poll_interval
        dialled: set[str] = set()
        while True:
            await self.delegate(meta, status, dialled)
            try:
                return self.judge(cid, status)
            except errors.InProgress:
                if time.monotonic() + interval > deadline:
                    raise
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 5.0)
            try:
                answer = await self.request(
                    "GET", f"/pins/{request}", f"status of {cid}", one_pin=True
                )
            except errors.PinNotFound:
                if time.monotonic() < started + VISIBLE_WITHIN:
                    continue  # not visible yet where we asked (eventually consistent)
                raise ServiceError(f"{cid}: the service lost pin request {request}") from None
            if not isinstance(answer, Mapping):
                raise ServiceError(f"status of {cid}: the answer is not a PinStatus")
            status = answer

    async def delegate(
        self, meta: base.PinMeta, status: Mapping[str, Any], dialled: set[str]
    ) -> None:
        delegates = [str(d) for d in status.get("delegates") or () if isinstance(d, str)]
        fresh = [d for d in delegates if d not in dialled]
        if fresh and meta.node is not None:
            dialled.update(fresh)
            await meta.node.connect(fresh)

    def judge(self, cid: str, status: Mapping[str, Any]) -> base.PinInfo:
        state = str(status.get("status") or "")
        if state == PINNED:
            return base.PinInfo(cid=cid)
        if state in IN_PROGRESS:
            raise errors.InProgress(
                f"{cid}: the service reports it {state}", reason=reasons.PINNING
            )
        if state == FAILED:
            raise errors.BackendError(
                f"{cid}: the service reports the pin failed{self.info(status)}",
                reason=reasons.SERVICE_PIN_FAILED,
            )
        raise ServiceError(f"{cid}: unknown pin status {self.scrub(state)!r}")

    def info(self, status: Mapping[str, Any]) -> str:
        """The service's ``info`` (its free-form explanation), as a message suffix."""
        info = status.get("info")
        if not isinstance(info, Mapping) or not info:
            return ""
        return ": " + self.scrub("; ".join(f"{k}: {v}" for k, v in sorted(info.items())))


class Pages:
    """Where the next page of a listing starts, if there is one.

    The spec pages by ``created``: ask again with ``before`` = the oldest ``created`` seen,
    newest first; ``count`` is the number of requests matching the filters *including*
    ``before``, so on a later page it is what remains (Filebase and 4EVERLAND answer so; a
    total taken from the first page ended listings early). Each page is judged by itself:
    there is more while the page is full, or while the server counts more than it gave.

    The cursor reaches back :data:`OVERLAP` into the page before: ``created`` may have
    one-second resolution (Filebase), several requests share a page edge's second, and a
    strict ``before`` would skip those the page did not hold. Results are deduplicated by
    ``requestid``, so the overlap costs no duplicates. A page that brings nothing new
    although it overlapped is asked again without overlap (more requests in one second than
    a page holds), so the listing always moves on.

    Other servers are tolerated too: one that ignores paging (ipfs-cluster: everything at
    once) answers more than the limit, or repeats a page, which brings nothing new; either
    ends the listing. One that answers ``count`` as the page size (the spec's reference mock)
    is followed while its pages are full; one that lists oldest first (the mock again) answers
    a ``before`` page with nothing new, and is then paged forward with ``after`` = the newest
    seen.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.oldest: datetime.datetime | None = None
        self.newest: datetime.datetime | None = None
        self.direction = "before"
        self.overlapped = False
        """The last cursor reached back into the page before it."""

    def take(self, results: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The results not seen before (by ``requestid``), noting the listing's time edges."""
        fresh = []
        for status in results:
            request = str(status.get("requestid") or "")
            if not request or request in self.seen:
                continue
            self.seen.add(request)
            fresh.append(status)
            created = parse_time(status.get("created"))
            if created is not None:
                self.oldest = created if self.oldest is None else min(self.oldest, created)
                self.newest = created if self.newest is None else max(self.newest, created)
        return fresh

    def following(self, *, new: int, page: int, count: int) -> tuple[str, str] | None:
        """The cursor parameter of the next page, or None when the listing is complete."""
        overlap = True
        if page > PAGE_LIMIT:
            return None  # more than asked for: a server that ignores paging gave everything
        if new == 0:
            if self.overlapped:
                overlap = False  # only the overlap came back: step past the edge exactly
            elif self.direction == "after" or self.newest is None:
                return None
            else:
                self.direction = "after"  # nothing older: an oldest-first server, page forward
        elif page < PAGE_LIMIT and count <= page:
            return None  # a short page, and nothing counted beyond it
        edge = self.oldest if self.direction == "before" else self.newest
        if edge is None:
            return None
        self.overlapped = overlap
        if overlap:
            edge = edge + OVERLAP if self.direction == "before" else edge - OVERLAP
        return self.direction, format_time(edge)


# -- reading the spec and the answers -------------------------------------------------------------


def origins_of(fields: base.Fields) -> tuple[str, ...] | None:
    value = fields.spec.get("origins")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fields.invalid("origins", "must be a list of multiaddr strings")
    if len(value) > MAX_ORIGINS:
        raise fields.invalid("origins", f"must hold at most {MAX_ORIGINS} multiaddrs")
    for address in value:
        if not address.startswith("/"):
            raise fields.invalid("origins", f"holds {address!r}, which is not a multiaddr")
    return tuple(value)


def meta_of(fields: base.Fields) -> Mapping[str, str]:
    value = fields.spec.get("meta")
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise fields.invalid("meta", "must map strings to strings")
    if PINSET_META in value:
        raise fields.invalid("meta", f"must not set {PINSET_META!r}; pinsync writes it")
    return dict(value)


def attribution(meta: base.PinMeta) -> dict[str, str]:
    return {PINSET_META: ",".join(meta.pinsets)} if meta.pinsets else {}


def keep_best(best: dict[str, Mapping[str, Any]], cid: str, status: Mapping[str, Any]) -> None:
    current = best.get(cid)
    if current is None or rank(status) > rank(current):
        best[cid] = status


def rank(status: Mapping[str, Any]) -> int:
    return RANK.get(str(status.get("status")), -1)


def cid_of(status: Mapping[str, Any]) -> str:
    pin = status.get("pin")
    return str(pin.get("cid") or "") if isinstance(pin, Mapping) else ""


def request_id(status: Mapping[str, Any], cid: str) -> str:
    request = str(status.get("requestid") or "")
    if not request or "/" in request:
        raise ServiceError(f"pin {cid}: the service gave no usable requestid")
    return request


def format_time(when: datetime.datetime) -> str:
    """A cursor time in RFC 3339 UTC, to the microsecond (``...T12:00:01.000250Z``)."""
    return when.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: Any) -> datetime.datetime | None:
    """A PinStatus ``created`` (RFC 3339, possibly with nanoseconds), or None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def allowed_origins(addresses: Iterable[str]) -> list[str]:
    """The addresses the API allows as origins: a public host (no loopback, private, link-local
    or other special range; no ``localhost``) ending in ``/p2p/<peer id>``, or a ``/dnsaddr``
    name (which resolves to such addresses)."""
    allowed = []
    for address in addresses:
        parts = address.split("/")
        if len(parts) < 3 or parts[0] or not parts[2]:
            continue
        protocol, host = parts[1], parts[2]
        if protocol == "dnsaddr":
            public = True
        elif len(parts) < 5 or parts[-2] != "p2p" or not parts[-1]:
            public = False
        elif protocol in ("ip4", "ip6"):
            try:
                public = ipaddress.ip_address(host).is_global
            except ValueError:
                public = False
        elif protocol in ("dns", "dns4", "dns6"):
            name = host.lower().rstrip(".")
            public = "." in name and not name.endswith((".localhost", ".local", ".internal"))
        else:
            public = False
        if public:
            allowed.append(address)
    return allowed


def error_reason(response: httpx.Response) -> str:
    """The spec error's ``reason`` (``INVALID_ORIGINS``), or ""."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = json.loads(response.content).get("error")
        if isinstance(error, Mapping):
            return str(error.get("reason") or "")
    return ""


def error_text(response: httpx.Response) -> str:
    """What an error answer says: the spec's ``reason`` and ``details``, or a bare message
    (ipfs-cluster's other APIs); never another server's body (a proxy's HTML page)."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        body = json.loads(response.content)
        error = body.get("error", body)
        if isinstance(error, Mapping):
            parts: Iterable[Any] = (error.get("reason"), error.get("details"), error.get("message"))
            return ": ".join(str(p) for p in parts if p)
        return str(error)
    return ""
