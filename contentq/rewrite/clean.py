"""The rule-based rewriter (`rewriter = "clean"`): no API key, no cost.

It removes what marks a post as someone else's, and keeps the formatting:

- footer lines: lines that recur in a large share (`clean.footer_share`) of the same donor's recent posts
  (`clean.footer_window`), such as "Subscribe: @donor" or a channel signature;
- links of the donor post (unwrapped, the words stay; bare URLs go), except those in `allowed_links`;
- @mentions (outside code);
- then the route's `clean.replacements` ("old" = "new", plain text; a key starting with "re:" is a regular
  expression), and `clean.signature` (Telegram HTML) at the end.

A removal takes with it what it alone leaves behind: its own space, brackets around nothing else ("Дуров
(@durov) сказал" → "Дуров сказал"), words that only led to it ("Source:", "via"), and its line when nothing but
punctuation, emoji or a call to subscribe is left ("Подписывайся на"). The rest of the spacing stays as sent.
A text post of which nothing is left is not published: it ends `filtered` ("empty after cleaning").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from contentq.content.footer import normalize_line, recurring_lines
from contentq.content.html import Run, map_text, normalize_html, parse_html, render_runs, split_lines, strip_runs
from contentq.rewrite.base import Reporter, RewriteResult, RewriteTask
from contentq.rewrite.finalize import cut_spans, finalize_html, join_kept, remove_links
from contentq.routes import Clean

MENTION = re.compile(r"(?<![\w@.])@[A-Za-z][A-Za-z0-9_]{3,31}\b")
"""A Telegram @username (5–32 characters), not part of an e-mail address."""

MIN_FOOTER_POSTS = 2
"""A line must recur in at least this many other posts to count as a footer, whatever the share."""


def footer_lines(recent_posts: Iterable[str], share: float) -> set[str]:
    """Normalised lines that appear in at least `share` of `recent_posts` (Telegram HTML).

    The donor's learned footer is already gone at ingest (content/footer.py); this catches what recurs
    elsewhere in its posts."""
    return recurring_lines(recent_posts, share, MIN_FOOTER_POSTS)


def _replace(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        if not new:
            continue  # a replacement by nothing is a removal: see _removals
        if old.startswith("re:"):
            text = re.sub(old[3:], new, text)
        elif old:
            text = text.replace(old, new)
    return text


def _removals(text: str, replacements: dict[str, str]) -> list[tuple[int, int]]:
    """Where the replacements by nothing ("Subscribe to @donor" = "") match: removed like a mention, so they
    take their own space with them and leave the rest of the spacing alone."""
    spans: list[tuple[int, int]] = []
    for old, new in replacements.items():
        if new or not old or old == "re:":
            continue
        if old.startswith("re:"):
            spans += [m.span() for m in re.finditer(old[3:], text) if m.end() > m.start()]
        else:
            start = text.find(old)
            while start >= 0:
                spans.append((start, start + len(old)))
                start = text.find(old, start + len(old))
    return spans


def _line_text(line: list[Run]) -> str:
    return "".join(r.text for r in line)


def _code_mask(line: list[Run]) -> str:
    """The line's text with code blanked out: what mentions and removals are looked for in."""
    return "".join(" " * len(r.text) if r.has("code", "pre") else r.text for r in line)


DANGLING = re.compile(
    r"(?:\s*(?:\b(?:via|by|from|source|see|through|at|on|in|to|here|через|от|на|в|во|к|источник|подробнее|тут"
    r"|здесь)\b|\b\w[\w-]*:|[:\-—–|·,(]))+\s*$",
    re.IGNORECASE,
)
"""What a removed link or mention leaves at the end of its line: "Demo: via", "(source:", "— by", "читайте на"."""

_CALL = re.compile(
    r"(?i)^(?:подпи\w*|подпис\w*|вступ\w*|присоедин\w*|переход\w*|переиди\w*|заход\w*|жми\w*|нажм\w*|читай\w*"
    r"|смотри\w*|subscribe\w*|join\w*|follow\w*|check|visit|read|watch)$"
)
_CALL_FILLER = re.compile(
    r"(?i)^(?:на|в|во|к|ко|нас|наш\w*|канал\w*|чат\w*|групп\w*|сообществ\w*|скорее|сейчас|тут|здесь|по|ссылк\w*"
    r"|и|а|ниже|us|to|on|our|the|my|channel|chat|group|for|more|here|now|out|and|link|below)$"
)


