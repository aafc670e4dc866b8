"""The compact pin sets: set algebra against Python's own sets, and the digest earlier releases
recorded (status written by them must still compare equal)."""

from __future__ import annotations

import hashlib
import random

from pinsync import pinlists


def keys(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"bafkrei{rng.getrandbits(200):060x}"[: 7 + rng.randint(40, 52)] for _ in range(n)]


def test_set_operations_agree_with_python_sets() -> None:
    a_list, b_list = keys(500, 1), keys(300, 2) + keys(200, 1)[:100]
    a, b = pinlists.Keys.of(a_list), pinlists.Keys.of(b_list)
    sa, sb = set(a_list), set(b_list)
    assert list(a) == sorted(sa) and len(a) == len(sa)
    assert list(a.union(b)) == sorted(sa | sb)
    assert list(a.minus(b)) == sorted(sa - sb)
    assert list(a.common(b)) == sorted(sa & sb) == list(b.common(a))
    assert a.count_in(b) == len(sa & sb)
    assert all(k in a for k in a_list) and "bafkreinothere" not in a and 42 not in a
    assert "b" * 200 not in a  # wider than any key: not a match
    assert a[0] == min(sa)


def test_empty_sets() -> None:
    empty, some = pinlists.Keys.of(()), pinlists.Keys.of(["bafkqaaa"])
    assert len(empty) == 0 and list(empty.union(some)) == ["bafkqaaa"]
    assert list(some.minus(empty)) == ["bafkqaaa"] and len(empty.minus(some)) == 0
    assert len(some.common(empty)) == 0 and "bafkqaaa" not in empty


def test_the_digest_is_the_one_earlier_releases_wrote() -> None:
    values = keys(70_000, 3)  # more than one chunk
    expected = hashlib.sha256("\n".join(sorted(set(values))).encode()).hexdigest()[:16]
    assert pinlists.Keys.of(values).digest == expected


def test_values_built_with_keys_follow_them() -> None:
    builder = pinlists.Builder()
    for key, name in [("b3", "c"), ("b1", "a"), ("b2", "b"), ("b1", "later")]:
        builder.add(key, name)
    built, names = builder.build_with()
    assert list(built) == ["b1", "b2", "b3"] and names.tolist() == [b"a", b"b", b"c"]
    mask = pinlists.starting_with(names, "b")
    assert list(built.select(mask)) == ["b2"]
    assert built.select(pinlists.starting_with(names, "")) is built


def test_spellings_view() -> None:
    view = pinlists.Spellings(pinlists.Keys.of(["b1", "b2"]), {"b2": "Qm2"})
    assert dict(view) == {"b1": "b1", "b2": "Qm2"} and len(view) == 2 and "b3" not in view
