"""All terminal output goes through here: rich tables for people, --json for scripts."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from contentq.redact import redact

# Piped output (cron logs, `| less`) gets room for whole tables instead of rich's 80-column default.
console = Console(soft_wrap=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    # Plain print, not rich: scripts need exactly the JSON text.
    # Redacted here, the one way out for --json: no secret reaches a terminal or a script's input.
    print(redact(json.dumps(data, indent=2, default=str, ensure_ascii=False)))


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?\+00:00$")


def _cell(value: Any) -> str | Text:
    if isinstance(value, Text):  # already styled by the caller
        return value
    if value is None:
        return "—"
    if isinstance(value, str) and (match := _ISO.match(value)):
        return f"{match.group(1)} {match.group(2)}"  # stored instants are UTC; tables drop the noise
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return escape(redact(value))  # post text like "[ad]" is data, not rich markup; secrets masked


def table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str | tuple[str, str]],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    rows = list(rows)
    if not rows:
        console.print(f"[dim]{empty}[/dim]")
        return
    t = Table(title=title, header_style="bold")
    keys = []
    for col in columns:
        key, label = (col, col.replace("_", " ")) if isinstance(col, str) else col
        keys.append(key)
        t.add_column(label, overflow="fold", min_width=min(len(label), 12))
    for row in rows:
        t.add_row(*(_cell(row.get(k)) for k in keys))
    console.print(t)


def details(data: dict[str, Any], *, title: str | None = None) -> None:
    t = Table(title=title, show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key, value in data.items():
        t.add_row(key.replace("_", " "), _cell(value))
    console.print(t)


def summary(title: str, lines: Iterable[str]) -> None:
    """A report as one line per outcome or reason ("filtered 1: skip_ads: …"), under a bold title."""
    console.print(f"[bold]{escape(title)}[/bold]", highlight=False)
    for line in lines:
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


def ok(message: str) -> None:
    console.print(f"[green]✓[/green] {message}")


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, markup=True)
