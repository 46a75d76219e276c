"""Telegram text + entities ⇄ Telegram HTML (the Bot API's HTML mode), on top of Telethon's HTML parser.

Telethon 1.x's own `html.parse`/`unparse` know neither spoilers nor the `<ins>`/`<strike>` aliases, and render
a code block as an indented `<pre>\\n    <code class='language-…'>` with a stray "{}". So:
- `entities_to_html` is Telethon's unparse algorithm with contentq's formatter table: spoilers become
  `<tg-spoiler>`, code blocks the compact `<pre><code class="language-…">` form;
- `html_to_entities` uses a subclass of Telethon's HTMLToTelegramParser that also reads `<tg-spoiler>`,
  `<span class="tg-spoiler">` (MessageEntitySpoiler), `<ins>` (underline) and `<strike>` (strikethrough).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from telethon.extensions.html import HTMLToTelegramParser
from telethon.helpers import add_surrogate, del_surrogate, strip_text, within_surrogate
from telethon.tl import types as tl

from contentq.content.html import safe_href

_Formatter = tuple[str, str] | Callable[[Any, str], tuple[str, str]]

_FORMATTERS: dict[type, _Formatter] = {
    tl.MessageEntityBold: ("<strong>", "</strong>"),
    tl.MessageEntityItalic: ("<em>", "</em>"),
    tl.MessageEntityCode: ("<code>", "</code>"),
    tl.MessageEntityUnderline: ("<u>", "</u>"),
    tl.MessageEntityStrike: ("<del>", "</del>"),
    tl.MessageEntitySpoiler: ("<tg-spoiler>", "</tg-spoiler>"),
    tl.MessageEntityBlockquote: lambda e, _: (
        "<blockquote expandable>" if e.collapsed else "<blockquote>",
        "</blockquote>",
    ),
    tl.MessageEntityPre: lambda e, _: (
        f'<pre><code class="language-{escape(e.language)}">' if e.language else "<pre><code>",
        "</code></pre>",
    ),
    tl.MessageEntityEmail: lambda _, t: (f'<a href="mailto:{t}">', "</a>"),
    tl.MessageEntityUrl: lambda _, t: (f'<a href="{t}">', "</a>") if safe_href(t) else ("", ""),
    tl.MessageEntityTextUrl: lambda e, _: (f'<a href="{escape(e.url)}">', "</a>") if safe_href(e.url) else ("", ""),
    tl.MessageEntityMentionName: lambda e, _: (f'<a href="tg://user?id={e.user_id}">', "</a>"),
    tl.MessageEntityCustomEmoji: lambda e, _: (f'<tg-emoji emoji-id="{e.document_id}">', "</tg-emoji>"),
}


def entities_to_html(text: str, entities: Sequence[Any] | None) -> str:
    """A message's text and entities (offsets in UTF-16 units) as Telegram HTML."""
    if not text:
        return ""
    if not entities:
        return escape(text)
    text = add_surrogate(text)
    insert_at: list[tuple[int, int, str]] = []
    for i, entity in enumerate(entities):
        formatter = _FORMATTERS.get(type(entity))
        if formatter is None:
            continue
        start, end = entity.offset, entity.offset + entity.length
        opening, closing = formatter(entity, text[start:end]) if callable(formatter) else formatter
        insert_at.append((start, i, opening))
        insert_at.append((end, -i, closing))
    insert_at.sort(key=lambda t: (t[0], t[1]))
    next_escape_bound = len(text)
    while insert_at:  # from the end, so earlier offsets stay valid (Telethon's algorithm)
        at, _, what = insert_at.pop()
        while within_surrogate(text, at):
            at += 1
        text = text[:at] + what + escape(text[at:next_escape_bound]) + text[next_escape_bound:]
        next_escape_bound = at
    text = escape(text[:next_escape_bound]) + text[next_escape_bound:]
    return str(del_surrogate(text))


_SPOILER = "tg-spoiler"
_ALIASES = {"ins": "u", "strike": "del"}


class _Parser(HTMLToTelegramParser):
    """Telethon's parser plus spoilers and the `ins`/`strike` aliases."""

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[bool] = []  # per open <span>: is it a spoiler

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "span":
            classes = (dict(attrs).get("class") or "").split()
            self._spans.append(_SPOILER in classes)
            if _SPOILER in classes:
                self._open_spoiler()
                return
        if tag == _SPOILER:
            self._open_spoiler()
            return
        if tag == "a" and safe_href(dict(attrs).get("href")) is None:
            attrs = [(k, v) for k, v in attrs if k != "href"]  # Telethon keeps an <a> without href as text
        super().handle_starttag(_ALIASES.get(tag, tag), attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._spans and self._spans.pop():
            self._close_spoiler()
            return
        if tag == _SPOILER:
            self._close_spoiler()
            return
        super().handle_endtag(_ALIASES.get(tag, tag))

    def _open_spoiler(self) -> None:
        self._open_tags.appendleft(_SPOILER)
        self._open_tags_meta.appendleft(None)
        if _SPOILER not in self._building_entities:
            self._building_entities[_SPOILER] = tl.MessageEntitySpoiler(offset=len(self.text), length=0)

    def _close_spoiler(self) -> None:
        if self._open_tags:
            self._open_tags.popleft()
            self._open_tags_meta.popleft()
        entity = self._building_entities.pop(_SPOILER, None)
        if entity is not None:
            self.entities.append(entity)


_MENTION = re.compile(r"tg://user\?id=([0-9]{1,19})", re.ASCII)


def mention_user_id(url: str | None) -> int | None:
    """The user id of a `tg://user?id=N` link: how a mention by name (MessageEntityMentionName, for a user without
    a username) is written in Telegram HTML; None for any other link."""
    match = _MENTION.fullmatch(url or "")
    return int(match.group(1)) if match else None


def mention_ids(html: str) -> list[int]:
    """The users mentioned by name in Telegram HTML, in order, each once."""
    _, entities = html_to_entities(html)
    found = (mention_user_id(e.url) for e in entities if isinstance(e, tl.MessageEntityTextUrl))
    return list(dict.fromkeys(user_id for user_id in found if user_id is not None))


def html_to_entities(html: str) -> tuple[str, list[Any]]:
    """Telegram HTML as the text and entities (UTF-16 offsets) of a raw request."""
    if not html:
        return "", []
    parser = _Parser()
    parser.feed(add_surrogate(html))
    text = strip_text(parser.text, parser.entities)
    parser.entities.reverse()
    parser.entities.sort(key=lambda entity: entity.offset)
    return str(del_surrogate(text)), list(parser.entities)
