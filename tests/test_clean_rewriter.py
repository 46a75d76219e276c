"""The rule-based rewriter: donor footers, links and mentions out, replacements and signature in, formatting kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contentq.content.html import html_to_text, validate_html, visible_len_utf16
from contentq.flow import pipeline
from contentq.rewrite.clean import footer_lines
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.jobs import get_job
from tests.conftest import drain
from tests.rewrite_helpers import add_post, events, post, write_routes

FOOTER = '\n\n👉 <a href="https://t.me/donor">Подписаться</a> | @donor\n<i>Donor News — every day</i>'


@pytest.fixture
def clean_rt(rt: Runtime, home, monkeypatch) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    write_routes(home, rewriter="clean")
    monkeypatch.setattr(pipeline, "on_rewritten", lambda runtime, post_id: "rewritten")
    # No OpenAI key anywhere: the clean rewriter must not need one.
    assert rt.settings.openai_api_key is None
    yield rt


def rewrite(rt: Runtime, post_id: int) -> dict:  # type: ignore[type-arg]
    job = enqueue(rt, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id)
    drain(rt, "rewrite")
    record = get_job(rt.store, job["id"])
    assert record["status"] == "succeeded", record["error"]
    return post(rt, post_id)


def test_footers_links_and_mentions_are_removed_and_formatting_kept(clean_rt):
    for n in range(6):
        add_post(clean_rt, f"<b>Old news {n}</b> about things." + FOOTER, posted_at=f"2024-01-0{n + 1}T10:00:00+00:00")
    add_post(clean_rt, "Unrelated donor line\n<i>Donor News — every day</i>", source="@other")
    post_id = add_post(
        clean_rt,
        "<b>Breaking:</b> <i>Frobnicator 3</i> is out, says @vendor_team. "
        '<a href="https://donor.example/story">Read the story</a> or https://donor.example/x\n'
        "Details on https://my-site.example/frob (ours).\n"
        '<pre><code class="language-python">@decorator\ndef f(): ...</code></pre>\n'
        "Subscribe to @donor" + FOOTER,
    )
    row = rewrite(clean_rt, post_id)

    html = row["rewrite_html"]
    text = html_to_text(html)
    assert row["state"] == "rewritten" and row["rewriter"] == "clean" and row["truncated"] == 0
    assert html.startswith("<b>News:</b> <i>Frobnicator 3</i> is out, says.")  # replacement applied, mention gone
    assert "Read the story" in text and "donor.example" not in html  # the link's words stay, the link goes
    assert "https://my-site.example/frob" in text  # allowed_links are kept
    assert '<pre><code class="language-python">@decorator\ndef f(): ...</code></pre>' in html  # code untouched
    assert "Подписаться" not in text and "Donor News" not in text and "@donor" not in text  # footer lines
    assert "Subscribe to" not in text  # the route's replacement removed the call to subscribe
    assert html.endswith("\n\n<b>My Channel</b> — @my_channel")  # signature, with its own mention
    assert validate_html(html) == []
    logged = [e["message"] for e in events(clean_rt, f"rewrite-{post_id}") if e["event"] == "cleaned"]
    assert any(m.startswith("footer line removed") for m in logged)
    assert "link removed: https://donor.example/story" in logged


def test_new_donor_without_history_keeps_its_lines_but_loses_links_and_mentions(clean_rt):
    post_id = add_post(clean_rt, "<b>Hello</b> from @donor, see https://t.me/donor/5\n<i>Donor News — every day</i>")
    html = rewrite(clean_rt, post_id)["rewrite_html"]
    # "from" and "see" led to the removed mention and link: they go with them (no dangling words)
    assert html == "<b>Hello</b>\n<i>Donor News — every day</i>\n\n<b>My Channel</b> — @my_channel"


def test_long_post_is_cut_before_the_signature_which_stays_whole_under_truncate(clean_rt, home):
    write_routes(home, rewriter="clean", long_text="truncate")
    post_id = add_post(clean_rt, "<b>Длинно.</b> " + "Предложение с эмодзи 🎉 и словами. " * 200)
    row = rewrite(clean_rt, post_id)
    assert row["truncated"] == 1
    assert visible_len_utf16(row["rewrite_html"]) <= 4096
    assert row["rewrite_html"].endswith("словами.\n\n<b>My Channel</b> — @my_channel")


def test_long_post_is_kept_whole_under_split(clean_rt):
    body = "<b>Длинно.</b> " + "Предложение с эмодзи 🎉 и словами. " * 200
    post_id = add_post(clean_rt, body)
    row = rewrite(clean_rt, post_id)
    assert row["truncated"] == 0
    assert html_to_text(row["rewrite_html"]) == html_to_text(body).strip() + "\n\nMy Channel — @my_channel"
    assert visible_len_utf16(row["rewrite_html"]) > 4096  # publishing splits it into messages


def test_footer_detection_needs_a_large_share_of_recent_posts():
    posts = [f"post {n}\nSubscribe: @donor" for n in range(10)]
    posts[0] += "\nRare line"
    posts[1] += "\nRare line"
    assert footer_lines(posts, 0.5) == {"subscribe: @donor"}
    assert footer_lines(posts, 0.1) == {"subscribe: @donor", "rare line"}
    assert footer_lines(posts[:1], 0.5) == set()  # one post says nothing about what repeats


def test_rewriter_none_publishes_the_donor_text_as_is_within_the_limit(rt, home, monkeypatch):
    write_routes(home, rewriter="none")
    monkeypatch.setattr(pipeline, "on_rewritten", lambda runtime, post_id: "rewritten")
    post_id = add_post(rt, '<b>Keep</b> <a href="https://donor.example">everything</a> @donor <div>x</div>')
    row = rewrite(rt, post_id)
    assert row["rewriter"] == "none"
    assert row["rewrite_html"] == '<b>Keep</b> <a href="https://donor.example">everything</a> @donor x'


def test_a_rerun_after_the_rewrite_only_runs_the_steps_after_it(rt, home, monkeypatch):
    write_routes(home, rewriter="clean")
    reached: list[int] = []
    monkeypatch.setattr(pipeline, "on_rewritten", lambda runtime, post_id: reached.append(post_id) or "rewritten")
    post_id = add_post(rt, "donor text", state="rewritten", rewrite_html="<b>done before</b>", rewriter="clean")
    row = rewrite(rt, post_id)
    assert row["rewrite_html"] == "<b>done before</b>"  # not rewritten twice
    assert reached == [post_id]
    assert "resumed" in [e["event"] for e in events(rt, f"rewrite-{post_id}")]


SPACED = "Привет :) Цена : 100 ₽ ,  итого  два."
"""Spacing as a donor wrote it (issue 29, item 8): no rewriter may "correct" it."""


@pytest.mark.parametrize("rewriter", ["clean", "none"])
def test_spacing_between_words_and_punctuation_is_kept_as_sent(rt, home, monkeypatch, rewriter):
    write_routes(home, rewriter=rewriter)
    monkeypatch.setattr(pipeline, "on_rewritten", lambda runtime, post_id: "rewritten")
    post_id = add_post(rt, f"<b>{SPACED}</b>\nВторая  строка ,  тоже .")
    html = rewrite(rt, post_id)["rewrite_html"]
    expected = f"<b>{SPACED}</b>\nВторая  строка ,  тоже ."
    assert html == (expected + "\n\n<b>My Channel</b> — @my_channel" if rewriter == "clean" else expected)


def test_a_removal_takes_its_own_space_and_empty_brackets_and_leaves_the_rest(clean_rt):
    post_id = add_post(
        clean_rt,
        "Павел Дуров (@durov) рассказал о планах ,  сказал он.\n"
        "Слово [ @vendor_team ] и « https://donor.example/x » тоже,  как  было.\n"
        "@vendor_team пишет: всё  хорошо (см. https://donor.example/y).\n"
        "Данные (источник: @rian_ru), как  есть.\n"
        "Подробнее: https://donor.example/z\n"
        "Источник: @rian_ru",
    )
    text = html_to_text(rewrite(clean_rt, post_id)["rewrite_html"])
    assert text.split("\n\n")[0] == (
        "Павел Дуров рассказал о планах ,  сказал он.\n"
        "Слово и тоже,  как  было.\n"
        "пишет: всё  хорошо.\n"
        "Данные, как  есть."
    )


def test_a_line_left_as_a_call_to_subscribe_to_nothing_goes(clean_rt):
    post_id = add_post(clean_rt, "Большая новость дня.\n\nПодписывайся на @donor\n\nЕщё одна строка.")
    html = rewrite(clean_rt, post_id)["rewrite_html"]
    assert html == "Большая новость дня.\n\nЕщё одна строка.\n\n<b>My Channel</b> — @my_channel"


def test_a_post_that_is_only_footer_is_filtered_not_published(clean_rt):
    post_id = add_post(clean_rt, "Подписывайся на @donor")
    job = enqueue(clean_rt, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id)
    drain(clean_rt, "rewrite")
    assert get_job(clean_rt.store, job["id"])["status"] == "succeeded"
    row = post(clean_rt, post_id)
    assert row["state"] == "filtered" and row["rewrite_html"] is None
    assert (
        row["state_reason"] == "rewrite: empty after cleaning: nothing is left once the donor's footer, links and"
        " mentions are removed"
    )
