"""Pins on object-like storage: the CAR + sidecar layout, written once for every such backend.

Layout under the backend's prefix (or base path)::

    <prefix>/<cid>.car    the pin's DAG as a CARv1 stream, exactly as ``ipfs dag export`` wrote it
    <prefix>/<cid>.json   sidecar: {"cid", "size", "sha256", "pinsets", "createdAt"}

A pin is *present* only when both exist. The CAR is written first and the sidecar last, so a
crash in between leaves a CAR without a sidecar: listed as missing, uploaded again, overwritten.
Backends make each object write atomic themselves (S3 by the nature of PutObject/multipart
completion, file servers by a temporary name and a rename), so no reader ever sees a partial
object under a final name.

A concrete backend implements the object primitives below (in the style of Velero's ObjectStore)
as plain calls of its library, raising whatever that raises; the public primitives here wrap each
one once in the backend's ``translate`` hook, pass a failing content stream's own error through
untouched, and derive the pin-level protocol of :class:`~pinsync.backends.base.Backend` and the
write-probe health check from them.
"""

from __future__ import annotations

import abc
import contextlib
import datetime
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from pinsync import reasons
from pinsync.backends import base, errors, layout


class ObjectStoreBackend(base.Backend):
    """A backend that stores named byte objects under one location."""

    # -- primitives: one sentence each; raise the library's own exceptions ---------------------

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the objects are, for messages (``s3://bucket/prefix``; never credentials)."""

    @abc.abstractmethod
    async def _reach(self) -> None:
        """Connect and log in, and check the location exists (health's first step)."""

    @abc.abstractmethod
    async def _put_object(self, key: str, content: AsyncIterator[bytes]) -> int | None:
        """Write an object from a stream, atomically (whole under ``key``, or not at all);
        return its stored size if the server's answer proves it (None: the caller stats it)."""

    @abc.abstractmethod
    def _get_object(self, key: str) -> AsyncIterator[bytes]:
        """Stream an object's bytes; raise PinNotFound if it does not exist."""

    @abc.abstractmethod
    def _list_objects(self) -> AsyncIterator[tuple[str, int]]:
        """(key relative to the location, size) of every complete object under the location."""

    @abc.abstractmethod
    async def _stat_object(self, key: str) -> int | None:
        """Size of an object, or None if it does not exist."""

    @abc.abstractmethod
    async def _delete_object(self, key: str) -> None:
        """Delete an object; an absent object is not an error."""

    async def _tidy(self) -> None:
        """After a passing health check: remove what interrupted uploads left (best effort)."""

    # -- the primitives, translated -----------------------------------------------------------

    def where(self, key: str) -> str:
        return f"{self.location.rstrip('/')}/{key}"

    async def put_object(self, key: str, content: AsyncIterator[bytes]) -> int | None:
        source = base.Source(content)
        with self.translating(f"upload {self.where(key)}", writing=True, source=source):
            return await self._put_object(key, aiter(source))

    async def get_object(self, key: str) -> AsyncIterator[bytes]:
        chunks = self._get_object(key)
        try:
            with self.translating(f"read {self.where(key)}"):
                async for chunk in chunks:
                    yield chunk
        finally:
            await _close(chunks)  # now, not when collected: it may hold a file or connection

    async def list_objects(self) -> AsyncIterator[tuple[str, int]]:
        entries = self._list_objects()
        try:
            with self.translating(f"list {self.location}"):
                async for entry in entries:
                    yield entry
        finally:
            await _close(entries)

    async def stat_object(self, key: str) -> int | None:
        with self.translating(f"stat {self.where(key)}"):
            return await self._stat_object(key)

    async def delete_object(self, key: str) -> None:
        with self.translating(f"delete {self.where(key)}"):
            await self._delete_object(key)

    async def health(self) -> None:
        """Reachable with these credentials, the location there, and writable: a probe object
        is written and deleted through the primitives pins use."""
        with self.translating(self.location):
            await self._reach()
        probe = f"{layout.PROBE}-{secrets.token_hex(4)}"
        try:
            with self.translating(f"write probe in {self.location}", writing=True):
                await self._put_object(probe, _once(b"ok"))
                await self._delete_object(probe)
        except Exception:
            with contextlib.suppress(Exception):
                await self._delete_object(probe)
            raise
        await self._tidy()

    # -- the pin layer, derived ---------------------------------------------------------------

    async def read_object(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.get_object(key)])

    async def usage(self) -> base.Usage:
        total = count = 0
        async for _, size in self.list_objects():
            total += size
            count += 1
        return base.Usage(bytes=total, objects=count)

    async def list_pins(self) -> AsyncIterator[base.PinInfo]:
        # A pin is yielded as soon as both its objects were seen, and forgotten: stores that
        # list in key order (S3) put ``<cid>.car`` right before ``<cid>.json``, so only one
        # half-seen pin is held at a time, not a million-entry dict of the whole listing.
        cars: dict[str, int] = {}
        sidecars: set[str] = set()
        async for key, size in self.list_objects():
            if "/" in key:
                continue
            if key.endswith(layout.CAR):
                cid = key[: -len(layout.CAR)]
                if cid in sidecars:
                    sidecars.discard(cid)
                    yield base.PinInfo(cid=cid, size=size)
                else:
                    cars[cid] = size
            elif key.endswith(layout.SIDECAR):
                cid = key[: -len(layout.SIDECAR)]
                if cid in cars:
                    yield base.PinInfo(cid=cid, size=cars.pop(cid))
                else:
                    sidecars.add(cid)

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
        hashed = base.Hashing(content)
        stored = await self.put_object(layout.car(meta.cid), aiter(hashed))
        if stored is None:
            # Read back what landed before the sidecar makes the pin present: one stat here
            # instead of a stat and a sidecar read in a separate verify_pin after the upload.
            stored = await self.stat_object(layout.car(meta.cid))
        if stored != hashed.size:
            raise errors.BackendError(
                f"{meta.cid}: stored {stored} bytes, sent {hashed.size}",
                reason=reasons.VERIFY_FAILED,
            )
        sha256 = hashed.sha256
        sidecar = {
            "cid": meta.cid,
            "size": hashed.size,
            "sha256": sha256,
            "pinsets": list(meta.pinsets),
            "createdAt": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        await self.put_object(layout.sidecar(meta.cid), _once(json.dumps(sidecar).encode()))
        return base.PinInfo(cid=meta.cid, size=stored, sha256=sha256, verified=True)

    async def read_sidecar(self, cid: str) -> dict[str, Any]:
        try:
            sidecar: dict[str, Any] = json.loads(await self.read_object(layout.sidecar(cid)))
        except ValueError as exc:
            raise errors.Damaged(f"{cid}: sidecar is not valid JSON") from exc
        return sidecar

    async def verify_pin(
        self, cid: str, *, deep: bool = False, listed: base.PinInfo | None = None
    ) -> base.PinInfo:
        # The listing's size is as good as a stat of the same pass: a full sync of 20,000 pins
        # then reads 20,000 sidecars, not 20,000 sidecars and 20,000 stats.
        use_listed = listed is not None and listed.size is not None and not deep
        size = listed.size if use_listed and listed else await self.stat_object(layout.car(cid))
        if size is None:
            raise errors.PinNotFound(f"{cid}: no CAR object")
        sidecar = await self.read_sidecar(cid)
        if sidecar.get("size") != size:
            raise errors.Damaged(f"{cid}: CAR is {size} bytes, sidecar says {sidecar.get('size')}")
        if deep:
            await base.reread(cid, self.get_object(layout.car(cid)), sha256=sidecar.get("sha256"))
        return base.PinInfo(cid=cid, size=size, sha256=sidecar.get("sha256"))

    async def remove_pin(self, cid: str) -> None:
        # Sidecar first: a pin without a sidecar is already "absent" if we are interrupted.
        await self.delete_object(layout.sidecar(cid))
        await self.delete_object(layout.car(cid))

    def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        return self.get_object(layout.car(cid))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _close(stream: AsyncIterator[Any]) -> None:
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()