def call_without_object(text: str) -> bool:
    """Whether a line is nothing but a call to subscribe or join whose channel was removed ("Подписывайся на",
    "Join us on", "Читайте нас в")."""
    words = re.findall(r"\w+", text.casefold())
    calls = [w for w in words if _CALL.match(w)]
    return bool(calls) and all(_CALL_FILLER.match(w) or _CALL.match(w) for w in words)


def trim_dangling(line: list[Run]) -> tuple[list[Run], str]:
    """The line without a tail that only led to a removed link or mention, and that tail ("" when none)."""
    text = _line_text(line)
    match = DANGLING.search(text)
    if match is None:
        return line, ""
    if not text[: match.start()].strip():
        return [], text.strip()  # nothing but words leading to what was removed ("Источник:"): the line goes
    keep, out, seen = match.start(), [], 0
    for run in line:
        if seen >= keep:
            break
        out.append(Run(run.text[: keep - seen], run.tags))
        seen += len(run.text)
    return out, text[keep:].strip()


def _clean_line(
    line: list[Run], permitted_links: list[str], replacements: dict[str, str], notes: list[str]
) -> list[Run] | None:
    """One line without its foreign links, mentions and removals (None: nothing of it is left)."""
    before = _line_text(line)
    line = map_text(line, lambda text: _replace(text, replacements))
    line, links = remove_links(line, permitted_links)
    notes.extend(f"link removed: {link}" for link in links)
    searchable = _code_mask(line)
    mentions = list(MENTION.finditer(searchable))
    notes.extend(f"mention removed: {m.group(0)}" for m in mentions)
    spans = [m.span() for m in mentions] + _removals(searchable, replacements)
    line = cut_spans(line, spans)
    if links or spans:
        line, tail = trim_dangling(line)
        if tail:
            notes.append(f"words left pointing at nothing removed: {tail!r}")
    after = _line_text(line)
    if after != before and (not any(ch.isalnum() for ch in after) or call_without_object(after)):
        if after.strip():
            notes.append(f"line left empty by the removals dropped: {before.strip()!r}")
        return None
    return line


def clean_runs(
    runs: list[Run], *, footers: set[str], permitted_links: list[str], replacements: dict[str, str]
) -> tuple[list[Run], list[str]]:
    """The donor post's runs without footers, foreign links and mentions, with replacements applied.

    Removed parts take their own space with them; the spacing of what stays is kept as sent."""
    notes: list[str] = []
    lines: list[list[Run] | None] = []
    for line in split_lines(runs):
        if footers and normalize_line(_line_text(line)) in footers:
            notes.append(f"footer line removed: {_line_text(line).strip()!r}")
            lines.append(None)
            continue
        lines.append(_clean_line(line, permitted_links, replacements, notes) if line else line)
    return strip_runs(join_kept(lines)), notes


EMPTY_REASON = "empty after cleaning: nothing is left once the donor's footer, links and mentions are removed"


class CleanRewriter:
    name = "clean"

    def rewrite(self, task: RewriteTask, reporter: Reporter) -> RewriteResult:
        options: Clean = task.route.clean
        window = task.donor_recent[: max(0, options.footer_window)]
        footers = footer_lines(window, options.footer_share)
        runs, notes = clean_runs(
            parse_html(task.donor_html).runs,
            footers=footers,
            permitted_links=list(task.route.allowed_links),
            replacements=options.replacements,
        )
        if not runs and not task.has_media:
            reporter.log("cleaned", EMPTY_REASON)
            return RewriteResult(rewriter=self.name, skip_reason=EMPTY_REASON, notes=notes)
        signature = normalize_html(options.signature) if options.signature.strip() else ""
        final = finalize_html(
            render_runs(runs), permitted_links=task.route.allowed_links, limit=task.cut_limit, suffix_html=signature
        )
        notes.extend(final.notes)
        for note in notes:
            reporter.log("cleaned", note)
        return RewriteResult(rewriter=self.name, html=final.html, truncated=final.truncated, notes=notes)


class CopyRewriter:
    """`rewriter = "none"`: the donor post as it is, only checked (and cut to the limit under `truncate`)."""

    name = "none"

    def rewrite(self, task: RewriteTask, reporter: Reporter) -> RewriteResult:
        final = finalize_html(task.donor_html, permitted_links=None, limit=task.cut_limit)
        for note in final.notes:
            reporter.log("validated", note)
        return RewriteResult(rewriter=self.name, html=final.html, truncated=final.truncated, notes=final.notes)
