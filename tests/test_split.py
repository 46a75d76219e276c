"""The splitter (content/split.py): parts within the limit, well-formed, joining back to the text; plus
property-based tests over generated formatted HTML, numbering, custom emoji and the forward credit."""

from __future__ import annotations

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contentq.content.html import escape_text, html_to_text, parse_html, validate_html, visible_len_utf16
from contentq.content.split import (
    CODE_CONTINUED,
    SplitError,
    check_credit_template,
    credit_html,
    custom_emoji_count,
    plain_emoji,
    split_html,
)
from contentq.errors import ContentqError
from tests.publish_helpers import joins_back


def assert_valid(html: str, parts: list[str], limit: int) -> None:
    for part in parts:
        assert validate_html(part) == [], part
        assert 0 < visible_len_utf16(part) <= limit, part
    assert joins_back(html, parts)


def test_a_short_text_is_one_part_unchanged():
    assert split_html("Hello <b>world</b>", 4096) == ["Hello <b>world</b>"]
    assert split_html("   ", 10) == []


def test_paragraphs_are_preferred_to_sentences_and_words():
    first = "First paragraph, one sentence. Second sentence here."
    html = f"{first}\n\nSecond paragraph is here and goes on."
    parts = split_html(html, len(first) + 10)
    assert parts == [first, "Second paragraph is here and goes on."]


def test_a_sentence_end_is_preferred_to_a_word_boundary():
    html = "One sentence ends here. Then a long second sentence follows without end"
    parts = split_html(html, 40)
    assert parts[0] == "One sentence ends here."
    assert_valid(html, parts, 40)


def test_formatting_spanning_a_cut_is_closed_and_reopened():
    html = "<b>bold words " + "and more " * 10 + "</b><blockquote>quoted " * 1 + "text " * 10 + "</blockquote>"
    parts = split_html(html, 50)
    assert len(parts) >= 3
    assert all(p.startswith("<b>") for p in parts[:2]) and parts[0].endswith("</b>")
    assert_valid(html, parts, 50)


def test_a_link_is_not_cut_when_the_cut_can_go_elsewhere():
    html = "Some words before " + '<a href="https://example.com/x">a link of several words</a>' + " after " * 5
    parts = split_html(html, 40)
    assert any('<a href="https://example.com/x">a link of several words</a>' in p for p in parts)
    assert_valid(html, parts, 40)


def test_a_custom_emoji_and_a_surrogate_pair_are_never_cut():
    html = "x" * 9 + '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>' + "y" * 9
    parts = split_html(html, 10)
    assert_valid(html, parts, 10)
    assert any('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>' in p for p in parts)
    emoji = "😀" * 10  # 20 UTF-16 units
    parts = split_html(emoji, 5)
    assert [html_to_text(p) for p in parts] == ["😀😀"] * 5
    assert_valid(emoji, parts, 5)


def clusters(html: str) -> list[str]:
    return regex.findall(r"\X", html_to_text(html))


@pytest.mark.parametrize("number", [False, True])
def test_a_cut_never_splits_a_flag_so_no_later_flag_pairs_wrongly(number):
    html = "Флаги:" + "🇷🇺🇺🇦" * 600
    parts = split_html(html, 4096, number=number)
    assert len(parts) == 2
    for part in parts:
        body = part.rsplit("\n\n", 1)[0] if number else part
        assert set(clusters(body)) <= {"🇷🇺", "🇺🇦", *"Флаги:"}, body[-12:]
    assert "".join(p.rsplit("\n\n", 1)[0] if number else p for p in parts) == html


@pytest.mark.parametrize(("limit", "number"), [(4096, False), (4096, True), (4097, False), (100, False), (101, True)])
def test_a_cut_never_splits_a_keycap(limit, number):
    html = "1️⃣" * 1500  # '1', U+FE0F, U+20E3: one grapheme cluster of 3 UTF-16 units
    parts = split_html(html, limit, number=number)
    for part in parts:
        body = part.rsplit("\n\n", 1)[0] if number else part
        assert set(clusters(body)) == {"1️⃣"}, [hex(ord(c)) for c in body[-4:]]
        assert visible_len_utf16(part) <= limit
    assert sum(len(clusters(p.rsplit("\n\n", 1)[0] if number else p)) for p in parts) == 1500


def test_emoji_sequences_stay_whole_at_hard_cuts():
    for sequence in ("👨‍👩‍👧", "👍🏽", "🏳️‍🌈", "e\u0301\u0302", "🇺🇦"):
        html = sequence * 200
        for limit in (8, 10, 33):  # a family is 8 UTF-16 units
            for part in split_html(html, limit):
                assert set(clusters(part)) == {sequence}, (sequence, limit, part)


