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

_SPACES = re.compile(r"[ \t\u00a0]{2,}")
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+([,.;:!?])")


@dataclass
class Finalized:
    html: str
    truncated: bool = False
    notes: list[str] = field(default_factory=list)
    """What was changed and why, for the job log."""


def remove_links(runs: list[Run], permitted: Iterable[str]) -> tuple[list[Run], list[str]]:
    """Unwrap <a> elements and delete bare URLs whose target is not permitted; returns the removed links.

    Bare URLs are looked for in the visible text as a whole, as Telegram links it: formatting does not split
    one (`<b>evil</b>.com/x` is the link `evil.com/x`). Text inside kept links and code is not searched.
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
    out: list[Run] = []
    offset = 0
    for run in unwrapped:
        text, base = run.text, offset
        offset += len(run.text)
        for start, end in reversed(cuts):
            lo, hi = max(start - base, 0), min(end - base, len(run.text))
            if lo < hi:
                text = text[:lo] + text[hi:]
        out.append(Run(text, run.tags))
    return merge_runs(out), list(dict.fromkeys(removed))


def _code_lines(lines: list[list[Run]]) -> set[int]:
    """Indices of the lines inside a code block (`pre`): with code, or blank between two lines of one block."""
    code = {index for index, line in enumerate(lines) if line and all(r.has("pre") for r in line)}
    last_pre, blanks = None, []
    for index, line in enumerate(lines):
        if not line:
            blanks.append(index)
            continue
        first = next((t for t in line[0].tags if t.name == "pre"), None)
        if first is not None and first is last_pre:
            code.update(blanks)
        blanks = []
        last_pre = next((t for t in line[-1].tags if t.name == "pre"), None)
    return code


def tidy(runs: list[Run]) -> list[Run]:
    """Collapse runs of spaces and of blank lines left by removals; trim line ends and the whole text."""
    lines = []
    blank = 0
    source = split_lines(runs)
    code = _code_lines(source)
    for index, line in enumerate(source):
        if index in code:  # a code block's lines, blank or indented, are kept as they are
            lines.append(line)
            blank = 0
            continue
        cleaned = [
            r if r.has("code", "pre") else Run(_SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", r.text)), r.tags)
            for r in line
        ]
        if cleaned and not cleaned[-1].has("code", "pre"):
            cleaned[-1] = Run(cleaned[-1].text.rstrip(" \t"), cleaned[-1].tags)
        cleaned = [r for r in cleaned if r.text]
        if not "".join(r.text for r in cleaned).strip():
            blank += 1
            if blank > 1:
                continue
            cleaned = []
        else:
            blank = 0
        lines.append(cleaned)
    return strip_runs(join_lines(lines))


def finalize_html(
    html: str, *, permitted_links: Iterable[str] | None, limit: int | None, suffix_html: str = ""
) -> Finalized:
    """Repair, filter links (None: keep all), tidy and cut `html` to `limit` visible UTF-16 units (None: no cut).

    A suffix such as a signature is added after the cut; its length is kept free.
    """
    parsed = parse_html(html)
    notes = [f"repaired: {problem}" for problem in parsed.problems]
    runs, removed = (parsed.runs, []) if permitted_links is None else remove_links(parsed.runs, permitted_links)
    if removed:
        notes.append("removed links not in the donor post or allowed_links: " + ", ".join(removed))
    body = render_runs(tidy(runs))
    suffix = f"\n\n{suffix_html}" if suffix_html and body else suffix_html
    truncated = False
    if limit is not None:
        room = max(0, limit - visible_len_utf16(suffix))
        body, truncated = truncate_html(body, room)
    if truncated:
        notes.append(f"cut to {limit} characters (UTF-16 units)")
    return Finalized(html=body + suffix, truncated=truncated, notes=notes)
