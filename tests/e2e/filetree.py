"""Checks shared by the end-to-end tests of file-server backends (SFTP, FTP)."""

from __future__ import annotations

import json
import pathlib

from pinsync.devenv import kubo


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
