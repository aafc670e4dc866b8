"""UCAN invocations to a ucanto service, natively: what Storacha's upload API speaks.

An invocation is a UCAN 0.9.1 in its DAG-CBOR form (``@ipld/dag-ucan``): ``iss``/``aud`` as DID
bytes, ``att`` the one capability ``{can, with, nb}``, ``prf`` links to the delegations that
grant it, ``s`` the issuer's signature. The signature is not over the CBOR: it is over the JWT
form ``base64url(header).base64url(payload)``, the header and payload as DAG-JSON (keys sorted,
bytes as ``{"/": {"bytes": …}}``, links as ``{"/": cid}``), which the service rebuilds from the
CBOR to verify -- so both encodings here must be byte-exact. A request is a CAR whose root is
``{"ucanto/message@7.0.0": {"execute": [invocation links]}}`` and whose other blocks are the
invocations, their proofs and any attached blocks; the answer is a CAR whose root maps each
invocation's CID to its receipt (``{"ocm": {ran, out, fx, meta, iss, prf}, "sig"}``).

DAG-CBOR is encoded here, not by libipld: its encoder writes any byte string that parses as a
CID as a link, so a multihash (``space/blob/add``'s ``digest``) would go out as a CID. Decoding
is libipld's (links then come back as CID bytes, which the caller knows where to expect).

Nothing here knows Storacha's abilities; :mod:`pinsync.backends.storacha` uses it. Keys never
leave the :class:`Signer`, and nothing here logs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import libipld
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from multiformats import CID, multibase, varint

from pinsync import car

VERSION = "0.9.1"
DAG_CBOR = 0x71
SHA2_256 = 0x12
EDDSA = 0xD0ED
"""The varsig code of an ed25519 signature (``@ipld/dag-ucan/signature``)."""
ED25519_PUB = 0xED
DID_CORE = 0x0D1D
"""The multicodec of a DID that is not a did:key, in DID bytes: ``varint(0x0d1d) + "web:…"``."""
MESSAGE = "ucanto/message@7.0.0"
CAR_TYPE = "application/vnd.ipld.car"
LIFETIME = 900
"""Seconds an invocation is valid for: long enough for a slow clock, short for a replay."""


@dataclasses.dataclass(frozen=True)
class Link:
    """A CID, as a link inside DAG-CBOR (tag 42) and DAG-JSON (``{"/": cid}``)."""

    cid: bytes
    """The binary CID."""

    @classmethod
    def parse(cls, text: str) -> Link:
        return cls(bytes(CID.decode(text)))

    @classmethod
    def of(cls, data: bytes, codec: int = DAG_CBOR) -> Link:
        """The CIDv1 of ``data`` under ``codec``, sha256."""
        digest = hashlib.sha256(data).digest()
        return cls(varint.encode(1) + varint.encode(codec) + bytes([SHA2_256, 32]) + digest)

    def __str__(self) -> str:
        """base32, as JavaScript's ``CID.toString()`` (a report's keys, a payload's ``prf``)."""
        return str(CID.decode(self.cid).encode("base32"))


@dataclasses.dataclass(frozen=True)
class Block:
    link: Link
    data: bytes


def block(value: Any) -> Block:
    data = encode(value)
    return Block(Link.of(data), data)


# -- DAG-CBOR and DAG-JSON ------------------------------------------------------------------------


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, n)
    raise ValueError("integer out of range for CBOR")


def encode(value: Any) -> bytes:
    """DAG-CBOR: shortest integer heads, map keys sorted by length then bytes, links tag 42."""
    if value is None:
        return b"\xf6"
    if value is True or value is False:
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, str):
        raw = value.encode()
        return _head(3, len(raw)) + raw
    if isinstance(value, bytes | bytearray):
        return _head(2, len(value)) + bytes(value)
    if isinstance(value, Link):
        return b"\xd8\x2a" + _head(2, len(value.cid) + 1) + b"\x00" + value.cid
    if isinstance(value, list | tuple):
        return _head(4, len(value)) + b"".join(encode(item) for item in value)
    if isinstance(value, Mapping):
        items = sorted((encode(str(k)), v) for k, v in value.items())
        items.sort(key=lambda item: (len(item[0]), item[0]))
        return _head(5, len(items)) + b"".join(k + encode(v) for k, v in items)
    raise TypeError(f"cannot encode {type(value).__name__} as DAG-CBOR")


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"/": {"bytes": base64.b64encode(bytes(value)).decode().rstrip("=")}}
    if isinstance(value, Link):
        return {"/": str(value)}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, float):
        raise TypeError("floats are not used in invocations")
    return value


