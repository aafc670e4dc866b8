"""CID identity: one DAG, one pin, whatever the CID's version or spelling."""

from __future__ import annotations

from pinsync import cids

V0 = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"
V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"  # `ipfs cid base32` of V0
RAW = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def test_a_cidv0_and_its_cidv1_have_one_identity() -> None:
    assert cids.key(V0) == cids.key(V1) == V1
    assert cids.same(V0, V1)
    assert not cids.same(V1, RAW)


def test_garbage_has_no_identity() -> None:
    assert cids.key("zzz") is None
    assert cids.key("bafy-not-a-cid") is None
    assert not cids.same("zzz", "zzz")


def test_partition_keeps_the_first_spelling_of_each_identity() -> None:
    valid, invalid = cids.partition([V0, RAW, V1, "nope", RAW])
    assert valid == {V1: V0, RAW: RAW}
    assert invalid == ["nope"]
