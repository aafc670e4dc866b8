"""The native UCAN encodings, byte for byte where the service rebuilds them. That the service
accepts what they make is tested against upload-api itself (``tests/backends/test_storacha.py``
and the contract suite: every storacha put is a run of invocations)."""

from __future__ import annotations

import base64
import json

import libipld
from cryptography.hazmat.primitives.asymmetric import ed25519
from multiformats import multibase, varint

from pinsync.backends import ucan

MULTIHASH = bytes([0x12, 32]) + bytes(range(32))


def test_dag_cbor_is_canonical_and_a_multihash_stays_bytes() -> None:
    link = ucan.Link.of(b"x")
    encoded = ucan.encode({"bb": [MULTIHASH, None, True, -5, 300], "a": link, "ccc": "é"})
    # Keys by length, then bytes; the shortest integer heads; a link is tag 42 over 0x00 + CID.
    assert encoded.startswith(bytes([0xA3, 0x61]) + b"a" + b"\xd8\x2a\x58\x25\x00" + link.cid)
    assert encoded.index(b"bb") < encoded.index(b"ccc")
    assert bytes([0x39, 0x01, 0x2B]) not in encoded and bytes([0x19, 0x01, 0x2C]) in encoded
    decoded = libipld.decode_dag_cbor(encoded)
    assert decoded["bb"] == [MULTIHASH, None, True, -5, 300] and decoded["ccc"] == "é"
    assert b"\xd8\x2a\x58\x22\x00" + MULTIHASH not in encoded  # bytes, not a CIDv0 link


def test_dag_json_sorts_keys_by_bytes_and_writes_bytes_and_links_as_ipld_does() -> None:
    link = ucan.Link.of(b"x")
    written = ucan.dag_json({"bb": b"\x01\x02\xff", "a": link, "aa": None})
    assert written == (
        b'{"a":{"/":"' + str(link).encode() + b'"},"aa":null,"bb":{"/":{"bytes":"AQL/"}}}'
    )
    assert str(link).startswith("bafyrei")  # base32, as CID.toString() in JavaScript


def test_an_invocation_is_signed_over_its_jwt_form_rebuilt_from_its_cbor() -> None:
    """What ucanto's validator does: decode the CBOR, rebuild header.payload, check ``s``."""
    agent = ucan.Signer(bytes(32))
    proof = ucan.block({"a delegation": 1})
    sent = ucan.invocation(
        agent, "did:web:up.example", "space/blob/add", "did:key:z6Mkx",
        {"blob": {"digest": MULTIHASH, "size": 5}}, proofs=[proof],
    )  # fmt: skip
    model = libipld.decode_dag_cbor(sent.root.data)
    assert model["aud"] == varint.encode(0x0D1D) + b"web:up.example"
    assert model["iss"] == bytes(multibase.decode(agent.did[len("did:key:") :]))
    assert model["prf"] == [proof.link.cid] and sent.blocks == (proof,)
    payload = {
        "iss": agent.did,
        "aud": "did:web:up.example",
        "att": [{"can": "space/blob/add", "with": "did:key:z6Mkx", "nb": {"blob": {
            "digest": {"/": {"bytes": base64.b64encode(MULTIHASH).decode().rstrip("=")}},
            "size": 5,
        }}}],
        "exp": model["exp"],
        "prf": [str(proof.link)],
        "nnc": model["nnc"],
    }  # fmt: skip
    header = {"alg": "EdDSA", "ucv": "0.9.1", "typ": "JWT"}
    signed = b".".join(
        base64.urlsafe_b64encode(
            json.dumps(part, separators=(",", ":"), sort_keys=True).encode()
        ).rstrip(b"=")
        for part in (header, payload)
    )
    signature = model["s"]
    assert signature[:4] == varint.encode(0xD0ED) + varint.encode(64)
    public = bytes(multibase.decode(agent.did[len("did:key:") :]))[2:]
    ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature[4:], signed)


def test_a_message_car_reads_back_and_a_delegation_archive_yields_the_delegation_first() -> None:
    inner, delegated = ucan.block({"proof of proof": 1}), ucan.block({"delegation": 1})
    variant = ucan.block({"ucan@0.9.1": delegated.link})
    archive = ucan.write_car([variant.link], [variant, inner, delegated])
    assert ucan.delegation(archive) == [delegated, inner]
    invocation = ucan.Invocation(ucan.block({"task": 1}), (delegated, inner))
    roots, blocks = ucan.read_car(ucan.message([invocation]))
    root = libipld.decode_dag_cbor(blocks[roots[0]])
    assert root == {ucan.MESSAGE: {"execute": [invocation.root.link.cid]}}
    assert set(blocks) == {roots[0], invocation.root.link.cid, delegated.link.cid, inner.link.cid}


def test_a_signer_never_shows_its_key() -> None:
    agent = ucan.Signer(b"\x07" * 32)
    assert repr(agent) == f"Signer({agent.did})" and agent.did.startswith("did:key:z6Mk")
