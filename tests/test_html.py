"""Telegram HTML: parsing, validation, links, and cutting to a limit counted in UTF-16 units."""

from __future__ import annotations

import pytest

from contentq.content.html import (
    collect_links,
    html_to_text,
    link_allowed,
    normalize_html,
    parse_html,
    truncate_html,
    validate_html,
    visible_len_utf16,
)
from contentq.content.utf16 import utf16_len


def test_supported_tags_pass_validation_and_survive_a_round_trip():
    html = (
        "<b>b</b> <strong>s</strong> <i>i</i> <em>e</em> <u>u</u> <ins>n</ins> <s>s</s> <strike>k</strike> "
        '<del>d</del> <span class="tg-spoiler">sp</span> <tg-spoiler>t</tg-spoiler> '
        '<a href="https://example.com/a?x=1&amp;y=2">link</a> <code>c</code> '
        '<pre><code class="language-python">print("hi")</code></pre> <blockquote>q</blockquote> '
        '<blockquote expandable>long</blockquote> <tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>'
    )
    assert validate_html(html) == []
    assert normalize_html(html) == html.replace('print("hi")', "print(&quot;hi&quot;)").replace("&quot;", '"')


def test_entities_are_decoded_for_length_and_reescaped_on_output():
    html = "a &lt;b&gt; &amp; c"
    assert html_to_text(html) == "a <b> & c"
    assert visible_len_utf16(html) == 9
    assert normalize_html(html) == html


@pytest.mark.parametrize(
    ("html", "problem"),
    [
        ("<b>bold <i>both</b> italic</i>", "not properly nested"),
        ("<b>never closed", "never closed"),
        ("stray</i>", "without a matching"),
        ("<div>block</div>", "unsupported tag <div>"),
        ('<span class="x">no spoiler</span>', "tg-spoiler"),
        ("<a>no href</a>", "without href"),
        ("<code><b>x</b></code>", "inside <code>"),
        ('<a href="https://a.example"><a href="https://b.example">x</a></a>', "<a> inside <a>"),
        ("<blockquote><blockquote>x</blockquote></blockquote>", "inside <blockquote>"),
    ],
)
def test_invalid_html_is_reported(html, problem):
    problems = validate_html(html)
    assert any(problem in p for p in problems), problems


def test_overlapping_tags_are_repaired_into_proper_nesting():
    fixed = normalize_html("<b>bold <i>both</b> italic</i> <div>x</div>")
    assert fixed == "<b>bold <i>both</i></b><i> italic</i> x\n"
    assert validate_html(fixed) == []


def test_links_are_collected_from_anchors_and_bare_urls_but_not_code():
    html = (
        'Read <a href="https://news.example/item/1">this</a>, or https://other.example/page. '
        "Channel: t.me/somewhere <code>https://not-a-link.example</code>"
    )
    assert collect_links(html) == ["https://news.example/item/1", "https://other.example/page", "t.me/somewhere"]


def test_link_allowed_matches_sites_paths_and_subdomains():
    allowed = ["https://my-site.example", "t.me/my_channel"]
    assert link_allowed("https://my-site.example/post/1", allowed)
    assert link_allowed("http://www.my-site.example", allowed)
    assert link_allowed("https://blog.my-site.example/x", allowed)
    assert link_allowed("https://t.me/my_channel/42", allowed)
    assert not link_allowed("https://evil.example/my-site.example", allowed)
    assert not link_allowed("https://t.me/my_channel_fake", allowed)


def test_text_that_fits_is_returned_unchanged():
    html = "<b>Short</b> post"
    assert truncate_html(html, 4096) == (html, False)


def test_cut_at_a_sentence_boundary_when_one_is_near():
    html = "<b>First sentence here.</b> Second one is <i>longer than the limit</i> allows."
    cut, truncated = truncate_html(html, 40)
    assert truncated
    assert cut == "<b>First sentence here.</b>"


def test_cut_at_a_word_boundary_with_an_ellipsis_inside_open_tags():
    html = "<b>one two <i>three four five six seven</i> eight</b>"
    cut, truncated = truncate_html(html, 20)
    assert truncated
    assert cut == "<b>one two <i>three four…</i></b>"
    assert visible_len_utf16(cut) <= 20
    assert validate_html(cut) == []