PYTHON = (
    "import json\n\n\nclass Config:\n    \"\"\"Settings.\"\"\"\n\n"
    + "".join(f"    def value_{n}(self) -> int:\n        if self.ready:\n            return {n}\n        return 0\n\n"
              for n in range(120))
)  # fmt: skip


def test_a_long_code_block_is_cut_at_line_ends_with_its_indentation_kept():
    from contentq.integrations.telegram.formatting import html_to_entities

    html = f'Код:\n<pre><code class="language-python">{escape_text(PYTHON)}</code></pre>\nКонец.'
    parts = split_html(html, 1000)
    assert len(parts) > 3
    lines = PYTHON.split("\n")
    for number, part in enumerate(parts):
        text, entities = html_to_entities(part)  # what Telegram gets (its leading whitespace trimmed)
        assert validate_html(part) == [] and visible_len_utf16(part) <= 1000
        if number:  # a part that goes on inside the class: marked, so the first line keeps its 4 spaces
            assert text.startswith(CODE_CONTINUED + "\n    def "), text[:30]
            code = text[len(CODE_CONTINUED) + 1 :]
            assert entities[0].offset == len(CODE_CONTINUED) + 1
        else:
            code = text.split("\n", 1)[1]
        code = code.split("\nКонец.")[0]
        chunk = code.split("\n")
        start = lines.index(chunk[0]) if number else 0
        assert lines[start : start + len(chunk)] == chunk  # whole lines, indentation and blank lines as sent


def test_a_code_block_prefers_to_go_on_at_an_unindented_line():
    code = "".join(f"def f{n}():\n    x = {n}\n    return x\n" for n in range(200))
    parts = split_html(f"<pre>{escape_text(code)}</pre>", 500)
    assert len(parts) > 1
    for part in parts[1:]:
        assert part.startswith("<pre>def f"), part[:20]
    assert "\n".join(html_to_text(p) for p in parts) == code.rstrip("\n")


def test_a_word_longer_than_the_limit_is_cut_hard():
    parts = split_html("a" * 25, 10)
    assert parts == ["a" * 10, "a" * 10, "a" * 5]


def test_numbering_fits_within_the_limit():
    html = "\n\n".join(f"Paragraph {n} " + "words " * 30 for n in range(12))
    parts = split_html(html, 300, number=True)
    total = len(parts)
    assert total > 1
    for number, part in enumerate(parts, 1):
        assert part.endswith(f"\n\n{number}/{total}") and visible_len_utf16(part) <= 300
    unnumbered = [p.rsplit("\n\n", 1)[0] for p in parts]
    assert joins_back(html, unnumbered)


def test_a_limit_too_small_is_a_clear_error():
    with pytest.raises(SplitError, match="cannot hold"):
        split_html("😀😀😀", 1)
    with pytest.raises(SplitError):
        split_html("abc def", 0)


def test_custom_emoji_fallback_keeps_the_plain_emoji():
    html = 'Nice <tg-emoji emoji-id="5368324170671202286">👍</tg-emoji> <b>bold</b>'
    assert custom_emoji_count(html) == 1
    assert plain_emoji(html) == "Nice 👍 <b>bold</b>"
    assert custom_emoji_count(plain_emoji(html)) == 0


def test_forward_credit_template():
    template = 'via <a href="{link}">{name}</a>'
    assert check_credit_template(template) == template
    assert (
        credit_html(template, name="A & B", link="https://t.me/ab/5") == 'via <a href="https://t.me/ab/5">A &amp; B</a>'
    )
    assert credit_html(template, name="A", link=None) is None
    with pytest.raises(ValueError, match="only {name} and {link}"):
        check_credit_template("via {channel}")
    with pytest.raises(ValueError, match="not valid Telegram HTML"):
        check_credit_template("via <a>{name}")


# -- property-based ---------------------------------------------------------------------------------

_WORDS = st.sampled_from(
    ["word", "Слово", "a", "end.", "Why?", "«quote»", "x" * 30, "😀", "👍🏽", "e\u0301", "👨‍👩‍👧", "&", "<", "1/2", "—"]
)
_SPACES = st.sampled_from([" ", " ", " ", "\n", "\n\n", "  ", "\t", "\n    "])


def _unmarked(parts: list[str]) -> list[str]:
    """The parts without the mark of a part that goes on inside a code block, as plain-text HTML."""
    texts = [html_to_text(p) for p in parts]
    mark = CODE_CONTINUED + "\n"
    return [escape_text(t[len(mark) :] if t.startswith(mark) and t[len(mark) : len(mark) + 1] in " \t" else t)
            for t in texts]  # fmt: skip


