"""All terminal output goes through here: rich tables for people, --json for scripts."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from contentq.redact import redact

if TYPE_CHECKING:
    from contentq.ops.probe import Probe

PIPE_WIDTH = 160
"""Piped output (cron logs, `| less`) gets room for whole tables instead of rich's 80-column default."""


class _Console(Console):
    """The terminal's width, or COLUMNS, asked at each print (not once at import); PIPE_WIDTH when piped."""

    def __init__(self, *, soft_wrap: bool = False) -> None:
        super().__init__(soft_wrap=soft_wrap)
        # Rich freezes COLUMNS at construction; this module loads when a command first prints (lazily), so the
        # width must come from the environment of each print instead, as `size` below reads it.
        self._width = None

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not os.environ.get("COLUMNS") and not self.is_terminal:
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = _Console(soft_wrap=False)
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


def _cell(value: Any) -> Text:
    if isinstance(value, Text):  # already styled by the caller
        return value
    if value is None:
        return Text("—")
    if isinstance(value, str) and (match := _ISO.match(value)):
        return Text(f"{match.group(1)} {match.group(2)}")  # stored instants are UTC; tables drop the noise
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, float):
        return Text(f"{value:,.1f}")
    # Post text like "[ad]" is data: a Text is never parsed as markup; secrets masked; no terminal escapes.
    return Text(terminal_safe(str(redact(value))))


@dataclass(frozen=True)
class Col:
    """A table column and how it gives way when the terminal is narrow.

    fit="whole" (ids, states, times, counts, names): always shown, on one line, never cut; its header may wrap
    at spaces. fit="ellipsis" (free text): one line, shortened with "…" to the room left; left out (with a note)
    when even 10 columns are not left. fit="wrap": like ellipsis, but the text wraps at spaces instead (doctor's
    details, where every word counts). wide=True (technical or redundant detail): left out when the terminal is short
    of room, shown by --wide. When every column fits as it is, all are shown and nothing changes.
    """

    key: str
    label: str | None = None
    fit: Literal["whole", "ellipsis", "wrap"] = "whole"
    wide: bool = False

    @property
    def heading(self) -> str:
        return self.label if self.label is not None else self.key.replace("_", " ")


ColumnSpec = str | tuple[str, str] | Col

FLEX_MIN = 10
"""The narrowest a text column is shown; below that it is left out (and `--wide` shows it)."""

GAP = 2
"""Spaces between two columns."""


def _col(spec: ColumnSpec) -> Col:
    if isinstance(spec, Col):
        return spec
    return Col(spec) if isinstance(spec, str) else Col(spec[0], spec[1])


def _natural(text: Text) -> int:
    return max((cell_len(line) for line in text.plain.splitlines()), default=0)


def _header_min(label: str) -> int:
    return max((cell_len(word) for word in label.split()), default=0)


def _layout(cols: list[Col], cells: list[list[Text]], width: int, wide: bool) -> tuple[list[int], list[int], list[str]]:
    """Which columns to show and how wide, for a terminal `width` columns wide: (shown indexes, their widths,
    headings left out for lack of room). Whole columns get what their longest cell needs; text columns share
    the rest, the leftmost first; a text column that cannot get FLEX_MIN is left out, the rightmost first."""
    longest = [max((_natural(row[i]) for row in cells), default=0) for i in range(len(cols))]
    full = [max(longest[i], cell_len(col.heading), 1) for i, col in enumerate(cols)]
    if wide or sum(full) + GAP * (len(cols) - 1) <= width:
        return list(range(len(cols))), full, []  # room for everything, as it is
    # Short of room: headings may wrap at spaces, --wide columns go, text columns give way.
    natural = [max(longest[i], _header_min(col.heading), 1) for i, col in enumerate(cols)]
    shown = [i for i, col in enumerate(cols) if not col.wide]
    dropped: list[str] = []
    while True:
        flex = [i for i in shown if cols[i].fit != "whole"]
        fixed = sum(natural[i] for i in shown if cols[i].fit == "whole") + GAP * (len(shown) - 1)
        room = width - fixed
        need = sum(min(natural[i], FLEX_MIN) for i in flex)
        if room >= need or not flex:
            break
        shown.remove(flex[-1])
        dropped.append(cols[flex[-1]].heading)
    widths = {i: natural[i] for i in shown}
    flex = [i for i in shown if cols[i].fit != "whole"]
    if flex and sum(natural[i] for i in flex) > room:
        # Water-filling: short texts keep their length, long ones share what is left equally.
        left, pending = room, sorted(flex, key=lambda i: natural[i])
        while pending:
            share = left // len(pending)
            i = pending.pop(0)
            widths[i] = min(natural[i], max(share, min(natural[i], FLEX_MIN)))
            left -= widths[i]
    return shown, [widths[i] for i in shown], dropped


