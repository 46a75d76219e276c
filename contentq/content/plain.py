"""Telegram HTML as the plain text X and Instagram take: formatting dropped, links and mentions handled.

- links: `inline` keeps each link (X shows it): a link whose text is its address stays the address, any other
  becomes "text (address)"; `bio` and `drop` remove them (an Instagram caption has no clickable links): a link's
  text stays, a bare address goes, and under `bio` one line (`link_text`, "Link in bio") ends the caption.
- mentions: a Telegram @channel is not an X or Instagram handle: `link` writes it as t.me/channel, `keep`
  leaves it as it is.
- hashtags: at most `max_hashtags` (Instagram takes 30); the rest are removed, and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from contentq.content.html import find_urls, normalize_link, parse_html, safe_href

_MENTION = re.compile(r"(?<![\w@/.])@([A-Za-z][A-Za-z0-9_]{3,31})\b")
_HASHTAG = re.compile(r"(?<![\w&/])#(\w{1,100})")
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass
class Plain:
    text: str
    links: list[str] = field(default_factory=list)
    """Every link the post had (hrefs and bare addresses), in order."""
    links_removed: int = 0
    mentions_changed: int = 0
    hashtags_removed: int = 0


def _anchor(text: str, href: str, links: str) -> str:
    if links != "inline":
        return text
    if not text.strip() or normalize_link(text) == normalize_link(href):
        return href
    return f"{text} ({href})"


def _drop_bare_urls(text: str) -> tuple[str, int]:
    found = find_urls(text)
    for start, end, _ in reversed(found):
        text = text[:start] + text[end:]
    return text, len(found)


def _tidy(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _limit_hashtags(text: str, max_hashtags: int) -> tuple[str, int]:
    count = 0
    removed = 0

    def keep(match: re.Match[str]) -> str:
        nonlocal count, removed
        count += 1
        if count <= max_hashtags:
            return match.group(0)
        removed += 1
        return ""

    return _HASHTAG.sub(keep, text), removed


def to_plain(
    html: str,
    *,
    links: Literal["inline", "bio", "drop"] = "inline",
    link_text: str = "Link in bio",
    mentions: Literal["link", "keep"] = "link",
    max_hashtags: int | None = None,
) -> Plain:
    """The post's text for a platform without Telegram's formatting (see the module doc)."""
    parsed = parse_html(html)
    out: list[str] = []
    found_links: list[str] = []
    anchor: object = None
    anchor_text: list[str] = []
    anchor_href = ""

    def close_anchor() -> None:
        nonlocal anchor
        if anchor is not None:
            out.append(_anchor("".join(anchor_text), anchor_href, links))
            anchor = None

    for run in parsed.runs:
        tag = next((t for t in run.tags if t.name == "a"), None)
        href = safe_href(tag.href) if tag is not None else None
        if tag is not anchor:
            close_anchor()
            if tag is not None and href:
                anchor, anchor_href = tag, href
                anchor_text.clear()
                found_links.append(href)
        if anchor is not None:
            anchor_text.append(run.text)
        else:
            out.append(run.text)
    close_anchor()
    text = "".join(out)
    plain = Plain(text="")
    found_links += [url for _, _, url in find_urls(text) if url not in found_links]
    plain.links = list(dict.fromkeys(found_links))
    if links != "inline":
        text, _ = _drop_bare_urls(text)
        plain.links_removed = len(plain.links)
    if mentions == "link":
        text, plain.mentions_changed = _MENTION.subn(lambda m: f"t.me/{m.group(1)}", text)
    if max_hashtags is not None:
        text, plain.hashtags_removed = _limit_hashtags(text, max_hashtags)
    text = _tidy(text)
    if links == "bio" and plain.links and link_text.strip():
        text = f"{text}\n\n{link_text.strip()}" if text else link_text.strip()
    plain.text = text
    return plain
