"""Telegram HTML: the tag set Telegram accepts, parsed, validated, measured in UTF-16 units and cut.

A Telegram message is text plus entities (ranges with a type), not a document tree, and entities may
overlap. So HTML is read into *runs*: pieces of text, each with the stack of formatting elements open
over it. Rendering runs always produces properly nested HTML (an overlap is closed and reopened), so
anything that goes through `parse_html` → `render_runs` is safe to send. Lengths are what Telegram
counts: the visible text (entities decoded) in UTF-16 code units.

Supported, as in the Bot API's HTML mode: b/strong, i/em, u/ins, s/strike/del, span class="tg-spoiler",
tg-spoiler, a href, code (class="language-…" inside pre), pre, blockquote (expandable), tg-emoji emoji-id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser

from contentq.content.utf16 import grapheme_boundary, utf16_len, utf16_to_index

SUPPORTED_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre",
     "blockquote", "tg-emoji"}
)  # fmt: skip
"""Tags Telegram's HTML parse mode understands."""

_VOID = frozenset({"br", "img", "hr", "input", "meta", "link", "wbr", "source", "area", "col", "embed", "param"})
_BLOCKS = frozenset({"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "tr"})
_ATOMIC = frozenset({"tg-emoji"})  # never cut inside: a custom emoji is one unit

ELLIPSIS = "…"

_URL = re.compile(r"(?i)(?:\bhttps?://|\bwww\.|(?<![\w@/.])(?:t|telegram)\.me/)[^\s<>\"'«»]+")

_LINK_TLDS = frozenset(
    {
        "com", "net", "org", "info", "biz", "edu", "gov", "mil", "int", "mobi", "xyz", "io", "co", "ai", "me", "ly",
        "gl", "gg", "fm", "tv", "ws", "vc", "cx", "la", "tk", "ml", "ga", "cf", "gq", "su", "ru", "ua", "by", "kz",
        "uz", "kg", "tj", "az", "ge", "lv", "lt", "ee", "fi", "de", "fr", "es", "pt", "nl", "ch", "se", "dk", "cz",
        "sk", "hu", "ro", "bg", "gr", "hr", "si", "eu", "uk", "ie", "tr", "il", "ir", "ae", "sa", "qa", "za", "ng",
        "ke", "cn", "jp", "kr", "tw", "hk", "sg", "th", "vn", "ph", "au", "nz", "ca", "mx", "br", "ar", "cl", "pe",
        "ve", "рф", "рус", "укр", "бел",
    }
)  # fmt: skip
"""Top-level domains after which a bare name (`example.com`, `bit.ly/x`) is a link, as Telegram links it.

Common words that are also TLDs (.today, .news, .site …) are left out: a missing space after a full stop
("there.Today") must not turn text into a link that is then removed."""

_PATH_ONLY_TLDS = frozenset(
    {
        "py", "js", "md", "sh", "rs", "pl", "so", "cc", "in", "it", "is", "at", "be", "to", "no", "us", "am", "id",
        "my", "do", "sc", "ps",
    }
)  # fmt: skip
"""Real TLDs that are also file extensions or words ("file.py", "Node.js", "go.to"): a link only with a path."""

_BARE_DOMAIN = re.compile(
    r"(?<![\w@/.\-])((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+([^\W\d_]{2,24}))(?![\w-])"
    r"(?::\d{1,5}(?![\w-]))?([/?#][^\s<>\"'«»]*)?"
)
_URL_TRAILING = ".,;:!?)]}»\"'…"
_SENTENCE_END = ".!?…"
_CLOSERS = "\"'»”’)]"


@dataclass(eq=False)
class Tag:
    """One formatting element. Compared by identity: two adjacent <b> elements are two entities."""

    name: str
    attrs: tuple[tuple[str, str | None], ...] = ()

    def attr(self, key: str) -> str | None:
        for name, value in self.attrs:
            if name == key:
                return value
        return None

    @property
    def href(self) -> str | None:
        return self.attr("href") if self.name == "a" else None

    def open(self) -> str:
        parts = [self.name]
        for name, value in self.attrs:
            parts.append(name if value is None else f'{name}="{escape_attr(value)}"')
        return "<" + " ".join(parts) + ">"

    def close(self) -> str:
        return f"</{self.name}>"


@dataclass(frozen=True)
class Run:
    """Text with the formatting open over it, outermost first."""

    text: str
    tags: tuple[Tag, ...] = ()

    def has(self, *names: str) -> bool:
        return any(t.name in names for t in self.tags)


@dataclass
class Parsed:
    runs: list[Run] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(r.text for r in self.runs)

    def html(self) -> str:
        return render_runs(self.runs)


SAFE_SCHEMES = frozenset({"http", "https", "tg", "mailto"})
"""The only link schemes that survive anywhere (rewriters, collect, import, outbox, publish); a link
without a scheme (`example.com`, as Telegram writes bare URLs) is kept too."""

_SCHEME = re.compile(r"^([^:/?#]*):")
_URL_IGNORED = re.compile(r"[\x00-\x20\x7f]+")  # browsers drop these inside a scheme: "java\tscript:"


def safe_href(url: str | None) -> str | None:
    """`url` (stripped) when its scheme may be linked to, else None: `javascript:`, `data:`, `vbscript:`,
    `file:` … are never links, their anchor text stays as plain text."""
    if not url or not url.strip():
        return None
    match = _SCHEME.match(_URL_IGNORED.sub("", url))
    if match is not None and match.group(1).lower() not in SAFE_SCHEMES:
        return None
    return url.strip()


class HtmlError(ValueError):
    """HTML that cannot be used as Telegram HTML; `problems` lists why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(value: str) -> str:
    return escape_text(value).replace('"', "&quot;")


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.runs: list[Run] = []
        self.problems: list[str] = []
        # Open elements: (tag name, Tag) or (tag name, None) for an element whose tag is dropped (unwrapped).
        self.stack: list[tuple[str, Tag | None]] = []

    # -- helpers ---------------------------------------------------------------------------------

    def _problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    def _open_tags(self) -> tuple[Tag, ...]:
        return tuple(tag for _, tag in self.stack if tag is not None)

    def _add_text(self, text: str) -> None:
        if not text:
            return
        tags = self._open_tags()
        if self.runs and self.runs[-1].tags == tags:
            self.runs[-1] = Run(self.runs[-1].text + text, tags)
        else:
            self.runs.append(Run(text, tags))

    def _build(self, name: str, attrs: list[tuple[str, str | None]]) -> Tag | None:
        """The Tag to keep for a supported element, or None (with a problem noted) to unwrap it."""
        values = {k.lower(): v for k, v in attrs}
        open_names = [tag.name for tag in self._open_tags()]
        inside_pre, inside_code = "pre" in open_names, "code" in open_names
        if inside_code or (inside_pre and name != "code"):
            self._problem(f"<{name}> inside <{'code' if inside_code else 'pre'}> (code blocks hold plain text)")
            return None
        if name == "a":
            href = (values.get("href") or "").strip()
            if not href:
                self._problem("<a> without href")
                return None
            if "a" in open_names:
                self._problem("<a> inside <a>")
                return None
            if safe_href(href) is None:  # the one place every HTML contentq reads or writes passes
                self._problem(f"link scheme not allowed ({', '.join(sorted(SAFE_SCHEMES))} only)")
                return None
            return Tag("a", (("href", href),))
        if name == "span":
            if (values.get("class") or "").strip() != "tg-spoiler":
                self._problem('<span> without class="tg-spoiler"')
                return None
            return Tag("span", (("class", "tg-spoiler"),))
        if name == "blockquote":
            if "blockquote" in open_names:
                self._problem("<blockquote> inside <blockquote>")
                return None
            return Tag("blockquote", (("expandable", None),) if "expandable" in values else ())
        if name == "code":
            language = (values.get("class") or "").strip()
            return Tag("code", (("class", language),) if inside_pre and language.startswith("language-") else ())
        if name == "tg-emoji":
            emoji_id = (values.get("emoji-id") or "").strip()
            if not emoji_id.isdigit():
                self._problem("<tg-emoji> without a numeric emoji-id")
                return None
            return Tag("tg-emoji", (("emoji-id", emoji_id),))
        return Tag(name)

    # -- HTMLParser callbacks ----------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        name = tag.lower()
        if name == "br":
            self._add_text("\n")
            return
        if name in _VOID:
            self._problem(f"unsupported tag <{name}>")
            return
        if name not in SUPPORTED_TAGS:
            self._problem(f"unsupported tag <{name}>")
            self.stack.append((name, None))
            return
        self.stack.append((name, self._build(name, attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        name = tag.lower()
        if name == "br" or name in _VOID:
            self.handle_starttag(tag, attrs)
        elif name not in SUPPORTED_TAGS:
            self._problem(f"unsupported tag <{name}>")
        # A self-closed supported element (<b/>) has no text: nothing to keep.

    def handle_endtag(self, tag: str) -> None:
        name = tag.lower()
        if name == "br" or name in _VOID:
            return
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == name:
                if index != len(self.stack) - 1 and self.stack[index][1] is not None:
                    inner = self.stack[-1][0]
                    self._problem(f"</{name}> closes before </{inner}>: tags are not properly nested")
                # The elements opened inside stay open: the overlap is closed and reopened on render.
                del self.stack[index]
                break
        else:
            if name in SUPPORTED_TAGS:
                self._problem(f"</{name}> without a matching <{name}>")
            return
        if name in _BLOCKS:
            self._add_text("\n")

    def handle_data(self, data: str) -> None:
        self._add_text(data)

    def finish(self) -> Parsed:
        self.close()
        for name, tag in self.stack:
            if tag is not None:
                self._problem(f"<{name}> is never closed")
        return Parsed(self.runs, self.problems)


def parse_html(html: str) -> Parsed:
    """Read Telegram HTML leniently: unsupported tags are unwrapped, overlaps resolved; `problems` says what."""
    parser = _Parser()
    parser.feed(html or "")
    return parser.finish()


def render_runs(
    runs: Iterable[Run],
    *,
    open_tag: Callable[[Tag], str] = Tag.open,
    close_tag: Callable[[Tag], str] = Tag.close,
    text: Callable[[Run], str] = lambda run: escape_text(run.text),
) -> str:
    """Properly nested HTML for runs; elements without text are left out. The callables render a tag and a run's
    text (Telegram HTML by default; the preview renders display HTML with the same nesting)."""
    out: list[str] = []
    open_tags: list[Tag] = []
    for run in runs:
        if not run.text:
            continue
        common = 0
        while common < min(len(open_tags), len(run.tags)) and open_tags[common] is run.tags[common]:
            common += 1
        out.extend(close_tag(tag) for tag in reversed(open_tags[common:]))
        out.extend(open_tag(tag) for tag in run.tags[common:])
        open_tags = list(run.tags)
        out.append(text(run))
    out.extend(close_tag(tag) for tag in reversed(open_tags))
    return "".join(out)


def normalize_html(html: str) -> str:
    return render_runs(parse_html(html).runs)


def validate_html(html: str) -> list[str]:
    """Problems that make `html` unfit as-is for Telegram (unsupported tags, bad nesting); [] when fine."""
    return parse_html(html).problems


def html_to_text(html: str) -> str:
    return parse_html(html).text


def visible_len_utf16(html: str) -> int:
    """Length as Telegram counts it: the visible text, in UTF-16 code units."""
    return utf16_len(html_to_text(html))


def text_html(text: str) -> str:
    """Plain text as Telegram HTML."""
    return escape_text(text)


# -- links -----------------------------------------------------------------------------------------


def find_urls(text: str) -> list[tuple[int, int, str]]:
    """Bare URLs in plain text (Telegram links them itself): (start, end, url).

    Besides `https://…`, `www.…` and `t.me/…`, a bare domain name counts (`evil.com/path`, `bit.ly/x`,
    `пример.рф`) when its top-level domain is a known one; TLDs that double as file extensions or words
    (`file.py`, `Node.js`) count only with a path (`app.py/x`). Versions, abbreviations and numbers
    ("v1.2", "e.g.", "3.14") are not links.
    """
    found: list[tuple[int, int, str]] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_URL_TRAILING)
        if len(url) > 4:
            found.append((match.start(), match.start() + len(url), url))
    for match in _BARE_DOMAIN.finditer(text):
        start = match.start()
        if any(s <= start < e for s, e, _ in found):
            continue  # part of a URL found above
        tld = match.group(2).lower()
        url = match.group(0).rstrip(_URL_TRAILING)
        has_path = match.group(3) is not None and start + len(url) > match.start(3)
        if tld in _LINK_TLDS or (tld in _PATH_ONLY_TLDS and has_path):
            found.append((start, start + len(url), url))
    return sorted(found)


def collect_links(html: str) -> list[str]:
    """Every link of a post: <a href> targets and bare URLs in the text, in order, without repeats."""
    links: list[str] = []
    parsed = parse_html(html)
    seen_anchors: set[int] = set()
    for run in parsed.runs:
        for tag in run.tags:
            if tag.name == "a" and id(tag) not in seen_anchors:
                seen_anchors.add(id(tag))
                links.append(tag.href or "")
        if not run.has("code", "pre"):
            links.extend(url for _, _, url in find_urls(run.text))
    return list(dict.fromkeys(link for link in links if link))


def normalize_link(url: str) -> str:
    """For comparing links: no scheme, no 'www.', no trailing slash, lower-case host."""
    url = url.strip()
    url = re.sub(r"(?i)^https?://", "", url)
    url = re.sub(r"(?i)^www\.", "", url)
    host, slash, rest = url.partition("/")
    return (host.lower() + slash + rest).rstrip("/")


def link_allowed(url: str, allowed: Iterable[str]) -> bool:
    """True when `url` is one of `allowed`, or lies under one of them (a site, a path prefix)."""
    wanted = normalize_link(url)
    for entry in allowed:
        base = normalize_link(entry)
        if not base:
            continue
        if wanted == base or wanted.startswith(base + "/") or wanted.startswith(base + "?"):
            return True
        if "/" not in base and "." in base and wanted.split("/", 1)[0].endswith("." + base):
            return True  # a subdomain of an allowed site
    return False


# -- editing runs ----------------------------------------------------------------------------------


def drop_tags(runs: Iterable[Run], predicate: Callable[[Tag], bool]) -> list[Run]:
    """Unwrap the elements `predicate` selects (their text stays)."""
    return merge_runs(Run(r.text, tuple(t for t in r.tags if not predicate(t))) for r in runs)


def map_text(runs: Iterable[Run], fn: Callable[[str], str], *, skip_code: bool = True) -> list[Run]:
    """Apply `fn` to the text of every run (not inside code or pre unless skip_code is False)."""
    return merge_runs(r if skip_code and r.has("code", "pre") else Run(fn(r.text), r.tags) for r in runs)


def merge_runs(runs: Iterable[Run]) -> list[Run]:
    merged: list[Run] = []
    for run in runs:
        if not run.text:
            continue
        if merged and merged[-1].tags == run.tags:
            merged[-1] = Run(merged[-1].text + run.text, run.tags)
        else:
            merged.append(run)
    return merged


def split_lines(runs: Iterable[Run]) -> list[list[Run]]:
    """Runs per line of text (the newlines themselves are left out)."""
    lines: list[list[Run]] = [[]]
    for run in runs:
        pieces = run.text.split("\n")
        for index, piece in enumerate(pieces):
            if index:
                lines.append([])
            if piece:
                lines[-1].append(Run(piece, run.tags))
    return lines


def join_lines(lines: Iterable[list[Run]]) -> list[Run]:
    """Inverse of split_lines: a newline between lines, inside the formatting open on both sides.

    Empty lines take the formatting shared by the nearest non-empty lines around them, so a blank line
    inside a blockquote does not split it in two.
    """
    lines = list(lines)
    firsts: list[tuple[Tag, ...] | None] = [None] * len(lines)
    lasts: list[tuple[Tag, ...] | None] = [None] * len(lines)
    last: tuple[Tag, ...] | None = None
    for index, line in enumerate(lines):
        if line:
            last = line[-1].tags
        lasts[index] = last
    first: tuple[Tag, ...] | None = None
    for index in range(len(lines) - 1, -1, -1):
        if lines[index]:
            first = lines[index][0].tags
        firsts[index] = first
    out: list[Run] = []
    for index, line in enumerate(lines):
        if index:
            before, after = lasts[index - 1] or (), firsts[index] or ()
            shared: list[Tag] = []
            for a, b in zip(before, after, strict=False):
                if a is not b:
                    break
                shared.append(a)
            out.append(Run("\n", tuple(shared)))
        out.extend(line)
    return merge_runs(out)


def slice_runs(runs: Iterable[Run], length: int) -> list[Run]:
    """The first `length` characters (Python str indices) of the runs' text, formatting kept."""
    out: list[Run] = []
    remaining = length
    for run in runs:
        if remaining <= 0:
            break
        if len(run.text) <= remaining:
            out.append(run)
            remaining -= len(run.text)
        else:
            out.append(Run(run.text[:remaining], run.tags))
            remaining = 0
    return out


def strip_runs(runs: list[Run]) -> list[Run]:
    """Without leading and trailing whitespace."""
    runs = [r for r in runs if r.text]
    while runs and not runs[0].text.strip():
        runs.pop(0)
    while runs and not runs[-1].text.strip():
        runs.pop()
    if runs:
        runs[0] = Run(runs[0].text.lstrip(), runs[0].tags)
        runs[-1] = Run(runs[-1].text.rstrip(), runs[-1].tags)
    return runs


# -- truncation ------------------------------------------------------------------------------------


def _atomic_spans(runs: list[Run]) -> list[tuple[int, int]]:
    spans, position = [], 0
    for run in runs:
        if run.has(*_ATOMIC):
            spans.append((position, position + len(run.text)))
        position += len(run.text)
    return spans


def _safe_index(text: str, index: int, atomic: list[tuple[int, int]]) -> int:
    """Move a cut left so it splits no custom emoji, combining sequence or ZWJ emoji sequence."""
    for start, end in atomic:
        if start < index < end:
            index = start
    while 0 < index < len(text) and not grapheme_boundary(text, index):  # flags, keycaps, ZWJ sequences, accents
        index -= 1
    return index


def choose_cut(text: str, limit: int, *, atomic: list[tuple[int, int]] | None = None) -> tuple[int, bool]:
    """Where to cut `text` to fit `limit` UTF-16 units: (index, whether to add an ellipsis).

    A sentence or paragraph end in the second half of what fits wins; else the last word boundary,
    then a hard cut, both with an ellipsis (which the limit includes).
    """
    atomic = atomic or []
    fits = utf16_to_index(text, limit)
    floor = fits // 2
    best = -1
    for index in range(fits, max(0, floor - 1), -1):
        if index < len(text) and text[index] == "\n":
            best = index
            break
        before = text[index - 1]
        after = text[index] if index < len(text) else " "
        if before in _SENTENCE_END and (after.isspace() or after in _CLOSERS):
            best = index
            break
        if before in _CLOSERS and index >= 2 and text[index - 2] in _SENTENCE_END and after.isspace():
            best = index
            break
    if best > 0:
        return _safe_index(text, best, atomic), False
    room = utf16_to_index(text, max(0, limit - utf16_len(ELLIPSIS)))
    for index in range(room, floor, -1):
        if index < len(text) and text[index].isspace():
            return _safe_index(text, index, atomic), True
    return _safe_index(text, room, atomic), True


def truncate_html(html: str, limit: int, *, ellipsis: str = ELLIPSIS) -> tuple[str, bool]:
    """Cut `html` to at most `limit` visible UTF-16 units at a sentence or word boundary.

    Open elements are closed, nothing is split inside an entity or a surrogate pair. Returns the HTML
    (unchanged when it fits) and whether it was cut.
    """
    parsed = parse_html(html)
    text = parsed.text
    if utf16_len(text) <= limit:
        return html, False
    cut, add_ellipsis = choose_cut(text, limit, atomic=_atomic_spans(parsed.runs))
    runs = strip_runs(slice_runs(parsed.runs, cut))
    if add_ellipsis and runs and utf16_len("".join(r.text for r in runs) + ellipsis) <= limit:
        last = runs[-1]
        tags = tuple(t for t in last.tags if t.name not in _ATOMIC)
        runs.append(Run(ellipsis, tags))
    return render_runs(merge_runs(runs)), True
