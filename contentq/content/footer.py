"""Donor footers and headers: the block a channel repeats at the end (or start) of its posts.

"Подписывайтесь: @donor | Наш чат" under every post is not content: it would make every post look like an
ad for the donor's chat, make two copies of one story from two donors look different, and come back in our
channel through the rewriter. `learn` finds it from the donor's recent posts: a line (its normalised text
and link targets) that is among the last (or first) EDGE_LINES lines of at least `share` of them, given at
least MIN_SAMPLE posts. `strip` then removes such lines (and the route's `footer_patterns`) from the edges
of a post. The channels the learned lines link to or mention are the donor's own (`Footer.refs`), and so are
those of edge lines recurring in at least MIN_REPEAT posts though under the share (a footer the donor adds to
some posts only): a post that names them promotes its own channel, which is not an ad.

`recurring_lines` is the looser rule of the clean rewriter: lines recurring anywhere in recent posts.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from contentq.content.html import (
    Run,
    html_to_text,
    join_lines,
    normalize_link,
    parse_html,
    render_runs,
    split_lines,
    strip_runs,
)

MIN_SAMPLE = 5
"""Posts with text needed before a footer is learned: fewer say nothing about what recurs."""

MIN_REPEAT = 3
"""A footer line recurs in at least this many posts, whatever the share."""

DEFAULT_SHARE = 0.4
"""Share of the sample a line must close (or open) to be the donor's footer (header)."""

EDGE_LINES = 4
"""Lines at each end of a post looked at: a footer is short, the body above it is not."""

WINDOW = 100
"""Newest posts of the donor learned from."""

_CHANNEL_LINK = re.compile(r"(?i)^(?:https?://)?(?:www\.)?(?:t|telegram)\.me/(?:s/)?([a-z]\w{3,31})/?$")
_INVITE = re.compile(r"(?i)^(?:t|telegram)\.me/(?:\+|joinchat/)[\w-]+$")
_MENTION = re.compile(r"(?<![\w@.])@([A-Za-z]\w{3,31})\b")


def normalize_line(line: str) -> str:
    """A line's text for comparing: whitespace collapsed, case folded."""
    return " ".join(line.split()).casefold()


def line_text(line: Sequence[Run]) -> str:
    return "".join(r.text for r in line)


def line_links(line: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(normalize_link(t.href) for r in line for t in r.tags if t.href))


def line_key(line: Sequence[Run]) -> str:
    """What makes two lines the same footer line: the normalised text and the link targets."""
    text = normalize_line(line_text(line))
    links = line_links(line)
    return f"{text} <{' '.join(links)}>" if links else text


def _lines(html: str) -> list[list[Run]]:
    return [line for line in split_lines(parse_html(html).runs) if line_text(line).strip()]


@dataclass(frozen=True)
class Footer:
    """What was learned of one donor: its footer and header lines (keys), and its own channels."""

    trailer: frozenset[str] = frozenset()
    header: frozenset[str] = frozenset()
    refs: frozenset[str] = frozenset()  # '@name' of the channels the lines link to or mention, invite links
    lines: tuple[str, ...] = ()  # the learned lines as they read, for people
    sample: int = 0  # posts learned from

    @property
    def empty(self) -> bool:
        return not self.trailer and not self.header


def _refs(lines: Iterable[Sequence[Run]]) -> frozenset[str]:
    refs: set[str] = set()
    for line in lines:
        for link in line_links(line):
            if (m := _CHANNEL_LINK.match(link)) is not None:
                refs.add("@" + m.group(1).lower())
            elif _INVITE.match(link):
                refs.add(link)  # the donor's private chat: its normalised link (content.html.normalize_link)
        refs.update("@" + m.group(1).lower() for m in _MENTION.finditer(line_text(line)))
    return frozenset(refs)


