"""Long Telegram HTML as several messages: split at paragraph, line, sentence, then word boundaries.

Each part is at most `limit` visible UTF-16 units (what Telegram counts). A cut never falls inside a
link, a custom emoji or inline code when another place will do, nor inside a grapheme cluster (a flag, a
keycap, a ZWJ family, a letter with its accents: Unicode's extended grapheme clusters, the `regex` module's
`\\X`) unless one cluster is longer than the limit. Formatting that spans a cut (bold, a blockquote, a code
block) is closed at the end of one part and opened again at the start of the next: parts are rendered
from runs (see content/html.py), so each one is well-formed on its own. The whitespace at a cut is
dropped (Telegram trims a message's ends anyway); every other character of the text is kept, in order.
A code block is cut only at a line end, preferably before an unindented line, and its whitespace is kept as
it is; a part that has to start on an indented code line starts with "…" on a line of its own, so Telegram's
trim does not take the indentation.

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
    drop_tags,
    escape_attr,
    escape_text,
    merge_runs,
    parse_html,
    render_runs,
    strip_runs,
    validate_html,
)
from contentq.content.utf16 import grapheme_boundary, utf16_len, utf16_to_index
from contentq.errors import ContentqError

_SENTENCE_END = ".!?…"
_CLOSERS = "\"'»”’)]"
_ATOMIC = frozenset({"a", "tg-emoji"})
"""Entities kept whole when the cut can go elsewhere (inline code too, but not a code block: it may be long)."""

CREDIT_FIELDS = frozenset({"name", "link"})

CODE_CONTINUED = "…"
"""Starts a part that begins inside a code block on an indented line (on a line of its own, before the code)."""


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


def _code_mask(runs: list[Run]) -> bytearray:
    """1 for each character inside a code block (`pre`), whose whitespace is kept as it is."""
    mask = bytearray()
    for run in runs:
        mask.extend((b"\x01" if run.has("pre") else b"\x00") * len(run.text))
    return mask


def _cut(text: str, pos: int, limit: int, atomic: list[tuple[int, int]], code: bytearray) -> int:
    """Where the part starting at `pos` ends: a character index > pos, at most `limit` units further.

    In prose the cut goes at whitespace (dropped); in a code block at the start of a line (the next part begins
    with that line, its indentation kept), an unindented line preferred to an indented one."""
    fits = pos + utf16_to_index(text[pos:], limit)
    if fits <= pos:
        raise SplitError(f"a limit of {limit} UTF-16 units cannot hold a single character here")

    def clean(index: int) -> bool:
        return not any(start < index < end for start, end in atomic) and grapheme_boundary(text, index)

    def last(floor: int, boundary: Callable[[int], bool]) -> int | None:
        for index in range(fits, floor, -1):
            if index < len(text) and boundary(index) and clean(index):
                return index
        return None

    def line(i: int) -> bool:  # a code line with text starts here (characters tested first: the cheap part)
        return text[i - 1] == "\n" and text[i] != "\n" and bool(code[i])

    def top_line(i: int) -> bool:  # … without indentation
        return text[i - 1] == "\n" and not text[i].isspace() and bool(code[i])

    def after_blank(i: int) -> bool:  # … after a blank line
        return i - pos >= 2 and text[i - 2] == "\n" and line(i)

    def prose_space(i: int) -> bool:
        return text[i].isspace() and not code[i]

    half, quarter = pos + (fits - pos) // 2, pos + (fits - pos) // 4
    in_code = code.find(1, pos, fits) != -1  # a code block in reach (most texts have none: skip its tests)
    candidates: list[tuple[int, Callable[[int], bool]]] = [
        (half, lambda i: (text[i] == "\n" and text[i - 1] == "\n" and not code[i])
         or (in_code and top_line(i) and after_blank(i))),  # a paragraph ends (in code: a blank line, then code)
        (half, lambda i: (text[i] == "\n" and not code[i]) or (in_code and top_line(i))),  # a line ends
        (half, lambda i: prose_space(i) and (text[i - 1] in _SENTENCE_END or (
            text[i - 1] in _CLOSERS and i - pos >= 2 and text[i - 2] in _SENTENCE_END))),  # a sentence ends
    ]  # fmt: skip
    if in_code:
        candidates += [
            (quarter, top_line),  # an unindented code line, even early: Telegram trims a message's leading spaces
            (half, after_blank),  # an indented code line after a blank line (a method, a block)
        ]
    candidates += [
        (pos, lambda i: prose_space(i) or line(i)),  # a word ends; any code line
        (pos, lambda i: bool(code[i]) and text[i - 1] in " \t" and not text[i].isspace()),  # a long code line: a word
    ]
    for floor, boundary in candidates:
        found = last(floor, boundary)
        if found is not None:
            return found
    # No boundary: a hard cut, outside entities and grapheme clusters when that leaves something.
    for outside in (True, False):
        for index in range(fits, pos, -1):
            if grapheme_boundary(text, index) and not (outside and any(s < index < e for s, e in atomic)):
                return index
    return fits  # one grapheme cluster longer than the limit (cut between its code points)


def _continued(runs: list[Run], text: str, pos: int, code: bytearray) -> list[Run]:
    """The mark that starts a part beginning inside a code block on an indented line: Telegram trims a message's
    leading whitespace, so without text before it the line would lose its indentation."""
    if not (code[pos] and text[pos] in " \t" and text[pos - 1] == "\n"):
        return []
    position = 0
    for run in runs:
        if position + len(run.text) > pos:
            tags = tuple(t for t in run.tags if t.name not in ("pre", "code") and t.name not in _ATOMIC)
            return [Run(CODE_CONTINUED + "\n", tags)]
        position += len(run.text)
    return []


def split_runs(runs: list[Run], limit: int) -> list[list[Run]]:
    """The runs as parts of at most `limit` visible UTF-16 units each; whitespace at the cuts is dropped, except
    inside code blocks, which are cut at line ends with every line's indentation kept."""
    if limit < 1:
        raise SplitError(f"cannot split text into parts of {limit} characters")
    runs = merge_runs(runs)
    text = "".join(r.text for r in runs)
    atomic = _atomic_spans(runs)
    code = _code_mask(runs)
    mark = utf16_len(CODE_CONTINUED + "\n")
    parts: list[list[Run]] = []
    pos = len(text) - len(text.lstrip())
    while pos < len(text):
        lead = _continued(runs, text, pos, code) if parts and limit > 2 * mark else []
        room = limit - (mark if lead else 0)
        rest = text[pos:]
        end = len(text) if utf16_len(rest.rstrip()) <= room else _cut(text, pos, room, atomic, code)
        part = strip_runs(lead + _slice(runs, pos, end)) if text[pos:end].strip() else []
        if part:
            parts.append(part)
        pos = end
        while pos < len(text) and text[pos].isspace() and not code[pos]:
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
