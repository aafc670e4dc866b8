"""Printing: rich tables and progress bars on a terminal, plain aligned text otherwise.

Piped output (``| grep``, a CI log) gets kubectl's layout -- columns separated by spaces, no
colour, no box drawing -- so it stays greppable and diffable; ``-o json|yaml`` is for programs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

Row = Sequence[str]


def plain(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """kubectl's table: every column as wide as its widest cell, three spaces between."""
    widths = [max(len(str(c)), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [columns, *rows]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def table(columns: Sequence[str], rows: Sequence[Row], title: str | None = None) -> Table:
    shown = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", header_style="bold")
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*row)
    return shown


def structured(data: Any, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    return yaml.safe_dump(data, sort_keys=False).rstrip()


class Printer:
    """Where a command's output goes, and in which form (``-o``)."""

    def __init__(self, output: str, console: Console | None = None) -> None:
        self.output = output
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def rich(self) -> bool:
        return self.output == "table" and self.console.is_terminal

    def data(self, data: Any) -> None:
        print(structured(data, self.output))

    def table(self, columns: Sequence[str], rows: Sequence[Row], title: str | None = None) -> None:
        if self.rich:
            self.console.print(table(columns, rows, title))
        else:
            if title:
                print(f"# {title}")
            print(plain(columns, rows) if rows else "No resources found.")

    def line(self, text: str) -> None:
        if self.output == "table":
            print(text, flush=True)

    def error(self, text: str) -> None:
        if self.errors.is_terminal:
            self.errors.print(f"[red]error:[/red] {escape(text)}", markup=True)
        else:
            self.errors.print(f"error: {text}", markup=False)
