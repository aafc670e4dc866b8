"""Async client for the Kubo RPC API (``/api/v0``) over aiohttp.

Why the HTTP API and not the ``ipfs`` CLI in a subprocess: the operator then needs no Kubo binary
or repository of matching version in its image; a CAR export streams straight from the socket
into an upload without a temporary file; errors come back as JSON with Kubo's message; and a call
is cancelled by closing its connection, which Kubo turns into a cancelled request context (a
``pin/add`` that times out stops asking bitswap for the blocks).

What Kubo 0.39 does, as observed against a real daemon:

* With the global option ``offline=true``, a command that needs a block that is not in the local
  blockstore fails at once (milliseconds) with HTTP 500 and
  ``{"Message": "block was not found locally (offline): ipld: could not find <cid>", ...}``.
  Without it, ``dag/stat``, ``dag/export`` and ``pin/add`` of such a CID wait indefinitely while
  bitswap searches (a node with no peers never answers).
* ``dag/stat`` walks the whole DAG before answering, so a block missing anywhere gives HTTP 500.
  ``dag/export`` has already sent ``200 OK`` and part of the CAR when it reaches a missing block:
  the error travels only in the ``X-Stream-Error`` trailer, which HTTP clients do not expose, and
  the body ends cleanly between two blocks. Check exports with :class:`pinsync.car.CarChecker` and
  the block count from :meth:`Kubo.dag_stat`.
* ``pin/add`` of a CID that is already pinned replaces its pin name; without a name it clears it.

Why aiohttp and not httpx (used elsewhere in pinsync): the export stream is the hot path, and
Kubo writes it in HTTP chunks of ~4 KiB. httpx parses those in pure Python (h11); aiohttp in C
(llhttp). Measured on the 2-core bench machine, reading a CAR cost 3.4 CPU-seconds per GiB with
httpx and 1.3 with aiohttp, which is the difference between a CPU-bound sync at ~95 and ~120 MiB/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp
import numpy as np
import yarl

from pinsync import cids, pinlists, reasons

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds one ``swarm/connect`` may take (a pinning service's delegate that never answers)."""

PIN_ENTRY = re.compile(rb'"([^"\\]+)":\{"Type":"recursive","Name":"((?:[^"\\]|\\.)*)"\}')
"""One pin of Kubo 0.39's non-streamed ``pin/ls`` answer, ``{"Keys":{"<cid>":{"Type":...,
"Name":...},...}}`` (Go's encoder writes the keys sorted and these fields in this order); an
answer that is anything else is parsed as JSON instead."""
LISTING_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinListing:
    """A node's recursive pins as one read saw them: identities, names, and a digest of the
    answer's bytes (the same answer twice is the same list: no need to parse it again)."""

    digest: bytes
    keys: pinlists.Keys
    names: np.ndarray[Any, Any]
    """Each key's pin name (bytes, UTF-8), in the order of ``keys``."""


_MISSING_MARKERS = ("not found locally", "could not find", "block not found")


class IpfsError(reasons.ReasonedError):
    """A Kubo call failed. ``reason`` is CamelCase (for conditions); the message has no secrets."""

    reason = "IpfsError"


class PinTimeout(IpfsError):
    """``pin/add`` did not finish in time (the content is not findable, or too slow to fetch)."""

    reason = "PinTimeout"


class ContentUnavailable(IpfsError):
    """Blocks needed are not in the node's local blockstore (asked with ``offline=true``)."""

    reason = "ContentUnavailable"


class NodeUnreachable(IpfsError):
    """The RPC API could not be reached (refused, DNS, connection dropped)."""

    reason = "NodeUnreachable"


Params = Mapping[str, str] | Sequence[tuple[str, str]]
"""Query parameters; a sequence of pairs where a name repeats (several ``arg``)."""

_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
"""Connecting, sending or reading failed (aiohttp's timeouts are also TimeoutErrors)."""


def redact_url(url: str) -> str:
    """``scheme://host:port/path`` of ``url``: no userinfo, query or fragment."""
    try:
        parsed = yarl.URL(url)
        port = f":{parsed.port}" if parsed.explicit_port is not None else ""
    except (ValueError, TypeError):
        return "<invalid URL>"
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path.rstrip('/')}"


