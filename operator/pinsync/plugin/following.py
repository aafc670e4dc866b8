"""Following requests until the operator answers them: polling, progress, exit status.

Polling, not watching: a person reads the result at the same pace, and a watch would need one
stream per kind and namespace. One read per namespace per second however many objects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from pinsync import selectors
from pinsync.plugin import render, views, waiting
from pinsync.plugin.sessions import Session, key_of, singular
from pinsync.status import BackendStatus

POLL = 1.0
"""Seconds between reads while waiting or watching."""

EXIT_FAILED = 1
"""A request failed: Stalled, pins failed, unhealthy, or the object is gone."""
EXIT_TIMEOUT = 3
"""``--timeout`` passed before every request was answered."""


Judge = Callable[[Mapping[str, Any] | None, waiting.Request], waiting.Verdict]


def progress_of(obj: Mapping[str, Any] | None) -> tuple[int, int, int]:
    """(present, desired, bytes) of a backend, for the progress bar."""
    view = BackendStatus.of(obj)
    return view.counts.present, view.counts.desired, view.bytes_transferred or 0


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
