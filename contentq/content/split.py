"""Long Telegram HTML as several messages: split at paragraph, line, sentence, then word boundaries.

Each part is at most `limit` visible UTF-16 units (what Telegram counts). A cut never falls inside a
link, a custom emoji or inline code when another place will do, nor inside a surrogate pair, a
combining sequence or a ZWJ emoji sequence. Formatting that spans a cut (bold, a blockquote, a code
block) is closed at the end of one part and opened again at the start of the next: parts are rendered
from runs (see content/html.py), so each one is well-formed on its own. The whitespace at a cut is
dropped (Telegram trims a message's ends anyway); every other character of the text is kept, in order.

Also here: the other publish-time text decisions that travel with splitting — the "1/3" numbering, the
`forward_credit` template, and custom emoji turned into their plain fallback for an account that cannot
send them.
"""

from __future__ import annotations

import string
from collections.abc import Callable

from contentq.content.html import (
    ELLIPSIS,
    Run,
    _safe_index,
    drop_tags,
    escape_attr,
    escape_text,
    merge_runs,
    parse_html,
    render_runs,
    strip_runs,
    validate_html,
)
from contentq.content.utf16 import utf16_len, utf16_to_index
from contentq.errors import ContentqError

_SENTENCE_END = ".!?…"
_CLOSERS = "\"'»”’)]"
_ATOMIC = frozenset({"a", "tg-emoji"})
"""Entities kept whole when the cut can go elsewhere (inline code too, but not a code block: it may be long)."""

CREDIT_FIELDS = frozenset({"name", "link"})


class SplitError(ContentqError):
    """The text cannot be split under the limit (the limit is too small)."""


def _atomic_spans(runs: list[Run]) -> list[tuple[int, int]]:
    """(start, end) character ranges of the entities a cut should not enter, one per element."""
    spans: dict[int, list[int]] = {}
    position = 0
    for run in runs:
        end = position + len(run.text)
        for tag in run.tags:
            inline_code = tag.name == "code" and not run.has("pre")
            if tag.name in _ATOMIC or inline_code:
                span = spans.setdefault(id(tag), [position, end])
                span[1] = end
        position = end
    return [(start, end) for start, end in spans.values()]


def _slice(runs: list[Run], start: int, end: int) -> list[Run]:
    out: list[Run] = []
    position = 0
    for run in runs:
        lo, hi = max(start - position, 0), min(end - position, len(run.text))
        if lo < hi:
            out.append(Run(run.text[lo:hi], run.tags))
        position += len(run.text)
    return out


def _cut(text: str, pos: int, limit: int, atomic: list[tuple[int, int]]) -> int:
    """Where the part starting at `pos` ends: a character index > pos, at most `limit` units further."""
    fits = pos + utf16_to_index(text[pos:], limit)
    if fits <= pos:
        raise SplitError(f"a limit of {limit} UTF-16 units cannot hold a single character here")

    def clean(index: int) -> bool:
        return not any(start < index < end for start, end in atomic) and _safe_index(text, index, []) == index

    def last(floor: int, boundary: Callable[[int], bool]) -> int | None:
        for index in range(fits, floor, -1):
            if index < len(text) and boundary(index) and clean(index):
                return index
        return None

    half = pos + (fits - pos) // 2
    candidates: list[tuple[int, Callable[[int], bool]]] = [
        (half, lambda i: text[i] == "\n" and text[i - 1] == "\n"),  # a paragraph ends
        (half, lambda i: text[i] == "\n"),  # a line ends
        (half, lambda i: text[i].isspace() and (text[i - 1] in _SENTENCE_END or (
            text[i - 1] in _CLOSERS and i - pos >= 2 and text[i - 2] in _SENTENCE_END))),  # a sentence ends
        (pos, lambda i: text[i].isspace()),  # a word ends
    ]  # fmt: skip
    for floor, boundary in candidates:
        found = last(floor, boundary)
        if found is not None:
            return found
    # No boundary: a hard cut, outside entities and grapheme clusters when that leaves something.
    index = _safe_index(text, fits, atomic)
    if index <= pos:
        index = _safe_index(text, fits, [])
    return index if index > pos else fits


