"""Compact pin sets: identities (CIDv1 base32) as one sorted numpy array of fixed-width bytes.

A node or an IPFS Cluster holds hundreds of thousands to millions of pins. As Python strings in
dicts and sets, one pin costs ~110 bytes of string plus 50-100 bytes per container it is in
(the node's list, a PinSet's source, a backend's desired and present sets, the plan...): a
million pins was well over a GiB. Here a pin costs its 59 bytes once per set, and the set
operations a pass needs (union, difference, intersection, membership) run in numpy's C loops.
Python strings are made only for the few pins a pass acts on (the missing ones, the failures).

Everything is pure code over plain values: no Kubernetes, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

CHUNK = 65_536
"""Strings converted to an array at a time while building (bounds the transient Python lists)."""


class Keys:
    """An immutable, sorted set of pin identities (ASCII CID strings), stored as bytes."""

    __slots__ = ("_digest", "array")

    def __init__(self, array: np.ndarray[Any, Any]) -> None:
        """``array``: sorted and unique, dtype ``S`` (use :meth:`of` or :class:`Builder`)."""
        self.array = array
        self._digest: str | None = None

    @classmethod
    def of(cls, values: Iterable[str]) -> Keys:
        builder = Builder()
        for value in values:
            builder.add(value)
        return builder.build()

    @classmethod
    def empty(cls) -> Keys:
        return cls(np.array([], dtype="S1"))

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), CHUNK):
            for raw in self.array[start : start + CHUNK].tolist():
                yield raw.decode()

    def __getitem__(self, index: int) -> str:
        return str(self.array[index].decode())

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.index(value) is not None

    def index(self, value: str) -> int | None:
        """Where ``value`` is in the sorted array (for values kept alongside), or None."""
        raw = value.encode()
        if not len(self) or len(raw) > self.array.dtype.itemsize:
            return None
        at = int(np.searchsorted(self.array, raw))
        return at if at < len(self) and self.array[at] == raw else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keys):
            return NotImplemented
        return len(self) == len(other) and bool(np.array_equal(self.array, other.array))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Keys({len(self)} pins)"

    def mask_in(self, other: Keys) -> np.ndarray[Any, Any]:
        """For each of this set's keys, whether ``other`` holds it."""
        if not len(self) or not len(other):
            return np.zeros(len(self), dtype=bool)
        a, b = _common_width(self.array, other.array)
        at = np.searchsorted(b, a)
        found = np.zeros(len(self), dtype=bool)
        inside = at < len(b)
        found[inside] = b[at[inside]] == a[inside]
        return found

    def minus(self, other: Keys) -> Keys:
        if not len(other) or not len(self):
            return self
        return self.select(~self.mask_in(other))

    def common(self, other: Keys) -> Keys:
        if len(other) < len(self):
            return other.common(self)
        return self.select(self.mask_in(other))

    def count_in(self, other: Keys) -> int:
        return int(np.count_nonzero(self.mask_in(other)))

    def union(self, *others: Keys) -> Keys:
        merged = self
        for other in others:
            merged = merged._merge(other)
        return merged

    def _merge(self, other: Keys) -> Keys:
        """Both sets in one: the other's new keys inserted where they sort (no re-sort)."""
        if len(other) > len(self):
            return other._merge(self)
        new = other.minus(self)
        if not len(new):
            return self
        a, b = _common_width(self.array, new.array)
        return Keys(np.insert(a, np.searchsorted(a, b), b))

    def select(self, mask: np.ndarray[Any, Any]) -> Keys:
        """The keys where ``mask`` (one bool per key) is true; this very set if all are."""
        return self if bool(mask.all()) else Keys(self.array[mask])

    @property
    def digest(self) -> str:
        """sha256 over the keys joined by newlines (what earlier releases recorded, so status
        written by them still compares equal), first 16 hex digits; computed once."""
        if self._digest is None:
            hasher = hashlib.sha256()
            for start in range(0, len(self), CHUNK):
                if start:
                    hasher.update(b"\n")
                hasher.update(b"\n".join(self.array[start : start + CHUNK].tolist()))
            self._digest = hasher.hexdigest()[:16]
        return self._digest


