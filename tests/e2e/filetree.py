"""Checks shared by the end-to-end tests of file-server backends (SFTP, FTP)."""

from __future__ import annotations

import json
import os
import pathlib

from pinsync.devenv import kubo
from tests.kubetools import Objects, wait_synced


def sync_two_pins(backends: Objects, pinsets: Objects, backend: str, ipfs: kubo.Kubo) -> list[str]:
    """Add two pins (200 kB and 3 MB) to Kubo, target them at ``backend`` with the PinSet
    ``media``, and wait until the backend holds both and it and the PinSet are Ready."""
    cids = [ipfs.add(os.urandom(size)) for size in (200_000, 3_000_000)]
    pinsets.create("media", {"cids": cids, "backends": [backend]})
    status = wait_synced(backends, backend, present=2)
    assert status["counts"] == {"desired": 2, "present": 2, "missing": 0, "failed": 0}
    for condition in ("Healthy", "Synced", "Ready"):
        backends.wait_condition(backend, condition, "True")
    pinsets.wait_condition("media", "Ready", "True")
    return cids


def assert_pins_stored_as_files(directory: pathlib.Path, cids: list[str], ipfs: kubo.Kubo) -> None:
    """Exactly a CAR (byte-identical to ``dag export``) and a sidecar per pin; no temp files."""
    for cid in cids:
        car = (directory / f"{cid}.car").read_bytes()
        assert car == ipfs.export_car(cid)
        sidecar = json.loads((directory / f"{cid}.json").read_text())
        assert (sidecar["cid"], sidecar["size"]) == (cid, len(car))
    assert sorted(p.name for p in directory.iterdir() if p.is_file()) == sorted(
        f"{cid}{ext}" for cid in cids for ext in (".car", ".json")
    )
    assert list((directory / ".tmp").iterdir()) == []  # no temporary file left behind
