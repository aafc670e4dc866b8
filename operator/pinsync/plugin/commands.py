"""``kubectl pinsync``: the subcommands of the ``pinsync`` CLI that drive a running operator.

The plugin writes nothing but annotations the operator already watches (``mark-dirty``,
``sync-requested-at``, ``health-requested-at``, ``restore-requested-at``) and reads status:
every decision stays with the operator, so the dirty-token rules hold exactly as for a
``kubectl annotate``. Waiting polls the objects once a second (a watch would need one stream per
kind and namespace for a view refreshed at the same pace by a person).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Group
from rich.live import Live

from pinsync import kube, selectors
from pinsync.plugin import render, views, waiting
from pinsync.plugin.following import EXIT_FAILED, POLL, Judge, exit_status, wait
from pinsync.plugin.sessions import CommandError, Session, UsageError, key_of, singular, utcnow
from pinsync.status import (
    HEALTH_REQUESTED_AT,
    MARK_DIRTY,
    RESTORE_REQUESTED_AT,
    SYNC_REQUESTED_AT,
    BackendStatus,
)


def now_value() -> str:
    """A request value: the time, to the microsecond, so two requests never look the same."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def mark_value(reason: str, current: str | None) -> str:
    """The ``mark-dirty`` value for ``reason``: the operator acts on a *new* value only, so a
    reason equal to the one last written gets the time added."""
    return reason if reason != current else f"{reason} ({now_value()})"


# -- status, dirty ---------------------------------------------------------------------------


async def gather_status(session: Session, name: str | None) -> dict[str, list[views.Summary]]:
    scope = session.scope([name] if name else [], required=False)
    backends = [
        views.backend_summary(o) for o in await session.objects(kube.STORAGEBACKENDS, scope)
    ]
    pinset_scope = dataclasses.replace(scope, names=(), selector=None)
    pinsets = [views.pinset_summary(o) for o in await session.objects(kube.PINSETS, pinset_scope)]
    if name or scope.selector:
        shown = {(b["namespace"], b["name"]) for b in backends}
        pinsets = [
            p
            for p in pinsets
            if any((p["namespace"], b.get("name")) in shown for b in p["perBackend"])
        ]
    return {"backends": backends, "pinsets": pinsets}


def status_tables(
    session: Session, data: dict[str, list[views.Summary]]
) -> list[tuple[list[str], list[list[str]], str]]:
    now = utcnow()
    backends, pinsets = data["backends"], data["pinsets"]
    rows = [views.backend_row(b, now) for b in backends]
    shown = [(*session.table(views.BACKEND_COLUMNS, rows, backends), "StorageBackends")]
    if pinsets:
        rows = [views.pinset_row(p) for p in pinsets]
        shown.append((*session.table(views.PINSET_COLUMNS, rows, pinsets), "PinSets"))
    return shown


async def status(session: Session) -> int:
    args, printer = session.args, session.printer
    data = await gather_status(session, args.name)
    if args.name and not data["backends"]:
        raise CommandError(f'storagebackend "{args.name}" not found')
    if printer.output != "table":
        printer.data(data)
    elif not printer.rich or not args.watch:
        for columns, rows, title in status_tables(session, data):
            printer.table(columns, rows, title)
    if args.watch:
        await watch(session, data)
    return 0


async def watch(session: Session, data: dict[str, list[views.Summary]]) -> None:
    """``status -w``: on a terminal, the tables redrawn in place; otherwise, like ``kubectl get
    -w``, one line per object that changed (prefixed with the time and its kind)."""
    args, printer = session.args, session.printer
    if printer.rich:
        with Live(console=printer.console, auto_refresh=False) as live:
            while True:
                tables = [render.table(c, r, t) for c, r, t in status_tables(session, data)]
                live.update(Group(*tables), refresh=True)
                await asyncio.sleep(POLL)
                data = await gather_status(session, args.name)
    seen = snapshot(data)
    while True:
        await asyncio.sleep(POLL)
        now = snapshot(await gather_status(session, args.name))
        changed = {k: v for k, v in now.items() if k not in seen or seen[k].row != v.row}
        seen = now
        if changed and printer.output != "table":
            printer.data({"changed": [v.summary for v in changed.values()]})
            continue
        at = utcnow()
        for (kind, namespace, _), shown in changed.items():
            where = [namespace] if args.all_namespaces else []
            cells = [at.strftime("%H:%M:%S"), kind, *where, *shown.now(kind, at)]
            print("   ".join(cells), flush=True)


