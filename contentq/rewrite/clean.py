"""The rule-based rewriter (`rewriter = "clean"`): no API key, no cost.

It removes what marks a post as someone else's, and keeps the formatting:

- footer lines: lines that recur in a large share (`clean.footer_share`) of the same donor's recent posts
  (`clean.footer_window`), such as "Subscribe: @donor" or a channel signature;
- links of the donor post (unwrapped, the words stay; bare URLs go), except those in `allowed_links`;
- @mentions (outside code);
- then the route's `clean.replacements` ("old" = "new", plain text; a key starting with "re:" is a regular
  expression), and `clean.signature` (Telegram HTML) at the end.

A line that holds nothing but punctuation or emoji once links and mentions are gone is dropped as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from contentq.content.footer import normalize_line, recurring_lines
from contentq.content.html import Run, map_text, normalize_html, parse_html, render_runs, split_lines
from contentq.content.html import join_lines as join
from contentq.rewrite.base import Reporter, RewriteResult, RewriteTask
from contentq.rewrite.finalize import finalize_html, remove_links
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
        if old.startswith("re:"):
            text = re.sub(old[3:], new, text)
        elif old:
            text = text.replace(old, new)
    return text


def _line_text(line: list[Run]) -> str:
    return "".join(r.text for r in line)


DANGLING = re.compile(
    r"(?:\s*(?:\b(?:via|by|from|source|see|through|at|here|через|от|источник|подробнее|тут|здесь)\b"
    r"|\b\w[\w-]*:|[:\-—–|·,(]))+\s*$",
    re.IGNORECASE,
)
"""What a removed link or mention leaves at the end of its line: "Demo: via", "(source:", "— by"."""


def trim_dangling(line: list[Run]) -> tuple[list[Run], str]:
    """The line without a tail that only led to a removed link or mention, and that tail ("" when none)."""
    text = _line_text(line)
    match = DANGLING.search(text)
    if match is None or not text[: match.start()].strip():
        return line, ""  # nothing before it: the whole line goes (or stays) by the empty-line rule
    keep, out, seen = match.start(), [], 0
    for run in line:
        if seen >= keep:
            break
        out.append(Run(run.text[: keep - seen], run.tags))
        seen += len(run.text)
    return out, text[keep:].strip()


def clean_runs(
    runs: list[Run], *, footers: set[str], permitted_links: list[str], replacements: dict[str, str]
) -> tuple[list[Run], list[str]]:
    """The donor post's runs without footers, foreign links and mentions, with replacements applied."""
    notes: list[str] = []
    kept_lines = []
    for line in split_lines(runs):
        if footers and normalize_line(_line_text(line)) in footers:
            notes.append(f"footer line removed: {_line_text(line).strip()!r}")
            continue
        before = _line_text(line)
        line = map_text(line, lambda text: _replace(text, replacements))
        line, links = remove_links(line, permitted_links)
        notes.extend(f"link removed: {link}" for link in links)
        mentions = [m.group(0) for r in line if not r.has("code", "pre") for m in MENTION.finditer(r.text)]
        if mentions:
            line = map_text(line, lambda text: MENTION.sub("", text))
            notes.extend(f"mention removed: {m}" for m in mentions)
        if links or mentions:
            line = map_text(line, lambda text: re.sub(r"(?<=\S)  +(?=\S)", " ", text))  # the gap a removal left
            line, tail = trim_dangling(line)
            if tail:
                notes.append(f"words left pointing at nothing removed: {tail!r}")
        after = _line_text(line)
        if after != before and not any(ch.isalnum() for ch in after):
            if after.strip():
                notes.append(f"line left empty by the removals dropped: {before.strip()!r}")
            continue
        kept_lines.append(line)
    return join(kept_lines), notes


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
