"""A stand-in for the IPFS Pinning Service API that answers as one real provider was recorded
answering: a *profile* per provider, for the ``pinningService`` backend's tests.

No provider can be reached from a test, and the spec's reference mock (:mod:`psamock`) answers
as the spec reads, which is not how the providers answer. ipfs-shipyard/pinning-service-compliance
ran the same checks against each provider and published every request and response;
``tests/backends/data/psa_recorded.json`` keeps the exchanges this stand-in relies on, each with
its report's URL and commit. :func:`profiles` derives the profiles from that file, so a quirk
here is a recorded answer, not our reading of the docs:

* ``spec`` -- the spec's own answers (``POST`` and ``DELETE`` 202, millisecond ``created``,
  every ``match`` strategy, default ``limit`` 10); no recording.
* ``pinata`` (report of 2023-06-27): ``POST /pins`` answers 200, ``DELETE`` 200 ``text/plain``
  ``OK``; ``GET /pins`` sends ``x-ratelimit-limit/-remaining/-reset`` (reset: Unix seconds, about
  a minute ahead; 429 past the limit, which the recording never reached, so that answer's body
  is the spec's); the ``name`` filter finds nothing with any ``match``; no default page size;
  a missing token is 400 ``KEYS_MUST_BE_STRINGS``. Origins that are not public peer addresses
  of protocols it knows are 400 ``INVALID_ORIGINS`` (a user's report, ipfs/ipfs-webui#2096: a
  LAN ``quic-v1`` address of Kubo's; the stand-in refuses private hosts and the transports
  newer than the report, ``quic-v1``/``webtransport``/``webrtc-direct``/``certhash``, both).
* ``filebase`` (report of 2023-01-25, its last passing run): ``created`` has one-second
  resolution (``...T18:01:55.000-05:00``, several pins per second); ``count`` is what matches
  the filters *including* ``before`` (15 on the first page, 5 on the next); pages of 10 (the
  recorded default; a larger ``limit`` was never asked for, so none is taken);
  ``DELETE`` 202 with an empty body; request ids are base64 GraphQL ids.
* ``4everland`` (report of 2023-06-27): ``count`` and pages as Filebase's, millisecond
  ``created``, ``DELETE`` 202 ``{}``; ``match=exact`` works, ``partial`` finds nothing,
  ``iexact``/``ipartial`` ignore the name (every pin).

Which match strategy works, the page default, the answer codes and bodies and the
``created`` resolution are read from the recorded exchanges (:func:`profiles`); the rest is
common to all: pins are kept in memory, ``count`` counts every pin matching the filters
(including ``before``/``after``, as the spec says and the providers do), results are newest
first, and a pin is ``queued`` when made and ``pinned`` ``settle`` seconds later (nothing is
fetched). Tests look behind the API through ``/_fake/*``: the pins and every request answered,
and ``POST /_fake/deletes`` makes every ``DELETE`` fail with a given status (a service
that stopped deleting, for the operator's handling of a failed prune; not a recording).

Run as ``python -m pinsync.devenv.psafake <config.json> <port>``; :class:`PsaFake` writes the
config (the token, so in a file of mode 0600).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import ipaddress
import itertools
import json
import math
import pathlib
import secrets
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx
from aiohttp import web

from pinsync.devenv.processes import Process, Server, free_port, http_ok, serve

MATCHES = ("exact", "iexact", "partial", "ipartial")
KNOWN_PROTOCOLS = frozenset(
    {"ip4", "ip6", "dns", "dns4", "dns6", "dnsaddr", "tcp", "udp", "quic", "ws", "wss", "p2p"}
)
"""What a multiaddr parser of early 2023 knew (Pinata's refused ``quic-v1``, ipfs-webui#2096)."""
VALUELESS = frozenset(
    {"quic", "quic-v1", "webtransport", "ws", "wss", "webrtc", "webrtc-direct", "tls", "noise"}
)
"""Protocols written without a value (``certhash`` has one)."""
RATE_WINDOW = 60.0
"""Seconds; Pinata's reset was at most about a minute after its answer's date when recorded."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile:
    """How one provider answers (see the module docstring for each one's sources)."""

    name: str
    post_status: int = 202
    delete_status: int = 202
    delete_type: str = "application/json"
    delete_body: str = ""
    resolution: float = 0.001
    """Seconds; ``created`` is cut to it."""
    utc_offset: datetime.timedelta = datetime.timedelta(0)
    """The offset ``created`` is written in (Filebase: its server's -05:00)."""
    default_limit: int | None = 10
    max_limit: int = 1000
    """The largest page given whatever ``limit`` asks (the spec's maximum is 1000)."""
    match: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(MATCHES, "works")
    )
    """Strategy -> ``works``, ``nothing`` (finds no pin) or ``ignored`` (every pin)."""
    no_token: tuple[int, Any] = (401, {"error": {"reason": "UNAUTHORIZED"}})
    bad_token: tuple[int, Any] = (401, {"error": {"reason": "UNAUTHORIZED"}})
    not_found: Any = dataclasses.field(default_factory=lambda: {"error": {"reason": "NOT_FOUND"}})
    rate_limit: int | None = None
    """Requests to ``GET /pins`` per RATE_WINDOW, announced in ``x-ratelimit-*`` headers."""
    refuses_origins: Any = None
    """The 400 answer to origins that are not public peer addresses (None: all accepted)."""
    request_ids: str = "uuid"
    """``uuid``, or ``gid`` (Filebase: base64 of ``gid://filebase/Asset/<n>``)."""


def _exchanges(recorded: Mapping[str, Any], provider: str) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = recorded["providers"][provider]["exchanges"]
    return found


def _answer(exchanges: list[Mapping[str, Any]], test: Any) -> Mapping[str, Any] | None:
    return next((e for e in exchanges if test(e)), None)


def _derive(recorded: Mapping[str, Any], provider: str) -> Profile:
    """A profile from the provider's recorded exchanges (what each field is read from)."""
    seen = _exchanges(recorded, provider)
    post = _answer(seen, lambda e: e["request"] == "POST /pins")
    delete = _answer(seen, lambda e: e["request"].startswith("DELETE "))
    missing = _answer(seen, lambda e: e["status"] == 404)
    bad = _answer(seen, lambda e: e["check"].startswith("Request with invalid token"))
    none = _answer(seen, lambda e: e["check"].startswith("Request with no authentication"))
    first = _answer(seen, lambda e: e["check"].startswith("Pagination: First page"))
    limited = _answer(seen, lambda e: "x-ratelimit-limit" in e["headers"])
    assert post and delete and missing and bad, f"{provider}: an exchange is missing"
    created = datetime.datetime.fromisoformat(post["answer"]["created"])
    match = {}
    for strategy in MATCHES:
        e = _answer(seen, lambda e, s=strategy: f"match={s}" in e["request"])  # type: ignore[misc]
        count = e["answer"]["count"] if e else 1
        match[strategy] = "works" if count == 1 else "nothing" if count == 0 else "ignored"
    page = first["answer"] if first else None
    default_limit = len(page["results"]) if page and page["count"] > len(page["results"]) else None
    delete_body = delete["answer"]
    reported = recorded["providers"][provider].get("reported") or ()
    origins = next((r["answer"] for r in reported if "INVALID_ORIGINS" in json.dumps(r)), None)
    return Profile(
        name=provider,
        post_status=post["status"],
        delete_status=delete["status"],
        delete_type=delete["headers"]["content-type"],
        delete_body=delete_body if isinstance(delete_body, str) else json.dumps(delete_body),
        resolution=1.0 if created.microsecond == 0 else 0.001,
        utc_offset=created.utcoffset() or datetime.timedelta(0),
        default_limit=default_limit,
        # Pages of 10 were recorded; whether a larger limit is honoured was not (no check asked
        # for one), so the stand-in takes the stricter reading.
        max_limit=default_limit or 1000,
        match=match,
        no_token=(none["status"], none["answer"]) if none else (bad["status"], bad["answer"]),
        bad_token=(bad["status"], bad["answer"]),
        not_found=missing["answer"],
        rate_limit=int(limited["headers"]["x-ratelimit-limit"]) if limited else None,
        refuses_origins=origins,
        request_ids="gid" if not _is_uuid(post["answer"]["requestid"]) else "uuid",
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def profiles(recorded: Mapping[str, Any] | None) -> dict[str, Profile]:
    """``spec`` and one profile per provider in the recorded answers."""
    found = {"spec": Profile(name="spec")}
    for provider in (recorded or {}).get("providers", {}):
        found[provider] = _derive(recorded or {}, provider)
    return found


def peer_address(address: str) -> bool:
    """Whether Pinata took ``address`` as an origin: a public peer multiaddr of known protocols."""
    parts = address.split("/")
    names, at = [], 1
    while at < len(parts):  # protocol names; most take one value, these none
        names.append(parts[at])
        at += 1 if parts[at] in VALUELESS else 2
    if parts[0] or at != len(parts) or names[-1:] != ["p2p"] or not set(names) <= KNOWN_PROTOCOLS:
        return False
    if names[0] in ("ip4", "ip6"):
        try:
            return ipaddress.ip_address(parts[2]).is_global
        except ValueError:
            return False
    return names[0].startswith("dns") and parts[2] != "localhost"


@dataclasses.dataclass
class Pin:
    requestid: str
    created: datetime.datetime
    cid: str
    name: str | None
    origins: list[str]
    meta: dict[str, str]
    made: float
    """Monotonic time of the request; ``pinned`` ``settle`` seconds after it."""


class Provider:
    """The API as ``profile`` answers it, for one ``token``."""

    def __init__(
        self,
        profile: Profile,
        token: str,
        *,
        settle: float = 0.0,
        rate_limit: int | None = None,
        rate_window: float = RATE_WINDOW,
    ) -> None:
        self.profile, self.token, self.settle = profile, token, settle
        self.rate_limit = rate_limit if rate_limit is not None else profile.rate_limit
        self.rate_window = rate_window
        self.pins: dict[str, Pin] = {}
        self.log: list[dict[str, Any]] = []
        self.ids = itertools.count(1182535330)
        self.window: tuple[float, int] = (0.0, 0)
        """(Unix time the rate window resets, requests left in it)."""
        self.deletes_fail: int | None = None
        """The status every DELETE answers, when set through ``/_fake/deletes``."""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.logged])
        app.router.add_get("/_fake/health", self.health)
        app.router.add_get("/_fake/state", self.state)
        app.router.add_post("/_fake/deletes", self.set_deletes)
        app.router.add_get("/pins", self.list_pins)
        app.router.add_post("/pins", self.add)
        app.router.add_get("/pins/{requestid}", self.get)
        app.router.add_post("/pins/{requestid}", self.replace)
        app.router.add_delete("/pins/{requestid}", self.delete)
        return app

    @web.middleware
    async def logged(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if not request.path.startswith("/_fake/"):
            self.log.append(
                {"method": request.method, "path": request.path_qs, "status": response.status}
            )
        return response

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"profile": self.profile.name, "requests": len(self.log)})

    async def state(self, request: web.Request) -> web.Response:
        pins = [self.status_of(pin) for pin in self.pins.values()]
        return web.json_response({"pins": pins, "requests": self.log})

    async def set_deletes(self, request: web.Request) -> web.Response:
        self.deletes_fail = (await request.json()).get("fail")
        return web.json_response({})

    # -- answers ----------------------------------------------------------------------------------

    def refused(self, request: web.Request) -> web.Response | None:
        """The profile's answer to a missing or wrong token, else None."""
        header = request.headers.get("Authorization", "")
        if not header:
            status, body = self.profile.no_token
            return web.json_response(body, status=status)
        if header != f"Bearer {self.token}":
            status, body = self.profile.bad_token
            return web.json_response(body, status=status)
        return None

    def limited(self, headers: dict[str, str]) -> bool:
        """Count one ``GET /pins`` against the rate window; False once it is used up."""
        if self.rate_limit is None:
            return True
        now = time.time()
        reset, left = self.window
        if now >= reset:
            reset, left = float(math.ceil(now + self.rate_window)), self.rate_limit
        allowed = left > 0
        left = max(0, left - 1)
        self.window = (reset, left)
        headers["x-ratelimit-limit"] = str(self.rate_limit)
        headers["x-ratelimit-remaining"] = str(left)
        headers["x-ratelimit-reset"] = str(int(reset))
        return allowed

    def created_text(self, when: datetime.datetime) -> str:
        local = when.astimezone(datetime.timezone(self.profile.utc_offset))
        text = local.isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")

    def status_of(self, pin: Pin) -> dict[str, Any]:
        pinned = time.monotonic() - pin.made >= self.settle
        body: dict[str, Any] = {
            "requestid": pin.requestid,
            "status": "pinned" if pinned else "queued",
            "created": self.created_text(pin.created),
            "pin": {"cid": pin.cid, "origins": pin.origins, "meta": pin.meta},
            "delegates": [
                "/dns4/psafake.example/tcp/4001/p2p/12D3KooWT11NRAXRPpF5FBjohyAevyfhX3tvcp2ifXMTuCMy4oEy"
            ],
            "info": {},
        }
        if pin.name is not None:
            body["pin"]["name"] = pin.name
        return body

    def named(self, pin: Pin, name: str, strategy: str) -> bool:
        how = self.profile.match.get(strategy, "works")
        if how != "works":
            return how == "ignored"
        have = pin.name or ""
        if strategy.startswith("i"):
            have, name = have.lower(), name.lower()
        return have == name if strategy.endswith("exact") else name in have

    async def list_pins(self, request: web.Request) -> web.Response:
        if (refused := self.refused(request)) is not None:
            return refused
        headers: dict[str, str] = {}
        if not self.limited(headers):
            body = {"error": {"reason": "RATE_LIMIT", "details": "too many requests"}}
            return web.json_response(body, status=429, headers=headers)
        query = request.query
        statuses = set((query.get("status") or "pinned").split(","))
        cids = set(query["cid"].split(",")) if query.get("cid") else None
        before = _when(query.get("before"))
        after = _when(query.get("after"))
        matching = []
        for pin in self.pins.values():
            status = self.status_of(pin)
            if status["status"] not in statuses or (cids is not None and pin.cid not in cids):
                continue
            if "name" in query and not self.named(pin, query["name"], query.get("match", "exact")):
                continue
            if (before and pin.created >= before) or (after and pin.created <= after):
                continue
            matching.append((pin.created, status))
        matching.sort(key=lambda item: item[0], reverse=True)
        limit = int(query["limit"]) if query.get("limit") else self.profile.default_limit
        limit = min(limit or self.profile.max_limit, self.profile.max_limit)
        page = [status for _, status in matching][:limit]
        return web.json_response({"count": len(matching), "results": page}, headers=headers)

    async def add(self, request: web.Request) -> web.Response:
        if (refused := self.refused(request)) is not None:
            return refused
        body = await request.json()
        origins = [str(o) for o in body.get("origins") or ()]
        wrong = [o for o in origins if not peer_address(o)]
        if self.profile.refuses_origins is not None and wrong:
            answer = json.loads(json.dumps(self.profile.refuses_origins))
            answer["error"]["details"] = (
                f"provider array entry: {wrong[0]} is not a valid peer multiaddr"
            )
            return web.json_response(answer, status=400)
        pin = self.make(body, origins)
        return web.json_response(self.status_of(pin), status=self.profile.post_status)

    def make(self, body: Mapping[str, Any], origins: list[str]) -> Pin:
        now = datetime.datetime.now(datetime.UTC)
        if self.profile.resolution >= 1:
            now = now.replace(microsecond=0)
        else:
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self.profile.request_ids == "gid":
            gid = f"gid://filebase/Asset/{next(self.ids)}".encode()
            requestid = base64.urlsafe_b64encode(gid).decode().rstrip("=")
        else:
            requestid = str(uuid.uuid4())
        pin = Pin(
            requestid=requestid,
            created=now,
            cid=str(body["cid"]),
            name=body.get("name"),
            origins=origins,
            meta=dict(body.get("meta") or {}),
            made=time.monotonic(),
        )
        self.pins[requestid] = pin
        return pin

    async def get(self, request: web.Request) -> web.Response:
        if (refused := self.refused(request)) is not None:
            return refused
        pin = self.pins.get(request.match_info["requestid"])
        if pin is None:
            return web.json_response(self.profile.not_found, status=404)
        return web.json_response(self.status_of(pin))

    async def replace(self, request: web.Request) -> web.Response:
        if (refused := self.refused(request)) is not None:
            return refused
        if self.pins.pop(request.match_info["requestid"], None) is None:
            return web.json_response(self.profile.not_found, status=404)
        body = await request.json()
        pin = self.make(body, [str(o) for o in body.get("origins") or ()])
        return web.json_response(self.status_of(pin), status=self.profile.post_status)

    async def delete(self, request: web.Request) -> web.Response:
        if (refused := self.refused(request)) is not None:
            return refused
        if self.deletes_fail is not None:
            body = {"error": {"reason": "INTERNAL", "details": "deletes are failing (test)"}}
            return web.json_response(body, status=self.deletes_fail)
        if self.pins.pop(request.match_info["requestid"], None) is None:
            return web.json_response(self.profile.not_found, status=404)
        return web.Response(
            status=self.profile.delete_status,
            body=self.profile.delete_body.encode(),
            headers={"Content-Type": self.profile.delete_type},
        )