def learn(posts_html: Iterable[str], share: float = DEFAULT_SHARE) -> Footer:
    """The footer and header recurring in these posts (one donor's, newest first); empty when none."""
    trailing: Counter[str] = Counter()
    leading: Counter[str] = Counter()
    example: dict[str, list[Run]] = {}
    sample = 0
    for html in list(posts_html)[:WINDOW]:
        lines = _lines(html)
        if not lines:
            continue
        sample += 1
        edge = min(EDGE_LINES, len(lines) - 1)  # the first (last) line is body, whatever the rest is
        if edge <= 0:
            continue
        for counter, part in ((trailing, lines[-edge:]), (leading, lines[:edge])):
            keys = {line_key(line): line for line in part}
            counter.update(keys.keys())
            for key, line in keys.items():
                example.setdefault(key, line)
    if sample < MIN_SAMPLE:
        return Footer(sample=sample)
    needed = max(MIN_REPEAT, math.ceil(share * sample))
    trailer = frozenset(k for k, n in trailing.items() if n >= needed)
    header = frozenset(k for k, n in leading.items() if n >= needed) - trailer
    learned = [example[k] for k in sorted(trailer | header)]
    # A line closing (opening) fewer posts than the share but at least MIN_REPEAT of them is not stripped, but
    # the channels it names are the donor's too ("Наш чат: t.me/+…" under some posts only): not ads.
    minority = [example[k] for counter in (trailing, leading) for k, n in counter.items() if n >= MIN_REPEAT]
    return Footer(trailer, header, _refs([*learned, *minority]), tuple(line_text(x).strip() for x in learned), sample)


@dataclass(frozen=True)
class Patterns:
    """A route's `footer_patterns`: 're:<regex>' searched in a line, else a whole line (any case)."""

    literal: frozenset[str] = frozenset()
    regexes: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> Patterns:
        literal, regexes = set(), []
        for pattern in patterns:
            if pattern.startswith("re:"):
                regexes.append(re.compile(pattern[3:]))
            elif pattern.strip():
                literal.add(normalize_line(pattern))
        return cls(frozenset(literal), tuple(regexes))

    def match(self, line: Sequence[Run]) -> bool:
        text = line_text(line)
        return normalize_line(text) in self.literal or any(r.search(text) for r in self.regexes)


@dataclass
class Stripped:
    html: str  # the body: the post without its footer and header
    removed: list[str] = field(default_factory=list)  # the lines taken away, as they read


def strip(html: str, footer: Footer | None, patterns: Patterns | None = None) -> Stripped:
    """The post without the learned footer/header lines and pattern lines at its ends (html kept as is
    when there is nothing to remove)."""
    footer = footer or Footer()
    patterns = patterns or Patterns()
    if (footer.empty and not patterns.literal and not patterns.regexes) or not html.strip():
        return Stripped(html)
    lines = split_lines(parse_html(html).runs)
    removed: list[str] = []

    def drop(line: list[Run], keys: frozenset[str]) -> bool:
        return line_key(line) in keys or patterns.match(line)

    end = len(lines)
    while end > 0 and (not line_text(lines[end - 1]).strip() or drop(lines[end - 1], footer.trailer)):
        end -= 1
        if line_text(lines[end]).strip():
            removed.insert(0, line_text(lines[end]).strip())
    start = 0
    while start < end and (not line_text(lines[start]).strip() or drop(lines[start], footer.header)):
        if line_text(lines[start]).strip():
            removed.append(line_text(lines[start]).strip())
        start += 1
    if not removed:
        return Stripped(html)
    return Stripped(render_runs(strip_runs(join_lines(lines[start:end]))), removed)


def recurring_lines(recent_posts: Iterable[str], share: float, minimum: int = 2) -> set[str]:
    """Normalised lines appearing anywhere in at least `share` of `recent_posts` (Telegram HTML), and in at
    least `minimum` of them: the clean rewriter's footer rule, applied to what ingest left of the posts."""
    posts = list(recent_posts)
    if len(posts) < minimum:
        return set()
    counts: Counter[str] = Counter()
    for html in posts:
        counts.update({normalize_line(line) for line in html_to_text(html).split("\n") if line.strip()})
    needed = max(minimum, math.ceil(share * len(posts)))
    return {line for line, count in counts.items() if count >= needed}