def snapshot(data: dict[str, list[views.Summary]]) -> dict[tuple[str, str, str], Shown]:
    """Rows by object, for ``-w`` to print only what changed: rendered at a fixed time, so that
    ages growing is no change."""
    result: dict[tuple[str, str, str], Shown] = {}
    frozen = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    for backend in data["backends"]:
        key = ("storagebackend", backend["namespace"], backend["name"])
        result[key] = Shown(views.backend_row(backend, frozen), backend)
    for pinset in data["pinsets"]:
        key = ("pinset", pinset["namespace"], pinset["name"])
        result[key] = Shown(views.pinset_row(pinset), pinset)
    return result


@dataclasses.dataclass(frozen=True)
class Shown:
    row: list[str]
    summary: views.Summary

    def now(self, kind: str, now: datetime.datetime) -> list[str]:
        if kind == "storagebackend":
            return views.backend_row(self.summary, now)
        return self.row


async def dirty(session: Session) -> int:
    scope = session.scope([], required=False)
    found = [views.backend_summary(o) for o in await session.objects(kube.STORAGEBACKENDS, scope)]
    marked = [s for s in found if s["dirty"]["dirty"]]
    if session.printer.output != "table":
        session.printer.data(marked)
        return 0
    now = utcnow()
    rows = [views.dirty_row(s, now) for s in marked]
    columns, rows = session.table(views.DIRTY_COLUMNS, rows, marked)
    if rows:
        session.printer.table(columns, rows)
    else:
        session.printer.line("No dirty storagebackends.")
    return 0


# -- requests: mark-dirty, sync, health, restore ----------------------------------------------


async def request(
    session: Session, plural: str, obj: Mapping[str, Any], annotation: str, value: str
) -> waiting.Request:
    namespace, name = key_of(obj)
    written = await session.api.annotate(plural, namespace, name, {annotation: value})
    if written is None:
        raise CommandError(f'{singular(plural)} "{name}" was deleted')
    token = BackendStatus.of(written).dirty.token
    return waiting.Request(
        namespace=namespace, name=name, annotation=annotation, value=value, token=token
    )


async def answer(
    session: Session,
    plural: str,
    requests: Sequence[waiting.Request],
    judge: Judge | None,
) -> int:
    """With ``judge`` (``--wait``): wait for the answers. ``-o json|yaml`` prints one record
    per request: what was written and, after a wait, the outcome."""
    # Backends show pins and bytes as they go; a PinSet's restore has no such counts to show.
    progress = plural == kube.STORAGEBACKENDS
    verdicts = await wait(session, plural, requests, judge, progress=progress) if judge else {}
    if session.printer.output != "table":
        session.printer.data([outcome(r, verdicts.get((r.namespace, r.name))) for r in requests])
    return exit_status(session, plural, verdicts)


def outcome(request: waiting.Request, verdict: waiting.Verdict | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "namespace": request.namespace,
        "name": request.name,
        "annotation": request.annotation,
        "value": request.value,
    }
    if verdict is not None:
        record["result"] = "Done" if verdict.done else "Failed" if verdict.failure else "TimedOut"
        record["message"] = verdict.failure or verdict.note
    return record


async def mark_dirty(session: Session) -> int:
    args = session.args
    if not args.reason.strip():
        raise UsageError("--reason must not be empty")
    requests = []
    for obj in await session.targets(kube.STORAGEBACKENDS, args.names):
        current = (obj["metadata"].get("annotations") or {}).get(MARK_DIRTY)
        value = mark_value(args.reason, current)
        made = await request(session, kube.STORAGEBACKENDS, obj, MARK_DIRTY, value)
        requests.append(made)
        session.printer.line(f"storagebackend/{made.name} marked dirty: {value}")
    return await answer(session, kube.STORAGEBACKENDS, requests, None)


async def sync(session: Session) -> int:
    args = session.args
    # Plain: a mark (upload what is missing); --full: the request that also verifies.
    annotation = SYNC_REQUESTED_AT if args.full else MARK_DIRTY
    requests = []
    for obj in await session.targets(kube.STORAGEBACKENDS, args.names):
        value = now_value() if args.full else f"sync at {now_value()}"
        made = await request(session, kube.STORAGEBACKENDS, obj, annotation, value)
        requests.append(made)
        kind = "full sync" if args.full else "sync"
        session.printer.line(f"storagebackend/{made.name}: {kind} requested")
    judge = waiting.sync if args.wait else None
    return await answer(session, kube.STORAGEBACKENDS, requests, judge)


async def health(session: Session) -> int:
    args = session.args
    targets = await session.targets(kube.STORAGEBACKENDS, args.names)
    value = now_value()
    requests = [
        await request(session, kube.STORAGEBACKENDS, obj, HEALTH_REQUESTED_AT, value)
        for obj in targets
    ]
    verdicts: dict[tuple[str, str], waiting.Verdict] = {}
    if args.wait:
        # The results table is the report: no progress lines before it.
        plural = kube.STORAGEBACKENDS
        verdicts = await wait(
            session, plural, requests, waiting.health, progress=False, report=False
        )
        fresh = [await session.api.get(plural, r.namespace, r.name) for r in requests]
        targets = [obj for obj in fresh if obj is not None]
    else:
        session.printer.line("health check requested; the last results:")
    summaries = [views.backend_summary(o) for o in targets]
    if session.printer.output != "table":
        session.printer.data(summaries)
    else:
        now = utcnow()
        rows = [views.health_row(s, now) for s in summaries]
        session.printer.table(*session.table(views.HEALTH_COLUMNS, rows, summaries))
    return exit_status(session, kube.STORAGEBACKENDS, verdicts)