async def _kubo_message(response: aiohttp.ClientResponse) -> str:
    """Kubo's error message from an error answer (JSON ``Message``, else the start of the text)."""
    raw = await response.read()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("Message"), str):
        return str(body["Message"])
    text = raw.decode(errors="replace").strip()[:500]
    return text or f"HTTP {response.status}"


def _is_missing(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _MISSING_MARKERS)


class Kubo:
    """One Kubo RPC API endpoint. Owns an ``aiohttp.ClientSession``, made on first use (inside
    the event loop, as aiohttp requires): close it with :meth:`aclose` or ``async with``.

    ``timeout`` applies to connecting and to each wait for data; ``pin_add`` has its own.
    """

    def __init__(self, api_url: str, *, timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._where = redact_url(self.api_url)
        try:
            self._password = yarl.URL(self.api_url).password or ""
        except ValueError:
            self._password = ""
        self._timeouts = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._addresses: list[str] | None = None
        self._peer = ""

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeouts,
                auto_decompress=False,  # a CAR is passed on byte for byte
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Kubo:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- error mapping -------------------------------------------------------------------------

    def _transport_error(self, exc: BaseException, what: str) -> IpfsError:
        detail = str(exc).replace(self.api_url, self._where) or type(exc).__name__
        if self._password:
            detail = detail.replace(self._password, "***")
        if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ConnectionTimeoutError):
            return IpfsError(
                f"{what}: no answer from Kubo at {self._where} within {self.timeout:g}s",
                reason="RequestTimeout",
            )
        return NodeUnreachable(f"{what}: cannot reach Kubo at {self._where}: {detail}")

    async def _answer_error(
        self, response: aiohttp.ClientResponse, what: str, reason: str
    ) -> IpfsError:
        message = await _kubo_message(response)
        text = f"{what}: Kubo answered HTTP {response.status}: {message}"
        if _is_missing(message):
            return ContentUnavailable(text)
        return IpfsError(text, reason=reason)

    @contextlib.asynccontextmanager
    async def _call(
        self,
        path: str,
        params: Params,
        *,
        what: str,
        reason: str,
        timeout: aiohttp.ClientTimeout | None = None,
        data: aiohttp.MultipartWriter | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST to the RPC API; yield a ``200 OK`` answer, raise an IpfsError for anything else.

        Transport failures while the caller reads the body are mapped too.
        """
        try:
            async with self._http().post(
                f"{self.api_url}{path}",
                params=params,
                timeout=timeout or self._timeouts,
                data=data,
            ) as response:
                if response.status != 200:
                    raise await self._answer_error(response, what, reason)
                yield response
        except _TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc, what) from None

    async def _post(
        self,
        path: str,
        params: Params,
        *,
        what: str,
        reason: str = "IpfsError",
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        """POST and return the decoded JSON answer, mapping every failure to an IpfsError."""
        async with self._call(path, params, what=what, reason=reason, timeout=timeout) as answer:
            raw = await answer.read()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise IpfsError(f"{what}: Kubo's answer is not JSON", reason=reason) from None

    # -- API -----------------------------------------------------------------------------------

    async def id(self) -> dict[str, Any]:
        """The node's identity (``ID``, ``AgentVersion``, ``Addresses``, ...)."""
        answer = await self._post("/api/v0/id", {}, what="id")
        if not isinstance(answer, dict):
            raise IpfsError("id: unexpected answer from Kubo")
        return answer

    async def addresses(self) -> list[str]:
        """The node's own multiaddrs, each with ``/p2p/<peer id>`` (what ``id`` lists): where a
        pinning service may fetch content from. Asked once per client, as they rarely change."""
        if self._addresses is None:
            ident = await self.id()
            peer = str(ident.get("ID") or "")
            found = [str(a) for a in ident.get("Addresses") or () if isinstance(a, str)]
            self._peer = peer
            self._addresses = [a if "/p2p/" in a else f"{a}/p2p/{peer}" for a in found]
        return list(self._addresses)

    async def connect(self, addresses: Sequence[str]) -> None:
        """``swarm/connect`` to each address, best effort: a peer that cannot be dialled (or is
        this node itself) is logged and skipped, since the caller only wants to help a fetch."""
        await self.addresses()  # learns our own peer id, so we never dial ourselves

        async def dial(address: str) -> None:
            # Kubo's own timeout bounds a dial to an address that never answers.
            params = [("arg", address), ("timeout", f"{CONNECT_TIMEOUT:g}s")]
            try:
                await self._post("/api/v0/swarm/connect", params, what="swarm/connect")
            except IpfsError as exc:
                logger.debug("could not connect to %s: %s", address, exc)

        others = [a for a in addresses if not (self._peer and a.endswith(f"/p2p/{self._peer}"))]
        await asyncio.gather(*(dial(address) for address in others))

    async def pins(self) -> dict[str, str]:
        """All recursive pins: CID (as Kubo prints it) -> pin name ("" if unnamed).

        Asks for the streamed form (one JSON object per line: ``Cid``, ``Type`` and ``Name``,
        which Kubo leaves out for unnamed pins) and also understands the older ``Keys`` object.
        Note: an error in the middle of a streamed listing would only be in the trailer, as with
        ``dag/export``; Kubo's pin listing has no such failure in practice.
        """
        params = {"type": "recursive", "names": "true", "stream": "true"}
        result: dict[str, str] = {}
        try:
            async with self._call("/api/v0/pin/ls", params, what="pin/ls", reason="IpfsError") as (
                answer
            ):
                async for line in answer.content:
                    if line.strip():
                        self._collect_pins(json.loads(line), result)
        except (
            ValueError,  # JSON errors; older aiohttp's "Chunk too big" for an over-long line
            TypeError,
            AttributeError,
            aiohttp.http_exceptions.HttpProcessingError,  # newer aiohttp's LineTooLong
        ):
            raise IpfsError("pin/ls: unexpected answer from Kubo") from None
        return result

    @contextlib.asynccontextmanager
    async def _pin_chunks(self) -> AsyncIterator[AsyncIterator[bytes]]:
        # Not the streamed form: Kubo writes that a line at a time, and reading 100,000 small
        # writes cost ~13 us each here (event-loop wake-ups), 0.4 CPU-s per 30,000 pins for
        # the bytes alone; the whole-map answer arrives in large writes (0.005 CPU-s), with
        # its keys sorted, so the same pins give the same bytes.
        params = {"type": "recursive", "names": "true", "stream": "false"}
        try:
            async with self._call("/api/v0/pin/ls", params, what="pin/ls", reason="IpfsError") as (
                answer
            ):
                yield answer.content.iter_chunked(LISTING_CHUNK)
        except (ValueError, TypeError, AttributeError, aiohttp.http_exceptions.HttpProcessingError):
            raise IpfsError("pin/ls: unexpected answer from Kubo") from None

    async def pins_digest(self) -> bytes:
        """A digest of the pin listing's bytes, parsing nothing: comparing it with the last
        read's is how an unchanged node of a million pins costs no parse."""
        hasher = hashlib.blake2b(digest_size=16)
        async with self._pin_chunks() as chunks:
            async for chunk in chunks:
                hasher.update(chunk)
        return hasher.digest()

    async def pin_listing(self) -> PinListing:
        """All recursive pins, by identity (:func:`pinsync.cids.key`), with their names; parsed
        as the answer streams in, never holding it whole."""
        hasher = hashlib.blake2b(digest_size=16)
        builder = pinlists.Builder()
        parser = _KeysParser(builder)
        async with self._pin_chunks() as chunks:
            async for chunk in chunks:
                hasher.update(chunk)
                parser.feed(chunk)
        if not parser.done():
            # Not the shape Kubo 0.39 sends: read it as JSON values, whatever they are.
            builder = pinlists.Builder()
            for cid, name in (await self.pins()).items():
                if (identity := cids.key(cid)) is not None:
                    builder.add(identity, name)
        keys, names = builder.build_with()
        return PinListing(digest=hasher.digest(), keys=keys, names=names)

    @staticmethod
    def _collect_pins(entry: dict[str, Any], into: dict[str, str]) -> None:
        if "Keys" in entry:  # non-streamed form: {"Keys": {cid: {"Type": ..., "Name": ...}}}
            for cid, info in (entry["Keys"] or {}).items():
                if info.get("Type") == "recursive":
                    into[cid] = info.get("Name") or ""
        elif entry.get("Type") == "recursive":
            into[entry["Cid"]] = entry.get("Name") or ""

    async def pin_add(self, cid: str, *, name: str = "", timeout: float) -> None:
        """Pin ``cid`` recursively (fetching what is missing), named ``name``.

        Raises PinTimeout if that does not finish within ``timeout`` seconds; the request is then
        cancelled (observed: Kubo drops the CID from its bitswap wantlist). Re-pinning a pinned
        CID replaces its name, and an empty ``name`` clears it (Kubo's behaviour).
        """
        params = {"arg": cid, "recursive": "true"}
        if name:
            params["name"] = name
        try:
            async with asyncio.timeout(timeout):
                await self._post(
                    "/api/v0/pin/add",
                    params,
                    what=f"pin/add {cid}",
                    reason="PinFailed",
                    # Kubo sends nothing until the pin is done: only asyncio's deadline applies.
                    timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout),
                )
        except TimeoutError:
            raise PinTimeout(f"pinning {cid} did not finish within {timeout:g}s") from None

    async def pin_local(self, cids: Sequence[str], *, name: str = "") -> None:
        """Pin several CIDs whose blocks are all local, in one request, named ``name``.

        Asked with ``offline=true``, so Kubo answers at once: it pins all of them, or fails
        with ContentUnavailable if any block is missing locally (then pin them one by one with
        :meth:`pin_add`, which fetches). Measured against Kubo 0.39: 2,000 local CIDs
        pinned 32 to a request cost Kubo 1.55 CPU-s, one to a request 2.06.
        """
        params = [("arg", cid) for cid in cids] + [("recursive", "true"), ("offline", "true")]
        if name:
            params.append(("name", name))
        await self._post("/api/v0/pin/add", params, what=f"pin/add of {len(cids)} local CIDs")

    async def dag_stat(self, cid: str, *, offline: bool = True) -> tuple[int, int]:
        """``(number of unique blocks, total size of their data)`` of the DAG under ``cid``.

        The block count equals the number of blocks ``dag/export`` writes (it deduplicates too);
        the size is the sum of block data, not the CAR's length. With ``offline`` (the default)
        a block missing anywhere in the DAG raises ContentUnavailable at once; without it, Kubo
        searches the network for it, which with no providers lasts until ``timeout``.
        """
        params = {"arg": cid, "progress": "false"}
        if offline:
            params["offline"] = "true"
        answer = await self._post("/api/v0/dag/stat", params, what=f"dag/stat {cid}")
        try:
            if "UniqueBlocks" in answer:
                return int(answer["UniqueBlocks"]), int(answer["TotalSize"])
            stat = answer["DagStats"][0]
            return int(stat["NumBlocks"]), int(stat["Size"])
        except (KeyError, IndexError, TypeError, ValueError):
            raise IpfsError(f"dag/stat {cid}: unexpected answer from Kubo") from None

    async def export(
        self, cid: str, *, offline: bool = True, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """Stream the DAG under ``cid`` as a CARv1 (``dag/export``), in chunks of ``chunk_size``.

        An async generator: nothing is sent until iteration starts, and only one chunk is held.
        An error answer before the body raises ContentUnavailable (blocks missing, ``offline``)
        or IpfsError(reason="ExportFailed") with Kubo's message. An error after the body started
        is invisible here (see the module docstring): wrap the stream in
        :class:`pinsync.car.CarChecker` with ``expected_blocks`` from :meth:`dag_stat`. Close the
        generator (``contextlib.aclosing``) if you stop before the end, to free the connection.
        """
        params = {"arg": cid}
        if offline:
            params["offline"] = "true"
        what = f"dag/export {cid}"
        async with self._call("/api/v0/dag/export", params, what=what, reason="ExportFailed") as (
            answer
        ):
            async for chunk in answer.content.iter_chunked(chunk_size):
                yield chunk

    async def dag_import(self, car: AsyncIterator[bytes]) -> tuple[int, int]:
        """Import a CARv1 stream into the blockstore (``dag/import``), pinning nothing.

        Returns Kubo's ``(blocks, block bytes)`` count. The stream is sent as it is read (a
        chunked multipart body), so nothing holds the whole CAR. Kubo answers only once it has
        read the whole body, so no read timeout applies while sending; the source's own
        timeouts bound a stalled stream. An error of ``car`` itself surfaces wrapped by aiohttp
        (as NodeUnreachable here): callers that check the stream keep its error to tell the two
        apart. Kubo stores blocks as they arrive, so a stream that fails half-way leaves its
        first blocks unpinned in the blockstore, for the next ``repo gc``; the caller walks the
        DAG offline (``dag_stat``) to prove it complete, then pins the root.
        """
        writer = aiohttp.MultipartWriter("form-data")
        part = writer.append(aiohttp.payload.AsyncIterablePayload(car))
        part.set_content_disposition("form-data", name="file", filename="pin.car")
        params = {"pin-roots": "false", "stats": "true"}
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout)
        what = "dag/import"
        stats: dict[str, Any] = {}
        async with self._call(
            "/api/v0/dag/import",
            params,
            what=what,
            reason="ImportFailed",
            timeout=timeout,
            data=writer,
        ) as answer:
            async for line in answer.content:
                try:
                    entry = json.loads(line) if line.strip() else {}
                except ValueError:
                    raise IpfsError(
                        f"{what}: Kubo's answer is not JSON", reason="ImportFailed"
                    ) from None
                if isinstance(entry, dict) and isinstance(entry.get("Stats"), dict):
                    stats = entry["Stats"]
        try:
            return int(stats.get("BlockCount", 0)), int(stats.get("BlockBytesCount", 0))
        except (TypeError, ValueError):
            raise IpfsError(f"{what}: unexpected answer from Kubo", reason="ImportFailed") from None

    async def swarm_connect(self, addresses: Sequence[str]) -> int:
        """Connect to peers by multiaddr (``/ip4/…/tcp/…/p2p/<id>``); how many connected.

        One request each: Kubo fails a request naming several when any one fails, and a peer
        that is down must not hide the others.
        """
        connected = 0
        for address in addresses:
            try:
                await self._post("/api/v0/swarm/connect", {"arg": address}, what="swarm/connect")
            except IpfsError:
                continue
            connected += 1
        return connected


