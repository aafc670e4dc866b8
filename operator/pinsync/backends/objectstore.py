"""Pins on object-like storage: the CAR + sidecar layout, written once for every such backend.

Layout under the backend's prefix (or base path)::

    <prefix>/<cid>.car    the pin's DAG as a CARv1 stream, exactly as ``ipfs dag export`` wrote it
    <prefix>/<cid>.json   sidecar: {"cid", "size", "sha256", "pinsets", "createdAt"}

A pin is *present* only when both exist. The CAR is written first and the sidecar last, so a
crash in between leaves a CAR without a sidecar: listed as missing, uploaded again, overwritten.
Backends make each object write atomic themselves (S3 by the nature of PutObject/multipart
completion, file servers by a temporary name and a rename), so no reader ever sees a partial
object under a final name.

A concrete backend implements the object primitives below (in the style of Velero's ObjectStore);
the pin-level protocol of :class:`~pinsync.backends.base.Backend` is derived from them here.
"""

from __future__ import annotations

import abc
import datetime
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from pinsync.backends import base, errors

CAR = ".car"
SIDECAR = ".json"


class Hashing:
    """Wraps a byte stream, counting and hashing what passes through."""

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self.stream = stream
        self.size = 0
        self.digest = hashlib.sha256()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            self.size += len(chunk)
            self.digest.update(chunk)
            yield chunk


class Source:
    """A content stream that remembers whether an exception came from it.

    ``put_object`` implementations translate their server's errors into the backend vocabulary
    but must pass the stream's own errors (a truncated CAR, Kubo going away) through untouched:
    the sync engine interprets those. Iterating through this tells the two apart.
    """

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        self._content = aiter(content)
        self.failed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await anext(self._content)
            except StopAsyncIteration:
                return
            except BaseException:
                self.failed = True
                raise
            yield chunk


class ObjectStoreBackend(base.Backend):
    """A backend that stores named byte objects under one location."""

    # -- primitives: one sentence each --------------------------------------------------------

    @abc.abstractmethod
    async def put_object(self, key: str, content: AsyncIterator[bytes]) -> None:
        """Write an object from a stream, atomically (whole under ``key``, or not at all)."""

    @abc.abstractmethod
    def get_object(self, key: str) -> AsyncIterator[bytes]:
        """Stream an object's bytes; raise PinNotFound if it does not exist."""

    @abc.abstractmethod
    def list_objects(self) -> AsyncIterator[tuple[str, int]]:
        """(key relative to the location, size) of every complete object under the location."""

    @abc.abstractmethod
    async def stat_object(self, key: str) -> int | None:
        """Size of an object, or None if it does not exist."""

    @abc.abstractmethod
    async def delete_object(self, key: str) -> None:
        """Delete an object; an absent object is not an error."""

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
        cars: dict[str, int] = {}
        sidecars: set[str] = set()
        async for key, size in self.list_objects():
            if "/" in key:
                continue
            if key.endswith(CAR):
                cars[key[: -len(CAR)]] = size
            elif key.endswith(SIDECAR):
                sidecars.add(key[: -len(SIDECAR)])
        for cid in sorted(cars.keys() & sidecars):
            yield base.PinInfo(cid=cid, size=cars[cid])

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
        hashed = Hashing(content)
        await self.put_object(meta.cid + CAR, aiter(hashed))
        sha256 = hashed.digest.hexdigest()
        sidecar = {
            "cid": meta.cid,
            "size": hashed.size,
            "sha256": sha256,
            "pinsets": list(meta.pinsets),
            "createdAt": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        await self.put_object(meta.cid + SIDECAR, _once(json.dumps(sidecar).encode()))
        return base.PinInfo(cid=meta.cid, size=hashed.size, sha256=sha256)

    async def read_sidecar(self, cid: str) -> dict[str, Any]:
        try:
            sidecar: dict[str, Any] = json.loads(await self.read_object(cid + SIDECAR))
        except ValueError as exc:
            raise errors.Damaged(f"{cid}: sidecar is not valid JSON") from exc
        return sidecar

    async def verify_pin(self, cid: str, *, deep: bool = False) -> base.PinInfo:
        size = await self.stat_object(cid + CAR)
        if size is None:
            raise errors.PinNotFound(f"{cid}: no CAR object")
        sidecar = await self.read_sidecar(cid)
        if sidecar.get("size") != size:
            raise errors.Damaged(f"{cid}: CAR is {size} bytes, sidecar says {sidecar.get('size')}")
        if deep:
            digest = hashlib.sha256()
            async for chunk in self.get_object(cid + CAR):
                digest.update(chunk)
            if digest.hexdigest() != sidecar.get("sha256"):
                raise errors.Damaged(f"{cid}: CAR content does not match the sidecar's sha256")
        return base.PinInfo(cid=cid, size=size, sha256=sidecar.get("sha256"))

    async def remove_pin(self, cid: str) -> None:
        # Sidecar first: a pin without a sidecar is already "absent" if we are interrupted.
        await self.delete_object(cid + SIDECAR)
        await self.delete_object(cid + CAR)

    def fetch_pin(self, cid: str) -> AsyncIterator[bytes]:
        return self.get_object(cid + CAR)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
