"""Make rewritten HTML publishable: Telegram's tags only, properly nested, permitted links only, within the limit."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from contentq.content.html import (
    Run,
    find_urls,
    join_lines,
    link_allowed,
    merge_runs,
    parse_html,
    render_runs,
    split_lines,
    strip_runs,
    truncate_html,
    visible_len_utf16,
)

OPENERS = {"(": ")", "[": "]", "{": "}", "«": "»", "“": "”", "„": "“"}
_CLOSING = ",.;:!?)]}»”…"
_BLANKS = " \t\u00a0"


@dataclass
class Finalized:
    html: str
    truncated: bool = False
    notes: list[str] = field(default_factory=list)
    """What was changed and why, for the job log."""


def _neighbour(text: str, gone: list[bool], index: int, step: int) -> int:
    """The nearest index from `index` (stepping by `step`) whose character is kept; -1 or len(text) at the ends."""
    while 0 <= index < len(text) and gone[index]:
        index += step
    return index


_POINTER = re.compile(
    r"(?i)(?:(?:см|see|via|source|источник|фото|photo|подробнее|ссылка|link|читать|read|тут|здесь|here)\W*)?"
)
"""What brackets may hold besides a removed link or mention and still go with it: "(см. https://…)", "(via @x)"."""


def _brackets_around(text: str, gone: list[bool], start: int, end: int) -> tuple[int, int] | None:
    """The span of the brackets (on the same line) around [start, end) that hold nothing else once it is gone
    but a word pointing at it ("(@durov)", "[ https://x ]", "(источник: @x)"), or None."""
    left = start - 1
    while left >= 0 and text[left] != "\n" and (gone[left] or text[left] not in OPENERS):
        left -= 1
    if left < 0 or text[left] not in OPENERS:
        return None
    right = end
    while right < len(text) and text[right] != "\n" and (gone[right] or text[right] != OPENERS[text[left]]):
        right += 1
    if right >= len(text) or text[right] != OPENERS[text[left]]:
        return None
    inside = "".join(ch for index, ch in enumerate(text[left + 1 : right], left + 1) if not gone[index])
    return (left, right + 1) if _POINTER.fullmatch(inside.strip()) else None


def _expand(text: str, gone: list[bool], start: int, end: int) -> None:
    """Mark [start, end) removed, with what it leaves behind: brackets around nothing but it, and its own space.

    "Дуров (@durov) сказал" loses " (@durov)", "says @x." loses " @x", "@x writes" at a line start loses "@x ";
    every other space stays as sent."""
    for index in range(start, end):
        gone[index] = True
    while (pair := _brackets_around(text, gone, start, end)) is not None:  # innermost first
        for index in range(pair[0], pair[1]):
            gone[index] = True
        start, end = pair
    left = _neighbour(text, gone, start - 1, -1)
    right = _neighbour(text, gone, end, 1)
    after = text[right] if right < len(text) else "\n"
    if left >= 0 and text[left] in _BLANKS and (after in _BLANKS or after == "\n" or after in _CLOSING):
        while left >= 0 and (gone[left] or text[left] in _BLANKS):  # the space before it: "says @x." → "says."
            gone[left] = True
            left -= 1
    elif (left < 0 or text[left] == "\n" or text[left] in OPENERS) and after in _BLANKS:
        while right < len(text) and (gone[right] or text[right] in _BLANKS):  # at a line start: the space after
            gone[right] = True
            right += 1


def join_kept(lines: list[list[Run] | None]) -> list[Run]:
    """Lines joined again, None for a line removed whole: a removed line takes its line break with it, and a
    blank line that would then double another one (the paragraph break around a removed paragraph) goes too.
    Blank lines the text was sent with stay as they were."""
    out: list[list[Run]] = []
    removed_since = False
    for line in lines:
        if line is None:
            removed_since = True
            continue
        blank = not "".join(r.text for r in line).strip()
        if blank and removed_since and (not out or not "".join(r.text for r in out[-1]).strip()):
            continue
        removed_since = removed_since and blank
        out.append(line)
    return join_lines(out)


def cut_spans(runs: list[Run], spans: Iterable[tuple[int, int]]) -> list[Run]:
    """The runs without the spans [start, end) of their joined text. Each removal takes with it what it alone
    leaves behind (its space on one side, brackets around nothing else, its line when nothing else is left
    on it); every other character, spaces included, stays as it was."""
    spans = sorted((s, e) for s, e in spans if s < e)
    if not spans:
        return runs
    text = "".join(r.text for r in runs)
    gone = [False] * len(text)
    for start, end in reversed(spans):
        _expand(text, gone, start, end)
    kept: list[Run] = []
    position = 0
    for run in runs:
        piece = "".join(ch for ch, out in zip(run.text, gone[position : position + len(run.text)], strict=True)
                        if not out)  # fmt: skip
        position += len(run.text)
        kept.append(Run(piece, run.tags))
    # Lines the removals emptied go whole (their text was removed, what is left is space).
    touched: set[int] = set()
    line = 0
    for index, char in enumerate(text):
        if char == "\n":
            line += 1
        elif gone[index]:
            touched.add(line)
    lines: list[list[Run] | None] = []
    for number, line_runs in enumerate(split_lines(kept)):
        empty = not "".join(r.text for r in line_runs).strip()
        lines.append(None if number in touched and empty else line_runs)
    return join_kept(lines)


def remove_links(runs: list[Run], permitted: Iterable[str]) -> tuple[list[Run], list[str]]:
    """Unwrap <a> elements and delete bare URLs whose target is not permitted; returns the removed links.

    Bare URLs are looked for in the visible text as a whole, as Telegram links it: formatting does not split
    one (`<b>evil</b>.com/x` is the link `evil.com/x`). Text inside kept links and code is not searched. A
    removed URL takes its own space with it (see `cut_spans`); the rest of the spacing stays as sent.
    """
    permitted = list(permitted)
    removed: list[str] = []
    unwrapped: list[Run] = []
    for run in runs:
        tags = []
        for tag in run.tags:
            if tag.name == "a" and not link_allowed(tag.href or "", permitted):
                removed.append(tag.href or "")
                continue
            tags.append(tag)
        unwrapped.append(Run(run.text, tuple(tags)))
    # The searchable text: kept links and code blanked out (a space ends any URL), same length as the runs.
    searchable = "".join(
        " " * len(r.text) if r.has("code", "pre") or any(t.name == "a" for t in r.tags) else r.text for r in unwrapped
    )
    cuts: list[tuple[int, int]] = []
    for start, end, url in find_urls(searchable):
        if not link_allowed(url, permitted):
            removed.append(url)
            cuts.append((start, end))
    return cut_spans(merge_runs(unwrapped), cuts), list(dict.fromkeys(removed))


def finalize_html(
    html: str, *, permitted_links: Iterable[str] | None, limit: int | None, suffix_html: str = ""
) -> Finalized:
    """Repair, filter links (None: keep all) and cut `html` to `limit` visible UTF-16 units (None: no cut).

    Spacing stays as sent: only what a removal leaves behind goes with it, and the text's ends are trimmed (as
    Telegram trims a message). A suffix such as a signature is added after the cut; its length is kept free.
    """
    parsed = parse_html(html)
    notes = [f"repaired: {problem}" for problem in parsed.problems]
    runs, removed = (parsed.runs, []) if permitted_links is None else remove_links(parsed.runs, permitted_links)
    if removed:
        notes.append("removed links not in the donor post or allowed_links: " + ", ".join(removed))
    body = render_runs(strip_runs(runs))
    suffix = f"\n\n{suffix_html}" if suffix_html and body else suffix_html
    truncated = False
    if limit is not None:
        room = max(0, limit - visible_len_utf16(suffix))
        body, truncated = truncate_html(body, room)
    if truncated:
        notes.append(f"cut to {limit} characters (UTF-16 units)")
    return Finalized(html=body + suffix, truncated=truncated, notes=notes)