class _KeysParser:
    """Takes ``{"Keys":{"<cid>":{"Type":"recursive","Name":"..."},...}}`` apart as it arrives:
    every entry must follow the last one's end after a comma (or the opening), else the answer
    is not this shape and :meth:`done` says so."""

    OPENING = b'{"Keys":{'

    def __init__(self, into: pinlists.Builder) -> None:
        self.into, self.buffer, self.ok, self.first = into, b"", True, True

    def feed(self, chunk: bytes) -> None:
        if not self.ok:
            return
        buffer = self.buffer + chunk
        at = 0
        if self.first:
            if len(buffer) < len(self.OPENING):
                self.buffer = buffer
                return
            if not buffer.startswith(self.OPENING):
                self.ok = False
                return
            at, self.first = len(self.OPENING), False
        for match in PIN_ENTRY.finditer(buffer, at):
            gap = buffer[at : match.start()]
            if gap not in (b"", b","):
                self.ok = False
                return
            cid, name = match.groups()
            if b"\\" in name:
                name = json.loads(b'"' + name + b'"').encode()
            if cid.startswith(b"b"):  # CIDv1 in base32: Kubo prints it as its identity
                self.into.add_raw(cid, name)
            elif (identity := cids.key(cid.decode())) is not None:
                self.into.add_raw(identity.encode(), name)
            at = match.end()
        self.buffer = buffer[at:]
        if len(self.buffer) > LISTING_CHUNK:  # no entry is that long: not this shape
            self.ok = False

    def done(self) -> bool:
        return self.ok and not self.first and self.buffer.strip() in (b"}}", b"},}")
