"""What a model's answer must be before it is accepted: Telegram HTML as Telegram reads it, the original's
formatting, links and custom emoji mostly kept, and a length near the original's.

Each check returns what is wrong in words the model (on the next try) and the admin (in the job log and, after
the last try, the post's reason) can act on. Nothing here repairs an answer: an answer that fails a check is
asked again, and after the last try the post fails with the reason.

HTML: the tags Telegram's HTML parse mode knows (content/html.py, SUPPORTED_TAGS), each closed in order, with
the attributes Telegram needs. Two pieces of web structure are read as what they plainly mean, since they
carry no formatting Telegram could lose: `<br>` is a line break and `<p>…</p>` a paragraph (a blank line
between paragraphs). Every other tag (`<script>`, `<h1>`, `<div>`, `<ul>`, `<img>` …), comments and
declarations make the answer invalid: Telegram would refuse such a message, and unwrapping them silently
publishes something nobody wrote (a heading glued to the next sentence, a script's code as text).
"""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser

from contentq.content.html import SUPPORTED_TAGS, escape_text, find_urls, normalize_link, parse_html
from contentq.content.utf16 import utf16_len
from contentq.rewrite.output import InvalidOutputError
from contentq.rewrite.prompt import TAGS_HELP
from contentq.routes import LLMChecks

STRUCTURE = frozenset({"br", "p"})
"""Web tags read as line breaks: `<br>` one, `</p>` a paragraph end."""

LENGTH_SLACK = 100
"""UTF-16 units always allowed either side of the length band: a one-line post may become two lines."""

KINDS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "span": "spoiler",
    "tg-spoiler": "spoiler", "code": "code", "pre": "code block", "blockquote": "quote",
}  # fmt: skip
"""Entity kinds as people name them; links and custom emoji are counted by their target and id."""


class _AnswerReader(HTMLParser):
    """Reads an answer strictly: records every problem Telegram would refuse, and writes the answer back with
    `<br>` and `<p>` turned into line breaks (the rest as it was)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.problems: list[str] = []
        self.stack: list[str] = []
        self.paragraph_end = False  # a </p> was read: a blank line goes before the next text

    def problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    def _break(self) -> None:
        if self.paragraph_end and "".join(self.out).strip():
            self.out.append("\n\n")
        self.paragraph_end = False

    def _in_code(self) -> str | None:
        return next((name for name in reversed(self.stack) if name in ("code", "pre")), None)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        name = tag.lower()
        inside = self._in_code()
        if name == "br":
            self._break()
            self.out.append("\n")
            return
        if name == "p" and inside is None:
            if "".join(self.out).strip():
                self.paragraph_end = True  # a paragraph starts: a blank line before its text
            return
        self._break()
        if inside is not None and name not in SUPPORTED_TAGS:
            self.problem(f"<{name}> inside <{inside}> (code holds plain text only)")
            return
        if name not in SUPPORTED_TAGS:
            self.problem(f"<{name}> is not a Telegram tag")
            return
        if inside is not None and not (name == "code" and inside == "pre" and self.stack[-1] == "pre"):
            self.problem(f"<{name}> inside <{inside}> (code holds plain text only)")
        self._attributes(name, {k.lower(): v for k, v in attrs})
        if name in ("a", "blockquote") and name in self.stack:
            self.problem(f"<{name}> inside <{name}>")
        self.stack.append(name)
        self.out.append(self.get_starttag_text() or f"<{name}>")

    def _attributes(self, name: str, values: dict[str, str | None]) -> None:
        if name == "a" and not (values.get("href") or "").strip():
            self.problem("<a> without href")
        elif name == "span" and (values.get("class") or "").strip() != "tg-spoiler":
            self.problem('<span> without class="tg-spoiler"')
        elif name == "tg-emoji" and not (values.get("emoji-id") or "").strip().isdigit():
            self.problem("<tg-emoji> without a numeric emoji-id")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        name = tag.lower()
        if name in STRUCTURE:
            self.handle_starttag(tag, attrs)
        elif name not in SUPPORTED_TAGS:
            self.problem(f"<{name}> is not a Telegram tag")
        else:
            self.problem(f"<{name}/> is empty (a Telegram tag holds text)")

    def handle_endtag(self, tag: str) -> None:
        name = tag.lower()
        if name == "br" or (name == "p" and self._in_code() is None):
            self.paragraph_end = self.paragraph_end or name == "p"
            return
        if name not in SUPPORTED_TAGS:
            if self._in_code() is None:  # inside code its start tag was reported already
                self.problem(f"<{name}> is not a Telegram tag")
            return
        if name not in self.stack:
            self.problem(f"</{name}> closes no <{name}>")
            return
        index = len(self.stack) - 1 - self.stack[::-1].index(name)
        if index != len(self.stack) - 1:
            self.problem(f"</{name}> closes before </{self.stack[-1]}>: tags must be closed in the order opened")
        del self.stack[index]
        self.out.append(f"</{name}>")

    def handle_data(self, data: str) -> None:
        if self.paragraph_end and not data.strip():
            return  # the newline between </p> and <p>
        self._break()
        self.out.append(escape_text(data))

    def handle_comment(self, data: str) -> None:
        self.problem("an HTML comment (<!-- -->)")

    def handle_decl(self, decl: str) -> None:
        self.problem(f"an HTML declaration (<!{decl[:20]}>)")

    def handle_pi(self, data: str) -> None:
        self.problem("an HTML processing instruction (<?…>)")

    def unknown_decl(self, data: str) -> None:
        self.problem("an HTML declaration (<![…]>)")


def read_answer_html(text: str) -> tuple[str, list[str]]:
    """The answer's HTML with `<br>`/`<p>` as line breaks, and what makes it invalid ([] when nothing)."""
    reader = _AnswerReader()
    reader.feed(text)
    reader.close()
    for name in reversed(reader.stack):
        reader.problem(f"<{name}> is never closed")
    return "".join(reader.out), reader.problems