def _when(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    when = datetime.datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


class PsaFake(Server):
    """The stand-in in a subprocess on a free loopback port, answering as ``profile``."""

    def __init__(
        self,
        workdir: pathlib.Path,
        profile: str,
        *,
        recorded: pathlib.Path | None = None,
        settle: float = 0.0,
        rate_limit: int | None = None,
        rate_window: float = RATE_WINDOW,
    ) -> None:
        self.workdir, self.profile = workdir, profile
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(18)
        self.options = {
            "profile": profile,
            "recorded": str(recorded) if recorded else None,
            "settle": settle,
            "rate_limit": rate_limit,
            "rate_window": rate_window,
        }

    def start(self) -> PsaFake:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / f"psafake-{self.port}.json"
        config.touch(mode=0o600)
        config.write_text(json.dumps({"token": self.token, **self.options}))
        argv = [sys.executable, "-m", "pinsync.devenv.psafake", str(config), str(self.port)]
        self.process = Process(f"psafake-{self.profile}", argv, workdir=self.workdir).start()
        self.process.wait_until(http_ok(f"{self.url}/_fake/health"), timeout=30, what="HTTP")
        return self

    def state(self) -> dict[str, Any]:
        """``pins`` (as the API shows them) and ``requests`` (method, path, status) so far."""
        state: dict[str, Any] = httpx.get(f"{self.url}/_fake/state", timeout=10).json()
        return state

    def fail_deletes(self, status: int | None) -> None:
        """Make every ``DELETE`` answer ``status`` (None: delete again)."""
        httpx.post(
            f"{self.url}/_fake/deletes", json={"fail": status}, timeout=10
        ).raise_for_status()


def main() -> None:
    config = json.loads(pathlib.Path(sys.argv[1]).read_text())
    recorded = config.get("recorded")
    known = profiles(json.loads(pathlib.Path(recorded).read_text()) if recorded else None)
    provider = Provider(
        known[config["profile"]],
        config["token"],
        settle=float(config.get("settle") or 0.0),
        rate_limit=config.get("rate_limit"),
        rate_window=float(config.get("rate_window") or RATE_WINDOW),
    )
    asyncio.run(serve(provider.app(), int(sys.argv[2])))


if __name__ == "__main__":
    main()