@st.composite
def _text(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.tuples(_WORDS, _SPACES), max_size=12))
    return "".join(w + s for w, s in words).replace("&", "&amp;").replace("<", "&lt;")


def _wrap(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    simple = st.sampled_from(["b", "i", "u", "s", "tg-spoiler", "code", "blockquote", "pre"])
    return st.one_of(
        st.tuples(simple, children).map(lambda t: f"<{t[0]}>{t[1]}</{t[0]}>"),
        children.map(lambda c: f'<a href="https://example.com/p?q=1">{c}</a>'),
        children.map(lambda c: f'<span class="tg-spoiler">{c}</span>'),
        children.map(lambda c: f'<pre><code class="language-python">{c}</code></pre>'),
        st.just('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>'),
    )


_HTML = st.recursive(_text(), lambda children: st.lists(st.one_of(children, _wrap(children)), max_size=5).map("".join),
                     max_leaves=25)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html=_HTML, limit=st.integers(min_value=1, max_value=120), number=st.booleans())
def test_any_formatted_html_splits_into_valid_parts_that_join_back(html: str, limit: int, number: bool) -> None:
    try:
        parts = split_html(html, limit, number=number)
    except ContentqError:
        return
    for part in parts:
        assert validate_html(part) == [], (html, part)
        assert visible_len_utf16(part) <= limit, (html, part)
    if number and len(parts) > 1:
        parts = [p.rsplit("\n\n", 1)[0] for p in parts]
    assert joins_back(html, _unmarked(parts)), (html, parts)
    if parse_html(html).text.strip():
        assert parts


@settings(max_examples=200, deadline=None)
@given(html=st.text(max_size=300), limit=st.integers(min_value=-2, max_value=80))
def test_arbitrary_input_gives_valid_parts_or_a_contentq_error(html: str, limit: int) -> None:
    try:
        parts = split_html(html, limit)
    except ContentqError:
        return
    for part in parts:
        assert validate_html(part) == [] and visible_len_utf16(part) <= limit
    assert joins_back(html, parts)


def test_truncate_always_marks_the_cut_with_an_ellipsis():
    from contentq.content.split import truncate

    html = "<b>First sentence.</b> Second sentence is longer than the rest."
    assert truncate(html, 200) == (html, False)
    cut, was_cut = truncate(html, 30)
    assert was_cut and cut == "<b>First sentence. …</b>" and visible_len_utf16(cut) <= 30
    cut, _ = truncate("word " * 20, 12)
    assert html_to_text(cut) == "word word…"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html=_HTML, limit=st.integers(min_value=3, max_value=120))
def test_truncate_gives_one_valid_part_within_the_limit(html: str, limit: int) -> None:
    from contentq.content.split import truncate

    try:
        cut, was_cut = truncate(html, limit)
    except ContentqError:
        return
    assert validate_html(cut) == [] or not was_cut and cut == html
    assert visible_len_utf16(cut) <= limit or not html_to_text(html).strip()
    if was_cut:
        assert html_to_text(cut).endswith("…")


@pytest.mark.parametrize("sequence", ["🇷🇺🇺🇦", "1️⃣", "👨‍👩‍👧"])
def test_truncation_never_leaves_half_a_grapheme_cluster(sequence):
    from contentq.content.html import truncate_html
    from contentq.content.split import truncate

    html = "Флаги:" + sequence * 900
    for limit in range(1000, 1006):  # the rewriter's cut (truncate_html) and publishing's (truncate)
        for cut, _ in (truncate(html, limit), truncate_html(html, limit)):
            body = html_to_text(cut).rstrip("…").rstrip()
            assert set(regex.findall(r"\X", body[len("Флаги:") :])) <= set(regex.findall(r"\X", sequence)), limit


_TRICKY = st.sampled_from(
    ["a", " ", "\n", "\r", "\r\n", "🇷", "🇺", "🇦", "1", "\ufe0f", "\u20e3", "👨", "\u200d", "👩", "🏽", "e", "\u0301",
     "\u0915", "\u094d", "\u0937", "\u093f", "\u0600", "ᄀ", "ᅡ", "ᆨ", "가", "각", "😀", "\u200b", "й"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(_TRICKY, max_size=40))
def test_grapheme_boundaries_are_the_regex_modules(pieces: list[str]) -> None:
    from contentq.content.utf16 import grapheme_boundary

    text = "".join(pieces)
    expected = {0, len(text), *(m.end() for m in regex.finditer(r"\X", text))}
    assert {i for i in range(len(text) + 1) if grapheme_boundary(text, i)} == expected, [hex(ord(c)) for c in text]
