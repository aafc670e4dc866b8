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
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from pinsync import kube, selectors
from pinsync.plugin import render, views, waiting
from pinsync.reconciling import marking

POLL = 1.0
"""Seconds between reads while waiting or watching."""

EXIT_FAILED = 1
"""A request failed: Stalled, pins failed, unhealthy, or the object is gone."""
EXIT_TIMEOUT = 3
"""``--timeout`` passed before every request was answered."""


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


def now_value() -> str:
    """A request value: the time, to the microsecond, so two requests never look the same."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def mark_value(reason: str, current: str | None) -> str:
    """The ``mark-dirty`` value for ``reason``: the operator acts on a *new* value only, so a
    reason equal to the one last written gets the time added."""
    return reason if reason != current else f"{reason} ({now_value()})"


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
    token = int(((written.get("status") or {}).get("dirty") or {}).get("token") or 0)
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
        current = (obj["metadata"].get("annotations") or {}).get(marking.MARK_DIRTY)
        value = mark_value(args.reason, current)
        made = await request(session, kube.STORAGEBACKENDS, obj, marking.MARK_DIRTY, value)
        requests.append(made)
        session.printer.line(f"storagebackend/{made.name} marked dirty: {value}")
    return await answer(session, kube.STORAGEBACKENDS, requests, None)


async def sync(session: Session) -> int:
    args = session.args
    # Plain: a mark (upload what is missing); --full: the request that also verifies.
    annotation = marking.SYNC_REQUESTED_AT if args.full else marking.MARK_DIRTY
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
        await request(session, kube.STORAGEBACKENDS, obj, marking.HEALTH_REQUESTED_AT, value)
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
        made = await request(session, kube.PINSETS, obj, waiting.RESTORE_REQUESTED_AT, value)
        requests.append(made)
        session.printer.line(f"pinset/{made.name}: restore requested")
    return await answer(session, kube.PINSETS, requests, waiting.restore if args.wait else None)


# -- waiting ----------------------------------------------------------------------------------


Judge = Callable[[Mapping[str, Any] | None, waiting.Request], waiting.Verdict]


def progress_of(obj: Mapping[str, Any] | None) -> tuple[int, int, int]:
    """(present, desired, bytes) of a backend, for the progress bar."""
    status = (obj or {}).get("status") or {}
    counts = status.get("counts") or {}
    return counts.get("present", 0), counts.get("desired", 0), status.get("bytesTransferred") or 0


async def fetch(
    session: Session, plural: str, requests: Sequence[waiting.Request]
) -> dict[tuple[str, str], dict[str, Any] | None]:
    """The current objects of ``requests``: one list per namespace holding several of them
    (``--all`` over many backends polls once a second, not once per backend)."""
    by_namespace: dict[str, list[str]] = {}
    for r in requests:
        by_namespace.setdefault(r.namespace, []).append(r.name)
    found: dict[tuple[str, str], dict[str, Any] | None] = {}
    for namespace, names in by_namespace.items():
        if len(names) > 1:
            listed = {key_of(o): o for o in await session.api.select(plural, namespace)}
            found |= {(namespace, n): listed.get((namespace, n)) for n in names}
        else:
            found[(namespace, names[0])] = await session.api.get(plural, namespace, names[0])
    return found


class Display:
    """How a wait shows what happens: a progress bar per object on a terminal, else a line
    whenever an object's state changes (``report``: at all; ``progress``: with pins, bytes)."""

    def __init__(self, printer: render.Printer, kind: str, *, progress: bool, report: bool):
        self.printer, self.kind, self.progress, self.report = printer, kind, progress, report
        self.bars: Progress | None = None
        if printer.rich and progress and report:
            self.bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[pins]}"),
                TextColumn("{task.fields[bytes]}"),
                TextColumn("{task.fields[note]}"),
                console=printer.console,
            )
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.lines: dict[tuple[str, str], str] = {}

    def __enter__(self) -> Display:
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.bars is not None:
            self.bars.stop()

    def show(self, key: tuple[str, str], obj: Mapping[str, Any] | None, note: str) -> None:
        present, desired, sent = progress_of(obj)
        if self.bars is not None:
            if key not in self.tasks:
                self.tasks[key] = self.bars.add_task(key[1], total=None, pins="", bytes="", note="")
            self.bars.update(
                self.tasks[key],
                completed=present,
                total=desired or None,
                pins=f"{present}/{desired} pins",
                bytes=views.size(sent),
                note=escape(note),
            )
            return
        line = f"{self.kind}/{key[1]}: {note}"
        if self.progress:
            line += f" ({present}/{desired} pins, {views.size(sent)})"
        if self.report and self.lines.get(key) != line:
            self.lines[key] = line
            self.printer.line(line)


async def wait(
    session: Session,
    plural: str,
    requests: Sequence[waiting.Request],
    judge: Judge,
    *,
    progress: bool,
    report: bool = True,
) -> dict[tuple[str, str], waiting.Verdict]:
    """Poll until every request is answered or ``--timeout`` passes; the last verdicts (see
    :class:`Display` for ``progress`` and ``report``)."""
    deadline = time.monotonic() + selectors.duration(session.args.timeout, 300.0)
    verdicts = {(r.namespace, r.name): waiting.Verdict(note="not read yet") for r in requests}
    display = Display(session.printer, singular(plural), progress=progress, report=report)
    with display:
        while True:
            pending = [r for r in requests if not verdicts[(r.namespace, r.name)].over]
            for key, obj in (await fetch(session, plural, pending)).items():
                request = next(r for r in pending if (r.namespace, r.name) == key)
                verdict = verdicts[key] = judge(obj, request)
                display.show(
                    key, obj, verdict.failure or ("done" if verdict.done else verdict.note)
                )
            if all(v.over for v in verdicts.values()) or time.monotonic() > deadline:
                return verdicts
            await asyncio.sleep(POLL)


def exit_status(
    session: Session, plural: str, verdicts: Mapping[tuple[str, str], waiting.Verdict]
) -> int:
    """Name every request that failed or timed out (on stderr); the exit status."""
    code = 0
    for (_, name), verdict in verdicts.items():
        if verdict.failure:
            session.printer.error(f"{singular(plural)}/{name}: {verdict.failure}")
            code = max(code, EXIT_FAILED)
        elif not verdict.done:
            waited = session.args.timeout
            session.printer.error(
                f"{singular(plural)}/{name}: timed out after {waited}: {verdict.note}"
            )
            code = EXIT_TIMEOUT
    return code


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
