"""Backend types by name, imported lazily (the fsspec ``known_implementations`` pattern).

Adding a backend means writing its module and adding one line here. Importing lazily keeps the
operator's start-up free of every backend's client library.
"""

from __future__ import annotations

import importlib

from pinsync.backends import base

KNOWN: dict[str, str] = {
    "s3": "pinsync.backends.s3:S3Backend",
    "sftp": "pinsync.backends.sftp:SftpBackend",
    "ftp": "pinsync.backends.ftp:FtpBackend",
    "ipfsCluster": "pinsync.backends.ipfscluster:IpfsClusterBackend",
    "github": "pinsync.backends.github:GithubBackend",
    "huggingface": "pinsync.backends.huggingface:HuggingfaceBackend",
    "pinningService": "pinsync.backends.pinningservice:PinningServiceBackend",
    "storacha": "pinsync.backends.storacha:StorachaBackend",
}
ALIASES: dict[str, str] = {"sshfs": "sftp"}
"""Accepted spellings of a type; the reference called SFTP ``sshfs``."""

CONFIG_BLOCKS: dict[str, str] = {"sshfs": "sftp"}
"""The spec block a type is configured by, where it is not named like the type."""


class NotImplementedBackend(LookupError):
    """The type is valid in the CRD but this build of pinsync has no implementation for it."""


def canonical(type_: str) -> str:
    return ALIASES.get(type_, type_)


def config_block(type_: str) -> str:
    return CONFIG_BLOCKS.get(type_, type_)


def load(type_: str) -> type[base.Backend]:
    """The Backend class for a spec type, importing its module on first use."""
    target = KNOWN.get(canonical(type_))
    if target is None:
        raise NotImplementedBackend(f"backend type {type_!r} is not implemented in this release")
    module_name, _, attr = target.partition(":")
    cls: type[base.Backend] = getattr(importlib.import_module(module_name), attr)
    return cls