def split_runs(runs: list[Run], limit: int) -> list[list[Run]]:
    """The runs as parts of at most `limit` visible UTF-16 units each; whitespace at the cuts is dropped."""
    if limit < 1:
        raise SplitError(f"cannot split text into parts of {limit} characters")
    runs = merge_runs(runs)
    text = "".join(r.text for r in runs)
    atomic = _atomic_spans(runs)
    parts: list[list[Run]] = []
    pos = len(text) - len(text.lstrip())
    while pos < len(text):
        rest = text[pos:]
        end = len(text) if utf16_len(rest.rstrip()) <= limit else _cut(text, pos, limit, atomic)
        part = strip_runs(_slice(runs, pos, end)) if text[pos:end].strip() else []
        if part:
            parts.append(part)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return parts


def _numbered(parts: list[list[Run]]) -> list[list[Run]]:
    total = len(parts)
    return [merge_runs([*part, Run(f"\n\n{number}/{total}")]) for number, part in enumerate(parts, 1)]


def split_html(html: str, limit: int, *, number: bool = False) -> list[str]:
    """Telegram HTML as parts of at most `limit` visible UTF-16 units; [html] unchanged when it fits.

    HTML that is not well-formed comes back repaired (content/html.py's lenient reading), so every part
    is valid Telegram HTML.

    With `number`, a post sent as several parts ends each one with "1/3", "2/3", … (within the limit).
    """
    parsed = parse_html(html)
    if not parsed.text.strip():
        return []
    if utf16_len(parsed.text) <= limit and not parsed.problems:
        return [html]
    parts = split_runs(parsed.runs, limit)
    if number and len(parts) > 1:
        count = len(parts)
        for _ in range(4):  # the numbering's room depends on the count of parts, which depends on the room
            room = limit - utf16_len(f"\n\n{count}/{count}")
            if room < 1:
                raise SplitError(f"a limit of {limit} leaves no room for part numbers")
            parts = split_runs(parsed.runs, room)
            if len(str(len(parts))) <= len(str(count)):
                break
            count = len(parts)
        parts = _numbered(parts)
    return [render_runs(part) for part in parts]


def truncate(html: str, limit: int) -> tuple[str, bool]:
    """`long_text = "truncate"`: what fits in `limit` units, cut where a part would end, then an ellipsis that
    says text is missing (also after a full sentence). Returns the HTML (unchanged when it fits) and whether it
    was cut."""
    parsed = parse_html(html)
    if utf16_len(parsed.text) <= limit and not parsed.problems:
        return html, False
    if utf16_len(parsed.text.strip()) <= limit:
        return render_runs(strip_runs(parsed.runs)), False
    first = split_runs(parsed.runs, max(1, limit - utf16_len(" " + ELLIPSIS)))[0]
    last = first[-1]
    mark = ELLIPSIS if last.text[-1:].isalnum() else " " + ELLIPSIS
    tags = tuple(t for t in last.tags if t.name not in _ATOMIC and t.name != "code")
    return render_runs(merge_runs([*first, Run(mark, tags)])), True


# -- custom emoji -------------------------------------------------------------------------------------


def custom_emoji_count(html: str) -> int:
    """How many custom emoji (<tg-emoji emoji-id>) the HTML holds."""
    seen = {id(tag) for run in parse_html(html).runs for tag in run.tags if tag.name == "tg-emoji"}
    return len(seen)


def plain_emoji(html: str) -> str:
    """Custom emoji replaced by their fallback (the plain emoji inside the tag), all else kept."""
    return render_runs(drop_tags(parse_html(html).runs, lambda tag: tag.name == "tg-emoji"))


# -- forward credit -----------------------------------------------------------------------------------


def check_credit_template(template: str) -> str:
    """A route's `forward_credit`: Telegram HTML with only {name} and {link}; raises ValueError saying what is wrong."""
    if not template.strip():
        return ""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(
            f"forward_credit {template!r} is not a valid template ({exc}); write {{{{ for a brace"
        ) from None
    unknown = sorted(fields - CREDIT_FIELDS)
    if unknown:
        raise ValueError(f"forward_credit uses {{{unknown[0]}}}: only {{name}} and {{link}} are filled in")
    problems = validate_html(template.format(name="Name", link="https://t.me/name"))
    if problems:
        raise ValueError(f"forward_credit is not valid Telegram HTML: {'; '.join(problems)}")
    return template


def credit_html(template: str, *, name: str | None, link: str | None) -> str | None:
    """The credit for a forwarded post, or None when the template needs something the post does not know."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    if ("name" in fields and not name) or ("link" in fields and not link):
        return None
    return template.format(name=escape_text(name or ""), link=escape_attr(link or ""))
