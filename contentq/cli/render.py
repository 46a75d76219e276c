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


# What a terminal would act on instead of showing: ANSI CSI/OSC sequences, other C0/C1 controls, and the
# Unicode bidi overrides that can make text read differently from what it is. Newlines and tabs stay.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """Donor (or any outside) text as it may be shown in a terminal: escape sequences and controls removed."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def plain(text: object) -> str:
    """Outside text for a rich markup string: controls stripped, `[...]` escaped so it is shown, not parsed."""
    return escape(terminal_safe(str(text)))


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
    return plain(redact(value))  # post text like "[ad]" is data, not markup; secrets masked; no terminal escapes


def table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str | tuple[str, str]],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    rows = list(rows)
    if not rows:
        console.print(f"[dim]{plain(empty)}[/dim]")
        return
    t = Table(title=plain(title) if title else None, header_style="bold")
    keys = []
    for col in columns:
        key, label = (col, col.replace("_", " ")) if isinstance(col, str) else col
        keys.append(key)
        t.add_column(label, overflow="fold", min_width=min(len(label), 12))
    for row in rows:
        t.add_row(*(_cell(row.get(k)) for k in keys))
    console.print(t)


def details(data: dict[str, Any], *, title: str | None = None) -> None:
    t = Table(title=plain(title) if title else None, show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key, value in data.items():
        t.add_row(key.replace("_", " "), _cell(value))
    console.print(t)


def summary(title: str, lines: Iterable[str]) -> None:
    """A report as one line per outcome or reason ("filtered 1: skip_ads: …"), under a bold title."""
    console.print(f"[bold]{plain(title)}[/bold]", highlight=False)
    for line in lines:
        console.print(f"  {plain(line)}", highlight=False, soft_wrap=True)


def ok(message: str) -> None:
    """A success line; `message` is plain text (ids, paths and names a user typed are shown as given)."""
    console.print(f"[green]✓[/green] {plain(message)}", highlight=False)


def error(message: object) -> None:
    """The one `error:` line; the message is plain text and never parsed as markup."""
    line = " ".join(str(message).splitlines())  # one line, whatever an exception's text holds
    err_console.print(f"[bold red]error:[/bold red] {plain(line)}", highlight=False, soft_wrap=True)