def _common_width(
    a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Both arrays at one ``S`` width (numpy compares bytes strings of unequal widths, but
    ``searchsorted`` wants one dtype)."""
    width = max(a.dtype.itemsize, b.dtype.itemsize)
    return (
        a if a.dtype.itemsize == width else a.astype(f"S{width}"),
        b if b.dtype.itemsize == width else b.astype(f"S{width}"),
    )


class Builder:
    """Collects identities (any order, duplicates allowed) into :class:`Keys`, optionally with
    one value per key (a pin's name): then :meth:`build_with` keeps the first value of a key.

    Each chunk of ``CHUNK`` is sorted and merged into the keys so far as it fills: concatenating
    every chunk and sorting at the end (``np.unique``) held four or five copies of a million
    keys at once, the operator's peak memory when it read a large node's pin list.
    """

    def __init__(self) -> None:
        self._keys: np.ndarray[Any, Any] = np.array([], dtype="S1")
        self._values: np.ndarray[Any, Any] | None = None
        self._pending: list[bytes] = []
        self._pending_values: list[bytes] = []

    def add(self, key: str, value: str | None = None) -> None:
        self._pending.append(key.encode())
        if value is not None:
            self._pending_values.append(value.encode())
        if len(self._pending) >= CHUNK:
            self._flush()

    def add_raw(self, key: bytes, value: bytes) -> None:
        self._pending.append(key)
        self._pending_values.append(value)
        if len(self._pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._pending_values and len(self._pending_values) != len(self._pending):
            raise ValueError("add a value with every key, or with none")
        chunk = np.array(self._pending, dtype=bytes)
        # Sorted, first occurrence of each key (a stable sort keeps the order of equal keys).
        order = np.argsort(chunk, kind="stable")
        chunk = chunk[order]
        first = np.ones(len(chunk), dtype=bool)
        first[1:] = chunk[1:] != chunk[:-1]
        new = ~Keys(chunk).mask_in(Keys(self._keys)) & first  # keys so far keep their value
        keys, chunk = _common_width(self._keys, chunk[new])
        at = np.searchsorted(keys, chunk)
        self._keys = np.insert(keys, at, chunk)
        if self._pending_values:
            values = np.array(self._pending_values, dtype=bytes)[order][new]
            held = self._values if self._values is not None else np.array([], dtype="S1")
            held, values = _common_width(held, values)
            self._values = np.insert(held, at, values)
        self._pending, self._pending_values = [], []

    def build(self) -> Keys:
        self._flush()
        return Keys(self._keys)

    def build_with(self) -> tuple[Keys, np.ndarray[Any, Any]]:
        """(keys, their values in the same order)."""
        self._flush()
        values = self._values if self._values is not None else np.array([], dtype="S1")
        if len(values) != len(self._keys):
            raise ValueError("add a value with every key, or with none")
        return Keys(self._keys), values


def starting_with(values: np.ndarray[Any, Any], prefix: str) -> np.ndarray[Any, Any]:
    """A mask of the ``values`` (bytes) that start with ``prefix``."""
    if not prefix:
        return np.ones(len(values), dtype=bool)
    return np.asarray(np.strings.startswith(values, prefix.encode()), dtype=bool)


class Spellings(Mapping[str, str]):
    """identity -> spelling over a set of keys: the given spelling where one differs, else the
    identity itself (a read-only view; nothing is copied)."""

    def __init__(self, keys: Keys, differing: Mapping[str, str]) -> None:
        self.keys_, self.differing = keys, differing

    def __getitem__(self, key: str) -> str:
        if key in self.differing:
            return self.differing[key]
        if key in self.keys_:
            return key
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_)

    def __len__(self) -> int:
        return len(self.keys_)
