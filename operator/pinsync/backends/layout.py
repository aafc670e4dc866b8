"""Names of a pin's objects, for every backend that stores CARs as named files.

One place for names that users' own tools rely on (``cat <cid>.car.* | ipfs dag import``) and
that a store written by one pinsync version must keep being read by the next: a name changed
here orphans every pin already stored. The tests check the exact paths.

    <cid>.car                 the pin's CAR
    <cid>.car.0000 ...        the CAR cut in parts, in order (git stores: a blob size limit)
    <cid>.json                its sidecar
    <shard>/<name>            the above in a shard directory (git stores, the Hub): the CID's
                              last two characters, so no directory holds a whole repository
    .tmp/<name>.<random>      an upload in progress on a file server, renamed into place
    .pinsync-write-probe-...  a health check's probe object

Names starting with a dot are pinsync's own and never a pin.
"""

from __future__ import annotations

import re

CAR = ".car"
SIDECAR = ".json"
TMP_DIR = ".tmp"
PROBE = ".pinsync-write-probe"
"""Prefix of the health probe's name; a random suffix keeps concurrent health checks apart."""
PART_RE = re.compile(r"^(?P<cid>.+)\.car\.(?P<n>\d{4})$")


def car(cid: str) -> str:
    return cid + CAR


def sidecar(cid: str) -> str:
    return cid + SIDECAR


def part(cid: str, number: int) -> str:
    """The ``number``-th part (from 0) of a CAR cut in parts."""
    return f"{cid}{CAR}.{number:04d}"


def shard(cid: str) -> str:
    """The shard directory of a pin's files."""
    return cid[-2:].lower()


def sharded(cid: str, name: str) -> str:
    """``name`` (one of the pin's files) inside the pin's shard directory."""
    return f"{shard(cid)}/{name}"


def cid_of(name: str) -> str | None:
    """The CID whose CAR, CAR part or sidecar ``name`` is (a bare file name), else None."""
    if name.endswith(CAR):
        return name[: -len(CAR)]
    if name.endswith(SIDECAR):
        return name[: -len(SIDECAR)]
    found = PART_RE.match(name)
    return found.group("cid") if found else None


def temporary(key: str, suffix: str) -> str:
    """Where an upload of ``key`` is written before it is renamed into place."""
    return f"{TMP_DIR}/{key}.{suffix}"
