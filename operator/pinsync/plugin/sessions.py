"""What one ``kubectl pinsync`` command works on: the cluster, the namespace, the objects.

kubectl's rules, so the plugin behaves like the tool it extends: the kubeconfig's current
context and its namespace unless ``--context``/``-n`` say otherwise, ``-A`` for every namespace,
names or ``-l`` or ``--all``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from pinsync import kube
from pinsync.plugin import render, views


class UsageError(Exception):
    """Arguments that name no objects, or name them twice over."""


class CommandError(Exception):
    """A failure to report as ``error: ...`` with exit status 1."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scope:
    """Which objects a command acts on, from its arguments (kubectl's rules)."""

    namespace: str | None
    """None: every namespace (``-A``)."""
    names: tuple[str, ...] = ()
    selector: str | None = None
    everything: bool = False

    @classmethod
    def of(
        cls,
        *,
        namespace: str,
        all_namespaces: bool,
        names: Sequence[str],
        selector: str | None,
        everything: bool,
        required: bool,
    ) -> Scope:
        """``required``: the command changes things, so an empty choice is an error rather
        than "all" (as ``kubectl delete`` asks for ``--all``)."""
        if names and (selector or everything):
            raise UsageError("name objects, or use --all or -l, not both")
        if names and all_namespaces:
            raise UsageError("objects cannot be named across all namespaces (-A): use -n")
        if required and not (names or selector or everything):
            raise UsageError("name one or more objects, or use --all or -l SELECTOR")
        return cls(
            namespace=None if all_namespaces else namespace,
            names=tuple(dict.fromkeys(names)),
            selector=selector,
            everything=everything,
        )


def key_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


class Session:
    """The API and the printer one command uses."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.printer = render.Printer(args.output)
        try:
            kube.load_config(args.kubeconfig, args.context)
        except kube.ConfigError as exc:
            raise CommandError(f"no cluster configuration: {exc}") from None
        self.namespace = args.namespace or kube.default_namespace(args.kubeconfig, args.context)
        self.api = kube.Api()

    def scope(self, names: Sequence[str], *, required: bool) -> Scope:
        return Scope.of(
            namespace=self.namespace,
            all_namespaces=self.args.all_namespaces,
            names=names,
            selector=self.args.selector,
            everything=getattr(self.args, "all", False),
            required=required,
        )

    async def objects(self, plural: str, scope: Scope) -> list[dict[str, Any]]:
        """The objects in ``scope``; a named one that does not exist is an error."""
        if not scope.names:
            found = await self.api.select(plural, scope.namespace, scope.selector)
            return sorted(found, key=key_of)
        assert scope.namespace is not None
        namespace = scope.namespace
        got = await asyncio.gather(*(self.api.get(plural, namespace, n) for n in scope.names))
        missing = [n for n, obj in zip(scope.names, got, strict=True) if obj is None]
        if missing:
            kind = singular(plural)
            names = ", ".join(f'"{n}"' for n in missing)
            raise CommandError(f"{kind} {names} not found in namespace {namespace}")
        return [obj for obj in got if obj is not None]

    async def targets(self, plural: str, names: Sequence[str]) -> list[dict[str, Any]]:
        found = await self.objects(plural, self.scope(names, required=True))
        if not found:
            where = "any namespace" if self.args.all_namespaces else f"namespace {self.namespace}"
            raise CommandError(f"no {plural} match in {where}")
        return found

    def table(
        self, columns: Sequence[str], rows: list[list[str]], summaries: Sequence[views.Summary]
    ) -> tuple[list[str], list[list[str]]]:
        if self.args.all_namespaces:
            return views.with_namespace(columns, rows, summaries)
        return list(columns), rows


def singular(plural: str) -> str:
    return {"storagebackends": "storagebackend", "pinsets": "pinset"}.get(plural, plural)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
