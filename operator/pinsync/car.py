"""A streaming CARv1 checker for ``dag/export`` output.

Kubo reports an error that happens after the first byte of a CAR export only in the HTTP trailer
``X-Stream-Error``; aiohttp (like httpx) does not expose trailers, so the body just ends early and,
on its own, looks like a complete download. Worse, Kubo stops *between* blocks, so the truncated CAR
is still well framed (observed with Kubo 0.39: a block deep in the DAG missing locally gives ``200
OK`` and a CAR with every block but the missing ones). Therefore the checker verifies three things
while the bytes pass through: the framing is complete, every block hashes to its CID, and, given
``expected_blocks`` (from ``dag/stat``), the number of blocks is right. Only the last one catches
Kubo's own mid-stream failures; the first two catch corruption and cut connections.

CARv1 layout: ``varint(len) header`` then ``varint(len) CID data`` per block, where the header
is the dag-cbor map ``{"roots": [CID...], "version": 1}``. The small CBOR subset needed for the
header is decoded here rather than pulling in a CBOR library.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from multiformats import CID, multihash

from pinsync import cids

MAX_FRAME = 8 << 20
"""Largest header or block section accepted (go-car's default limit). Kubo blocks are ≤ 2 MiB."""

_SHA2_256 = 0x12


class CarError(ValueError):
    """The stream is not a complete, intact CARv1 (with the expected root and block count)."""


def _varint(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int] | None:
    """``(value, position after it)`` of the unsigned varint at ``pos``, None if incomplete."""
    value = shift = 0
    for i in range(pos, min(len(buf), pos + 9)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    if len(buf) - pos >= 9:
        raise CarError("varint longer than 9 bytes")
    return None


def _show(cid: CID) -> str:
    """CIDv0 as ``Qm…``, CIDv1 as base32 ``b…`` (what Kubo prints), not multiformats' base58."""
    return str(cid) if cid.version == 0 else str(cid.encode("base32"))


class _Cbor:
    """Decoder for the dag-cbor subset a CAR header uses: uint, bytes, text, array, map, tag 42."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CarError("CAR header: CBOR item runs past the header")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def _head(self) -> tuple[int, int]:
        initial = self._take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info
        if info in (24, 25, 26, 27):
            return major, int.from_bytes(self._take(1 << (info - 24)), "big")
        raise CarError(f"CAR header: unsupported CBOR additional info {info} (major type {major})")

    def item(self, depth: int = 0) -> Any:
        if depth > 8:
            raise CarError("CAR header: CBOR nested too deeply")
        major, arg = self._head()
        if major == 0:
            return arg
        if major == 2:
            return self._take(arg)
        if major == 3:
            try:
                return self._take(arg).decode()
            except UnicodeDecodeError:
                raise CarError("CAR header: invalid UTF-8 in a CBOR text string") from None
        if major == 4:
            return [self.item(depth + 1) for _ in range(arg)]
        if major == 5:
            result: dict[Any, Any] = {}
            for _ in range(arg):
                key = self.item(depth + 1)
                if not isinstance(key, str):
                    raise CarError("CAR header: CBOR map key is not a text string")
                result[key] = self.item(depth + 1)
            return result
        if major == 6 and arg == 42:
            raw = self.item(depth + 1)
            if not isinstance(raw, bytes) or raw[:1] != b"\x00":
                raise CarError("CAR header: CID tag 42 does not hold 0x00-prefixed bytes")
            try:
                return Root(cids.key_of_binary(raw[1:]))
            except (ValueError, KeyError) as exc:
                raise CarError(f"CAR header: invalid CID: {exc}") from None
        raise CarError(f"CAR header: unsupported CBOR major type {major}")


class Root(str):
    """A root CID of a CAR header, as its identity (:func:`pinsync.cids.key`, CIDv1)."""


def decode_header(data: bytes) -> list[Root]:
    """The roots of a CARv1 header section (without its length prefix)."""
    decoder = _Cbor(data)
    header = decoder.item()
    if decoder.pos != len(data):
        raise CarError("CAR header: trailing bytes after the CBOR map")
    if not isinstance(header, dict):
        raise CarError("CAR header is not a CBOR map")
    if header.get("version") != 1:
        raise CarError(f"CAR header: version {header.get('version')!r}, expected 1")
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, Root) for r in roots):
        raise CarError("CAR header: roots is not a list of CIDs")
    return roots


def split_block(frame: bytes | memoryview) -> tuple[int, int, bytes, int]:
    """``(CID length, multihash code, digest, digest length)`` of a block section's CID."""
    if len(frame) >= 34 and frame[0] == _SHA2_256 and frame[1] == 32:  # CIDv0: bare multihash
        return 34, _SHA2_256, bytes(frame[2:34]), 32
    pos = 0
    fields = []
    for _ in range(4):  # version, codec, multihash code, digest length
        decoded = _varint(frame, pos)
        if decoded is None:
            raise CarError("block section too short for its CID")
        value, pos = decoded
        fields.append(value)
    version, _codec, code, length = fields
    if version != 1:
        raise CarError(f"block CID has version {version}")
    if pos + length > len(frame):
        raise CarError("block section too short for its CID")
    return pos + length, code, bytes(frame[pos : pos + length]), length


def verify_block(frame: bytes | memoryview) -> int:
    """Raise CarError unless the block's data hashes to its CID's multihash; return its length."""
    cid_len, code, digest, length = split_block(frame)
    # Released explicitly: multiformats' hashing can leave this frame alive in a reference cycle,
    # and a view still exported would stop CarChecker from shrinking its buffer.
    with memoryview(frame)[cid_len:] as data:
        size = len(data)
        if code == _SHA2_256 and length == 32:
            actual = hashlib.sha256(data).digest()
        else:
            try:
                actual = bytes(multihash.unwrap(multihash.digest(bytes(data), code, size=length)))
            except (KeyError, ValueError, ImportError) as exc:
                raise CarError(
                    f"cannot verify a block hashed with multihash 0x{code:x}: {exc}"
                ) from None
    if actual != digest:
        raise CarError(f"block {_show(CID.decode(bytes(frame[:cid_len])))} does not match its hash")
    return size


class CarChecker:
    """Wraps an async byte stream, passes bytes through unchanged, and parses CARv1 framing as
    they go: header (varint length + dag-cbor map with version 1 and roots), then blocks (varint
    length, CID, data). For each block verifies that the data hashes to the CID's multihash.

    A bad header, wrong root or corrupt block raises CarError as soon as it is complete, before
    the chunk that completes it is yielded; an incomplete last frame and a wrong block count raise
    at the end. At most one section (plus the current chunk) is held in memory.

    After iteration: ``blocks`` (block sections seen), ``size`` (bytes passed through, i.e. the
    CAR's length), ``block_bytes`` (sum of block data lengths, comparable to ``dag/stat``'s
    TotalSize) and ``roots``.
    """

    def __init__(
        self,
        stream: AsyncIterator[bytes],
        *,
        root: str | None = None,
        expected_blocks: int | None = None,
    ) -> None:
        self._stream = stream
        self._root = cids.key(root) if root is not None else None
        if root is not None and self._root is None:
            raise CarError(f"invalid root CID {root!r}")
        self._expected_blocks = expected_blocks
        self._buf = bytearray()
        self._section: int | None = None  # length of the section being read, once known
        self.roots: list[Root] | None = None
        self.blocks = 0
        self.size = 0
        self.block_bytes = 0

    async def __aiter__(self) -> AsyncGenerator[bytes]:
        try:
            async for chunk in self._stream:
                self.size += len(chunk)
                self._feed(chunk)
                yield chunk
        finally:
            # On a CarError or an early stop, free the source (e.g. Kubo's connection) now.
            aclose = getattr(self._stream, "aclose", None)
            if aclose is not None:
                await aclose()
        self._finish()

    def _feed(self, chunk: bytes) -> None:
        buf = self._buf
        buf += chunk
        while True:
            if self._section is None:
                decoded = _varint(buf)
                if decoded is None:
                    return
                length, start = decoded
                if length == 0:
                    raise CarError(f"zero-length section after {self.blocks} blocks")
                if length > MAX_FRAME:
                    raise CarError(f"section of {length} bytes exceeds the {MAX_FRAME} limit")
                del buf[:start]
                self._section = length
            if len(buf) < self._section:
                return
            with memoryview(buf) as view, view[: self._section] as section:
                self._section_done(section)
            del buf[: self._section]
            self._section = None

    def _section_done(self, section: memoryview) -> None:
        if self.roots is None:
            self.roots = decode_header(bytes(section))
            # Compared by identity: a CIDv0 ``Qm…`` and its CIDv1 form name the same DAG.
            if self._root is not None and self._root not in self.roots:
                shown = ", ".join(self.roots) or "none"
                raise CarError(f"CAR roots ({shown}) do not include {self._root}")
            return
        self.block_bytes += verify_block(section)
        self.blocks += 1

    def _finish(self) -> None:
        if self.roots is None:
            raise CarError(f"stream ended after {self.size} bytes, before the CAR header")
        if self._section is not None or self._buf:
            raise CarError(
                f"stream ended mid-section after {self.blocks} complete blocks ({self.size} bytes)"
            )
        if self._expected_blocks is not None and self.blocks != self._expected_blocks:
            raise CarError(f"CAR has {self.blocks} blocks, expected {self._expected_blocks}")