HTML_HINT = (
    f"Use only these tags: {TAGS_HELP}; close each one, in the order opened; write line breaks as plain newlines."
)
ENTITY_HINT = (
    "Keep the original's formatting (bold, italics …), its links and its custom emoji"
    ' (<tg-emoji emoji-id="…">😀</tg-emoji>, exactly as they are).'
)
LENGTH_HINT = "Keep the text about as long as the original."


def checked_html(text: str) -> str:
    """The answer's HTML (`<br>`/`<p>` as line breaks), or InvalidOutputError naming every problem."""
    html, problems = read_answer_html(text)
    if not problems:
        return html
    raise InvalidOutputError("the text is not valid Telegram HTML: " + "; ".join(problems), HTML_HINT)


# -- what the answer kept of the original -------------------------------------------------------------


_TELEGRAM = re.compile(r"(?i)^(?:t|telegram)\.me(?:/|$)")


def entities(html: str) -> Counter[str]:
    """The formatting, links and custom emoji of a post: kinds counted per element, links per target (an <a>
    or a bare URL, as Telegram links it), custom emoji per id. Telegram links (t.me/…) are left out: they are
    the donor's channel and chat, which the model is told to drop."""
    found: Counter[str] = Counter()
    seen: set[int] = set()
    links: set[str] = set()
    for run in parse_html(html).runs:
        for tag in run.tags:
            if id(tag) in seen:
                continue
            seen.add(id(tag))
            if tag.name == "a":
                links.add(normalize_link(tag.href or ""))
            elif tag.name == "tg-emoji":
                found[f"custom emoji {tag.attr('emoji-id')}"] += 1
            elif tag.name in KINDS:
                found[KINDS[tag.name]] += 1
        if not run.has("code", "pre", "a"):
            links.update(normalize_link(url) for _, _, url in find_urls(run.text))
    found.update(f"link {link}" for link in links if link and not _TELEGRAM.match(link))
    return found


def entity_problem(source_html: str, answer_html: str, max_loss: float) -> str | None:
    """Why the answer lost too much of the original's formatting, links and custom emoji, or None."""
    source = entities(source_html)
    total = sum(source.values())
    if not total:
        return None
    answer = entities(answer_html)
    lost: Counter[str] = Counter()
    for key, count in source.items():
        kind = "link" if key.startswith("link ") else "custom emoji" if key.startswith("custom emoji") else key
        lost[kind] += count - min(count, answer.get(key, 0))
    gone = sum(lost.values())
    if gone / total <= max_loss:
        return None
    what = ", ".join(f"{n} {kind}{'s' if n > 1 and kind == 'link' else ''}" for kind, n in lost.most_common() if n)
    return (
        f"the text lost {gone} of the original's {total} formatting entities, links and custom emoji ({what}; at"
        f" most {max_loss:.0%} may go: route setting llm.max_entity_loss)"
    )


def length_problem(source_units: int, answer_units: int, band: tuple[float, float]) -> str | None:
    """Why the answer's length is too far from the original's, or None (always None without an original)."""
    if source_units <= 0:
        return None
    low, high = band
    if answer_units > high * source_units + LENGTH_SLACK:
        return (
            f"the text is {answer_units / source_units:.1f} times as long as the original ({answer_units} against"
            f" {source_units} characters; at most {high:g} times: route setting llm.length_ratio)"
        )
    if answer_units < low * source_units - LENGTH_SLACK:
        return (
            f"the text is {answer_units / source_units:.2f} of the original's length ({answer_units} against"
            f" {source_units} characters; at least {low:g}: route setting llm.length_ratio)"
        )
    return None


def check_answer(source_html: str, answer_html: str, checks: LLMChecks) -> None:
    """InvalidOutputError when a model's answer (read by `checked_html`) keeps too little of the original's
    entities or strays too far from its length; nothing to check for a post written from a topic."""
    if not source_html.strip():
        return
    lost = entity_problem(source_html, answer_html, checks.max_entity_loss)
    if lost is not None:
        raise InvalidOutputError(lost, ENTITY_HINT)
    source_units = utf16_len(parse_html(source_html).text.strip())
    answer_units = utf16_len(parse_html(answer_html).text.strip())
    far = length_problem(source_units, answer_units, checks.length_ratio)
    if far is not None:
        raise InvalidOutputError(far, LENGTH_HINT)
