from __future__ import annotations

from typing import Any

from pinsync import pinlists
from pinsync.reconciling import backendsource, sources
from pinsync.reconciling.context import Context, NodePins
from pinsync.settings import Settings

CID_A = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
CID_B = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"


def ctx() -> Context:
    return Context(api=None, settings=Settings())  # type: ignore[arg-type]


def pinset(spec: dict[str, Any], name: str = "p") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def backend(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels or {}}}


def test_a_pinset_targets_named_and_selected_backends() -> None:
    p = pinset({"backends": ["a"], "backendSelector": {"matchLabels": {"tier": "cold"}}})
    assert sources.targets(p, backend("a"))
    assert sources.targets(p, backend("b", {"tier": "cold"}))
    assert not sources.targets(p, backend("c", {"tier": "hot"}))


def test_resolution_unions_explicit_cids_and_prefixed_node_pins() -> None:
    node = NodePins.of({CID_B: "media/x", "bafkqaaa": "other/y"})
    source = sources.resolve(
        ctx(), pinset({"cids": [CID_A, CID_A, "zzz"], "fromNode": {"namePrefix": "media/"}}), node
    )
    assert list(source.pins) == sorted([CID_A, sources.cids.key(CID_B)])
    assert source.invalid == ("zzz",)
    assert source.api_url == Settings().ipfs_api_url


def test_the_digest_changes_with_the_pins_only() -> None:
    one = sources.resolve(ctx(), pinset({"cids": [CID_A]}), None)
    same = sources.resolve(ctx(), pinset({"cids": [CID_A], "backends": ["x"]}), None)
    more = sources.resolve(ctx(), pinset({"cids": [CID_A, CID_B]}), None)
    assert one.digest == same.digest != more.digest


def test_from_node_without_a_prefix_leaves_pins_made_for_other_namespaces() -> None:
    node = NodePins.of({CID_A: "", CID_B: "pinsync/other/media", "bafkqaaa": "pinsync/ns/mine"})
    source = sources.resolve(ctx(), pinset({"fromNode": {}}), node)
    assert (
        sources.cids.key(CID_B) not in source.pins
        and "bafkqaaa" in source.pins
        and CID_A in source.pins
    )


def test_a_cidv0_and_its_cidv1_are_one_pin_spelled_as_written() -> None:
    v1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
    v0 = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"
    source = sources.resolve(ctx(), pinset({"cids": [v0, v1]}), None)
    assert list(source.pins) == [v1]
    assert source.spelling(v1) == v0


def test_cids_are_parsed_once_per_generation() -> None:
    context = ctx()
    obj = pinset({"cids": [CID_A]})
    obj["metadata"] |= {"uid": "u", "generation": 1}
    first = sources.explicit(context, obj)
    assert sources.explicit(context, obj) is first
    obj["metadata"]["generation"] = 2
    assert sources.explicit(context, obj) is not first


def test_a_source_is_resolved_once_per_generation_and_node_version() -> None:
    context = ctx()
    node = NodePins.of({CID_A: "media/a"})
    obj = pinset({"fromNode": {"namePrefix": "media/"}})
    obj["metadata"] |= {"uid": "u", "generation": 1}
    first = sources.resolve(context, obj, node)
    assert sources.resolve(context, obj, node) is first
    node.record([sources.cids.key(CID_B) or ""], "media/b")  # the operator pinned one more
    second = sources.resolve(context, obj, node)
    assert second is not first and len(second.pins) == 2 and second.digest != first.digest
    node.record(["bafkqaaa"], "other/c")  # not under the prefix: same pins, same digest
    assert sources.resolve(context, obj, node).digest == second.digest


def test_a_fromnode_pin_is_neither_pinned_nor_restored_by_its_pinset() -> None:
    node = NodePins.of({CID_B: "media/x"})
    source = sources.resolve(
        ctx(), pinset({"cids": [CID_A], "fromNode": {"namePrefix": "media/"}}), node
    )
    assert dict(source.listed) == {CID_A: CID_A}


def test_pins_the_operator_adds_are_selected_by_the_same_rule_as_listed_ones() -> None:
    node = NodePins.of({CID_A: ""})
    node.record(["bafkqaaa"], "pinsync/other/media")  # made for another namespace's PinSet
    node.record(["bafkqaab"], "pinsync/ns/mine")
    assert list(node.select("", "ns")) == sorted([CID_A, "bafkqaab"])
    assert list(node.select("pinsync/other/", "ns")) == ["bafkqaaa"]


def test_a_backend_listing_becomes_pins_the_pinset_puts_on_the_node() -> None:
    """fromBackend pins join the PinSet's own list (pinned on the node, restored), unlike
    fromNode pins, which are on the node by definition; a new listing is a new resolution."""
    context = ctx()
    obj = pinset({"cids": [CID_B], "fromBackend": {"name": "old"}})
    obj["metadata"] |= {"uid": "u", "generation": 1}
    held = backendsource.BackendList(keys=pinlists.Keys.of([CID_A]), stamp=(), read_at=0.0)
    source = sources.resolve(context, obj, None, None, held)
    v1_b = sources.cids.key(CID_B)
    assert list(source.pins) == sorted([CID_A, v1_b])
    assert dict(source.listed) == {CID_A: CID_A, v1_b: CID_B}
    assert sources.resolve(context, obj, None, None, held) is source
    again = backendsource.BackendList(keys=pinlists.Keys.of([]), stamp=(), read_at=0.0)
    assert list(sources.resolve(context, obj, None, None, again).pins) == [v1_b]
