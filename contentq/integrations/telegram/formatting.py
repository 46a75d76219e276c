"""Telegram text + entities ⇄ Telegram HTML, through Telethon's own HTML parser and unparser.

Telethon renders a code block as an indented `<pre>\\n    <code class='language-…'>` with a stray "{}" before
the closing tags (telethon 1.x); `entities_to_html` turns that into the compact `<pre><code>` form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from telethon.extensions import html as telethon_html

_PRE_OPEN = re.compile(r"<pre>\n    <code class='language-([^'<>]*)'>\n        ")
_PRE_CLOSE = re.compile(r"(?:\{\})?\n    </code>\n</pre>")


def entities_to_html(text: str, entities: Sequence[Any] | None) -> str:
    """A message's text and entities (offsets in UTF-16 units) as Telegram HTML."""
    if not text:
        return ""
    out = telethon_html.unparse(text, list(entities or []))
    out = _PRE_OPEN.sub(lambda m: f'<pre><code class="language-{m.group(1)}">' if m.group(1) else "<pre><code>", out)
    return _PRE_CLOSE.sub("</code></pre>", out)


def html_to_entities(html: str) -> tuple[str, list[Any]]:
    """Telegram HTML as the text and entities of a raw request."""
    if not html:
        return "", []
    text, entities = telethon_html.parse(html)
    return text, list(entities)