def test_nested_entities_over_4096_utf16_units_are_cut_correctly_with_emoji_and_cyrillic():
    # Each paragraph: nested bold/italic/link/spoiler, Cyrillic words and emoji outside the BMP (2 UTF-16 units).
    paragraph = (
        '<b>Заголовок 🚀 <i>новости</i></b> — <a href="https://news.example/1"><i>подробнее 👉</i></a> '
        'текст <span class="tg-spoiler">спойлер 🔥🔥</span> и ещё немного слов. Второе предложение 😀!\n'
    )
    html = "<blockquote>" + paragraph * 60 + "</blockquote>"
    text = html_to_text(html)
    assert len(text) < utf16_len(text)  # the emoji make UTF-16 longer than Python's count
    assert utf16_len(text) > 4096

    cut, truncated = truncate_html(html, 4096)
    assert truncated
    assert validate_html(cut) == []  # every entity is closed, properly nested
    visible = html_to_text(cut)
    assert utf16_len(visible) <= 4096
    assert utf16_len(visible) > 4096 * 0.9  # not cut much further back than needed
    assert text.startswith(visible)  # a clean prefix: no half emoji, no ellipsis needed at a sentence end
    assert visible.endswith(("!", "."))
    visible.encode("utf-8")  # no lone surrogate
    assert cut.startswith("<blockquote>") and cut.endswith("</blockquote>")


def test_cut_never_splits_an_emoji_or_a_custom_emoji():
    html = "x" * 9 + '<tg-emoji emoji-id="1">👍🏽</tg-emoji>' + "y" * 10
    cut, truncated = truncate_html(html, 12)
    assert truncated
    assert "tg-emoji" not in cut
    assert html_to_text(cut) == "x" * 9 + "…"
    cut, _ = truncate_html("ab😀😀😀😀 tail text here", 5)
    assert utf16_len(html_to_text(cut)) <= 5
    html_to_text(cut).encode("utf-8")


def test_caption_limit_cut_counts_utf16_units():
    words = " ".join(["слово🙂"] * 400)  # 7 UTF-16 units a word + a space
    cut, truncated = truncate_html(f"<i>{words}</i>", 1024)
    assert truncated
    assert utf16_len(html_to_text(cut)) <= 1024
    assert html_to_text(cut).endswith("слово🙂…")


def test_parse_keeps_formatting_runs():
    parsed = parse_html("<b>a<i>b</i></b>c")
    assert [(r.text, [t.name for t in r.tags]) for r in parsed.runs] == [("a", ["b"]), ("b", ["b", "i"]), ("c", [])]


@pytest.mark.parametrize(
    ("text", "links"),
    [
        ("Go to evil.com/path now", ["evil.com/path"]),
        ("short: bit.ly/x.", ["bit.ly/x"]),
        ("see www.example.org, then", ["www.example.org"]),
        ("(example.com) and sub.domain.co.uk/a?b=1", ["example.com", "sub.domain.co.uk/a?b=1"]),
        ("port evil.com:8080/x", ["evil.com:8080/x"]),
        ("сайт пример.рф/путь", ["пример.рф/путь"]),
        ("served at app.py/login", ["app.py/login"]),
    ],
)
def test_bare_domains_are_links_as_telegram_links_them(text, links):
    assert collect_links(text) == links


@pytest.mark.parametrize(
    "text",
    [
        "Version v1.2 is out, e.g. today; i.e. now.",
        "Edit file.py, Node.js and README.md or main.rs",
        "pi is 3.14, the U.S.A. and Mr.Smith went there.Today",
        "mail me at user@example.com",
        "path src/evil.com is a folder",
        "<code>evil.com/path</code>",
    ],
)
def test_ordinary_text_is_not_taken_for_a_bare_domain(text):
    assert collect_links(text) == []


def test_bare_domains_not_permitted_are_removed_by_finalize():
    from contentq.rewrite.finalize import finalize_html

    html = "Buy at evil.com/path or bit.ly/x! Our site: my-site.com/news. Read file.py v1.2 e.g. here."
    final = finalize_html(html, permitted_links=["https://my-site.com"], limit=4096)
    assert "evil.com" not in final.html and "bit.ly" not in final.html
    assert "my-site.com/news" in final.html and "file.py v1.2 e.g. here." in final.html
    assert any("evil.com/path" in note and "bit.ly/x" in note for note in final.notes)


def test_formatting_does_not_hide_a_bare_domain_from_the_link_check():
    from contentq.rewrite.finalize import finalize_html

    final = finalize_html("Buy at <b>evil</b>.com/x now, <i>v1.2</i> e.g. here", permitted_links=[], limit=4096)
    assert "evil" not in final.html and ".com" not in final.html
    assert final.html == "Buy at now, <i>v1.2</i> e.g. here"