def dag_json(value: Any) -> bytes:
    """DAG-JSON as ``@ipld/dag-json`` writes it: compact, keys sorted by their bytes."""
    # sort_keys orders by code point: the UTF-8 byte order dag-json wants.
    text = json.dumps(_json_value(value), separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.encode()


# -- principals -----------------------------------------------------------------------------------


def did_bytes(did: str) -> bytes:
    """A DID as a UCAN's ``iss``/``aud`` hold it (``@ipld/dag-ucan/did``)."""
    if did.startswith("did:key:"):
        return bytes(multibase.decode(did[len("did:key:") :]))
    if not did.startswith("did:"):
        raise ValueError("not a DID")
    return varint.encode(DID_CORE) + did[len("did:") :].encode()


class Signer:
    """An ed25519 key that signs invocations and receipts; ``did`` is its did:key."""

    def __init__(self, seed: bytes) -> None:
        self._key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        public = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.did = "did:key:" + multibase.encode(varint.encode(ED25519_PUB) + public, "base58btc")

    def __repr__(self) -> str:
        return f"Signer({self.did})"  # never the key

    def sign(self, data: bytes) -> bytes:
        """A varsig: ``varint(EdDSA) varint(64) signature``."""
        raw = self._key.sign(data)
        return varint.encode(EDDSA) + varint.encode(len(raw)) + raw


# -- invocations and receipts ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Invocation:
    """An invocation's root block and every block that travels with it (proofs, attachments)."""

    root: Block
    blocks: tuple[Block, ...] = ()


def invocation(
    issuer: Signer,
    audience: str,
    can: str,
    resource: str,
    nb: Mapping[str, Any],
    *,
    proofs: Sequence[Block] = (),
    attached: Sequence[Block] = (),
    expires: int | None = -1,
) -> Invocation:
    """``can`` on ``resource`` with arguments ``nb``, by ``issuer`` for ``audience``; proven by
    the delegation ``proofs[0]`` (the other proof blocks are its own proofs). ``expires``: a
    Unix time, None for never, -1 (default) for :data:`LIFETIME` from now. A random nonce makes
    every invocation new: the service answers a repeated one from its store of receipts."""
    exp = int(time.time()) + LIFETIME if expires == -1 else expires
    capability = {"can": can, "with": resource, "nb": dict(nb)}
    prf = [proofs[0].link] if proofs else []
    nonce = os.urandom(12).hex()
    # No facts: dag-ucan leaves an empty fct out of both forms.
    payload = {
        "iss": issuer.did,
        "aud": audience,
        "att": [capability],
        "exp": exp,
        "prf": [str(link) for link in prf],
        "nnc": nonce,
    }
    header = {"alg": "EdDSA", "ucv": VERSION, "typ": "JWT"}
    signed = b".".join(_b64url(dag_json(part)) for part in (header, payload))
    model: dict[str, Any] = {
        "v": VERSION,
        "iss": did_bytes(issuer.did),
        "aud": did_bytes(audience),
        "att": [capability],
        "exp": exp,
        "prf": prf,
        "nnc": nonce,
        "s": issuer.sign(signed),
    }
    return Invocation(block(model), (*proofs, *attached))


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def receipt(issuer: Signer, ran: Link, out: Mapping[str, Any]) -> Block:
    """A receipt for the task ``ran``, issued by ``issuer`` (``@ucanto/core`` ``Receipt.issue``:
    the signature is over the DAG-CBOR of the outcome)."""
    outcome = {
        "ran": ran,
        "out": dict(out),
        "fx": {"fork": []},
        "meta": {},
        "iss": issuer.did,
        "prf": [],
    }
    return block({"ocm": outcome, "sig": issuer.sign(encode(outcome))})


# -- CAR ------------------------------------------------------------------------------------------


def write_car(roots: Sequence[Link], blocks: Iterable[Block]) -> bytes:
    header = encode({"roots": list(roots), "version": 1})
    parts = [varint.encode(len(header)), header]
    seen: set[bytes] = set()
    for each in blocks:
        if each.link.cid in seen:
            continue
        seen.add(each.link.cid)
        parts += [varint.encode(len(each.link.cid) + len(each.data)), each.link.cid, each.data]
    return b"".join(parts)


def read_car(data: bytes) -> tuple[list[bytes], dict[bytes, bytes]]:
    """Roots (binary CIDs) and blocks (binary CID -> bytes) of a small in-memory CAR."""
    length, prefix, _ = varint.decode_raw(data)
    header = libipld.decode_dag_cbor(data[prefix : prefix + length])
    roots = [bytes(root) for root in header.get("roots") or ()]
    blocks: dict[bytes, bytes] = {}
    pos = prefix + length
    while pos < len(data):
        length, prefix, _ = varint.decode_raw(data[pos : pos + 10])
        frame = data[pos + prefix : pos + prefix + length]
        cid_len = car.split_block(frame)[0]
        blocks[bytes(frame[:cid_len])] = bytes(frame[cid_len:])
        pos += prefix + length
    return roots, blocks


def delegation(archive: bytes) -> list[Block]:
    """The blocks of a delegation archive (``Delegation.archive()``: a CAR whose root is
    ``{"ucan@0.9.1": <delegation>}``), the delegation first, its own proofs after."""
    roots, blocks = read_car(archive)
    variant = libipld.decode_dag_cbor(blocks[roots[0]])
    root = bytes(next(iter(variant.values())))
    rest = [Block(Link(cid), data) for cid, data in blocks.items() if cid not in (root, roots[0])]
    return [Block(Link(root), blocks[root]), *rest]


# -- the answer -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Receipt:
    """A receipt out of an answer, with every block the answer carried (its effects' tasks and
    the receipts they embed)."""

    link: Link
    ran: bytes
    out: Mapping[str, Any]
    fork: tuple[bytes, ...]
    blocks: Mapping[bytes, bytes]

    @classmethod
    def read(cls, link: bytes, blocks: Mapping[bytes, bytes]) -> Receipt:
        outcome = libipld.decode_dag_cbor(blocks[link])["ocm"]
        fx = outcome.get("fx") or {}
        out = outcome.get("out")
        if not isinstance(out, Mapping):
            raise ValueError("a receipt without out")
        ran = outcome.get("ran")
        return cls(
            link=Link(link),
            ran=bytes(ran) if isinstance(ran, bytes) else b"",
            out=out,
            fork=tuple(bytes(task) for task in fx.get("fork") or ()),
            blocks=blocks,
        )

    def tasks(self) -> Iterator[tuple[bytes, Mapping[str, Any]]]:
        """The forked tasks the answer carried: (their CID, their capability)."""
        for task in self.fork:
            data = self.blocks.get(task)
            if data is None:
                continue
            ucan = libipld.decode_dag_cbor(data)
            capabilities = ucan.get("att") or [{}]
            yield task, {**capabilities[0], "fct": ucan.get("fct") or []}

    def embedded(self, ran: bytes) -> Receipt | None:
        """The receipt for task ``ran`` that a ``ucan/conclude`` effect carries, if any."""
        for _, capability in self.tasks():
            if capability.get("can") != "ucan/conclude":
                continue
            link = (capability.get("nb") or {}).get("receipt")
            if isinstance(link, bytes) and link in self.blocks:
                found = Receipt.read(link, self.blocks)
                if found.ran == ran:
                    return found
        return None


def message(invocations: Sequence[Invocation]) -> bytes:
    """The request body executing ``invocations``."""
    root = block({MESSAGE: {"execute": [each.root.link for each in invocations]}})
    blocks = [root]
    for each in invocations:
        blocks += [each.root, *each.blocks]
    return write_car([root.link], blocks)


def receipts(answer: bytes, invocations: Sequence[Invocation]) -> list[Receipt]:
    """Each invocation's receipt out of an answer; ValueError/LookupError when there is none."""
    roots, blocks = read_car(answer)
    report = libipld.decode_dag_cbor(blocks[roots[0]])[MESSAGE]["report"]
    return [Receipt.read(bytes(report[str(each.root.link)]), blocks) for each in invocations]
