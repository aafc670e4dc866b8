"""CARv1 bytes as ``ipfs dag export`` writes them, for tests and benches: length-prefixed
sections, the DAG-CBOR header, raw blocks and their CIDs (binary CIDs: a bench makes 100,000s
of them, and building ``multiformats.CID`` objects costs tens of microseconds each)."""

from __future__ import annotations

import base64
import hashlib

from multiformats import varint

RAW_SHA256 = bytes([0x01, 0x55, 0x12, 0x20])
"""The binary prefix of a CIDv1, raw codec, sha2-256 multihash of 32 bytes."""


def raw_cid(data: bytes) -> bytes:
    return RAW_SHA256 + hashlib.sha256(data).digest()


def cid_text(binary: bytes) -> str:
    """The CIDv1 in base32, as Kubo prints it (and pinsync's identity, ``cids.key``)."""
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


def section(payload: bytes) -> bytes:
    return bytes(varint.encode(len(payload))) + payload


def block(cid: bytes, data: bytes) -> bytes:
    return section(cid + data)


def cbor_head(major: int, value: int) -> bytes:
    """A CBOR item head, minimally encoded (as DAG-CBOR wants)."""
    if value < 24:
        return bytes([major << 5 | value])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | extra]) + value.to_bytes(size, "big")
    raise ValueError(value)


def header(*roots: bytes, version: int = 1) -> bytes:
    """The section of the DAG-CBOR map ``{"roots": [...], "version": version}`` (keys in
    canonical order; each root as tag 42 over its binary CID with the multibase 0x00 prefix)."""
    out = b"\xa2\x65roots" + cbor_head(4, len(roots))
    for root in roots:
        out += b"\xd8\x2a" + cbor_head(2, len(root) + 1) + b"\x00" + root
    return section(out + b"\x67version" + cbor_head(0, version))