async def restore(session: Session) -> int:
    args = session.args
    scope = session.scope(args.names, required=False)
    targets = await session.objects(kube.PINSETS, scope)
    if not targets:
        raise CommandError("no pinsets to restore")
    value = now_value()
    requests = []
    for obj in targets:
        made = await request(session, kube.PINSETS, obj, RESTORE_REQUESTED_AT, value)
        requests.append(made)
        session.printer.line(f"pinset/{made.name}: restore requested")
    return await answer(session, kube.PINSETS, requests, waiting.restore if args.wait else None)


# -- arguments --------------------------------------------------------------------------------


def common_flags() -> argparse.ArgumentParser:
    """kubectl's flags, accepted after any subcommand."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    flags.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    flags.add_argument("--context", help="kubeconfig context (default: the current one)")
    flags.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    flags.add_argument("-l", "--selector", help="label selector, e.g. tier=archive")
    flags.add_argument(
        "-o", "--output", choices=["table", "json", "yaml"], default="table", help="output format"
    )
    return flags


Command = Callable[[Session], Any]


def register(commands: Any) -> None:
    """Add the plugin's subcommands to the ``pinsync`` parser's subparsers."""
    flags = common_flags()

    def add(name: str, command: Command, help_: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, parents=[flags], help=help_, description=help_
        )
        parser.set_defaults(func=lambda args: main(command, args))
        return parser

    cmd = add("status", status, "backends (health, dirty, pins, last sync, usage) and PinSets")
    cmd.add_argument("name", nargs="?", help="one StorageBackend (and the PinSets targeting it)")
    cmd.add_argument("-w", "--watch", action="store_true", help="follow changes")

    add("dirty", dirty, "only the dirty backends, with their reasons")

    cmd = add("mark-dirty", mark_dirty, "mark backends dirty (they sync missing pins)")
    targets(cmd)
    cmd.add_argument("--reason", required=True, help="why (shown in status.dirty.reasons)")

    cmd = add("sync", sync, "ask for a sync now")
    targets(cmd)
    cmd.add_argument("--full", action="store_true", help="also verify every present pin")
    waits(cmd, "until Ready, with progress; non-zero exit naming what failed", "5m")

    cmd = add("health", health, "ask for a health check now; print the results with latency")
    targets(cmd)
    waits(cmd, "for the new results; non-zero exit if unhealthy", "1m")

    cmd = add("restore", restore, "bring PinSets' pins back from backends to the IPFS node")
    cmd.add_argument("names", nargs="*", metavar="PINSET", help="PinSets (default: all)")
    waits(cmd, "until restored; non-zero exit naming what failed", "30m")


def targets(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("names", nargs="*", metavar="NAME", help="StorageBackends")
    cmd.add_argument("--all", action="store_true", help="every StorageBackend in the namespace")


def waits(cmd: argparse.ArgumentParser, what: str, timeout: str) -> None:
    cmd.add_argument("--wait", action="store_true", help=f"wait {what}")
    cmd.add_argument(
        "--timeout", default=timeout, help=f"give up waiting after (default {timeout})"
    )


def main(command: Command, args: argparse.Namespace) -> None:
    """Run one command; exit with its status (2: bad arguments, 1: failed, 3: timed out)."""
    printer = render.Printer(getattr(args, "output", "table"))
    try:
        selectors.duration(getattr(args, "timeout", None), 0)
    except ValueError as exc:
        printer.error(f"--timeout: {exc}")
        sys.exit(2)
    try:
        code = asyncio.run(run(command, args))
    except UsageError as exc:
        printer.error(str(exc))
        code = 2
    except CommandError as exc:
        printer.error(str(exc))
        code = EXIT_FAILED
    except kube.ApiError as exc:
        printer.error(api_error(exc))
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def api_error(exc: Any) -> str:
    """The API server's own message (what kubectl prints), with a hint for a missing CRD."""
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except (ValueError, AttributeError):
        message = exc.reason
    hint = " (are pinsync's CRDs installed? kubectl apply -f crds/)" if exc.status == 404 else ""
    return f"the API server answered {exc.status}: {message}{hint}"


async def run(command: Command, args: argparse.Namespace) -> int:
    session = Session(args)
    code: int = await command(session)
    return code
