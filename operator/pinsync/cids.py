"""CID parsing. The CRD's pattern rejects obvious garbage early; this decodes for real."""

from __future__ import annotations

from collections.abc import Iterable

from multiformats import CID


def normalise(value: str) -> str:
    """The CID as given, if it decodes; raise ValueError otherwise.

    The given string form is kept (not re-encoded to CIDv1) so that object names on the backends
    match what users wrote and what ``ipfs pin ls`` prints.
    """
    CID.decode(value)
    return value


def partition(values: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split into (valid, invalid), de-duplicated, order kept."""
    valid: list[str] = []
    invalid: list[str] = []
    for value in dict.fromkeys(values):
        try:
            valid.append(normalise(value))
        except (ValueError, KeyError):
            invalid.append(value)
    return valid, invalid