_NUMBER = re.compile(r"^[-+]?[\d,]+(\.\d+)?%?$")


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) or (isinstance(value, str) and bool(_NUMBER.match(value)))


def _wrap_heading(label: str, width: int) -> str:
    """A heading wider than its column, on as many lines as it needs (cells are never wrapped, headings may)."""
    lines: list[str] = []
    for word in label.split():
        if lines and cell_len(lines[-1]) + 1 + cell_len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines) or label


def _single_line(text: Text) -> Text:
    if "\n" not in text.plain:
        return text
    joined = text.copy()
    joined.plain = " ".join(text.plain.split())
    return joined


def table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[ColumnSpec],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
    wide: bool = False,
) -> None:
    """Rows as a table that fits the terminal (see Col); `wide`: every column, each cell whole, whatever the
    terminal's width (for a wide terminal, `less -S` or a file)."""
    rows = list(rows)
    if not rows:
        console.print(f"[dim]{plain(empty)}[/dim]")
        return
    cols = [_col(c) for c in columns]
    cells = [[_cell(row.get(col.key)) for col in cols] for row in rows]
    for row_cells in cells:
        for i, col in enumerate(cols):
            if col.fit == "ellipsis" or (col.fit == "whole" and not wide):
                row_cells[i] = _single_line(row_cells[i])
    shown, widths, dropped = _layout(cols, cells, console.width, wide)
    t = Table(
        title=plain(title) if title else None,
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, GAP - 1, 0, 0),
    )
    headings = [_wrap_heading(cols[i].heading, w) for i, w in zip(shown, widths, strict=True)]
    height = max(h.count("\n") for h in headings)
    for i, w, heading in zip(shown, widths, headings, strict=True):
        col = cols[i]
        values = [row.get(col.key) for row in rows if row.get(col.key) is not None]
        numeric = bool(values) and all(_is_number(v) for v in values)
        t.add_column(
            "\n" * (height - heading.count("\n")) + heading,  # a wrapped heading ends on the rule, as others
            width=w,
            no_wrap=col.fit != "wrap",
            overflow="fold" if col.fit == "wrap" else "ellipsis",
            justify="right" if numeric and col.fit == "whole" else "left",
        )
    for row_cells in cells:
        t.add_row(*(row_cells[i] for i in shown))
    total = sum(widths) + GAP * (len(widths) - 1)
    if total > console.width:  # only --wide (or whole columns that cannot fit): never cut a cell, let lines run
        Console(width=total, file=console.file, force_terminal=console.is_terminal, color_system=None
                if console.color_system is None else "auto", soft_wrap=False).print(t)  # fmt: skip
    else:
        console.print(t)
    if dropped:
        console.print(f"[dim]not shown for lack of room: {plain(', '.join(dropped))} (--wide shows every column)[/dim]")


def details(data: dict[str, Any], *, title: str | None = None) -> None:
    t = Table(title=plain(title) if title else None, show_header=False, box=None)
    t.add_column(style="bold", no_wrap=True)
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


_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def probe_table(probes: list[Probe], title: str) -> None:
    """Probes as a table: the fix under its detail (doctor, `db check`)."""
    # The fix under its detail, in one column that wraps at spaces: a path or a command stays whole at 80 columns.
    rows = [
        {
            "check": p.check,
            "status": Text(p.status, style=_STATUS_STYLE.get(p.status, "")),
            "detail": Text(terminal_safe(redact(p.detail)))
            + (Text("\nfix: ", style="bold") + Text(terminal_safe(redact(p.fix))) if p.fix else Text("")),
        }
        for p in probes
    ]
    table(rows, ["check", "status", Col("detail", "detail and fix", fit="wrap")], title=title)
