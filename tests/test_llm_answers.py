"""A model's answer is checked before it is accepted (issue 29, item 1): broken or forbidden HTML, an answer that
lost the original's formatting, links and custom emoji, and one far longer than the original are invalid: asked
again with what was wrong, then the post fails with the reason. Never "repaired" into something else.

The real OpenAI SDK against llmock on loopback, real Valkey and SQLite, through the rewrite job."""

from __future__ import annotations

import pytest

from contentq.errors import ConfigError
from contentq.routes import parse_routes
from contentq.store.jobs import get_job
from tests.conftest import drain
from tests.rewrite_helpers import add_post, answer, events, notifications, post, rewrite_job, write_routes

BROKEN = "<p>Новость.</p><script>alert('xss')</script><h1>Заголовок</h1><b>Важно: <i>не закрыто"
DONOR = (
    '<b>Важно:</b> <tg-emoji emoji-id="5368324170671202286">👍</tg-emoji> новый <i>Frobnicator 3</i> выходит '
    'сегодня. <a href="https://donor.example/article">Подробности</a> <tg-emoji emoji-id="5370870691140737817">🔥'
    "</tg-emoji>"
)
KEPT = (
    '<b>Новинка:</b> <tg-emoji emoji-id="5368324170671202286">👍</tg-emoji> <i>Frobnicator 3</i> уже сегодня. '
    '<a href="https://donor.example/article">Читать</a> <tg-emoji emoji-id="5370870691140737817">🔥</tg-emoji>'
)
FLAT = "Новинка: 👍 Frobnicator 3 уже сегодня. Читать 🔥"  # every entity of DONOR gone


def invalid_logged(rt, job_id: str) -> list[str]:
    return [e["message"] for e in events(rt, job_id) if e["event"] == "invalid_output"]


def test_broken_html_with_forbidden_tags_is_never_published(llm_rt, llmock, rewritten_calls):
    post_id = add_post(llm_rt, "<b>Новость.</b> Заголовок. <b>Важно:</b> <i>не закрыто</i>")
    llmock.reply(answer(BROKEN), times=3)
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")

    job = get_job(llm_rt.store, job_id)
    assert job["status"] == "failed" and "invalid output 3 times" in job["error"]
    row = post(llm_rt, post_id)
    assert row["state"] == "failed" and row["rewrite_html"] is None and rewritten_calls == []
    for problem in ("<script> is not a Telegram tag", "<h1> is not a Telegram tag", "<b> is never closed",
                    "<i> is never closed"):  # fmt: skip
        assert problem in row["state_reason"], row["state_reason"]
    assert len(invalid_logged(llm_rt, job_id)) == 3
    # Each new ask says what was wrong and how to write it.
    retry = llmock.requests[1].body["messages"][-1]["content"]
    assert "<script> is not a Telegram tag" in retry and "Use only these tags" in retry
    assert llmock.requests[1].body["messages"][-2] == {"role": "assistant", "content": answer(BROKEN)}
    assert f"rewrite of post {post_id} failed" in notifications(llm_rt)[-1]


def test_a_broken_answer_then_a_valid_one_publishes_the_valid_one(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    llmock.reply(answer(BROKEN))
    llmock.reply(answer(KEPT))
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    assert get_job(llm_rt.store, job_id)["status"] == "succeeded"
    row = post(llm_rt, post_id)
    assert row["state"] == "rewritten" and row["rewrite_html"] == KEPT
    assert len(llmock.requests) == 2 and "not valid Telegram HTML" in invalid_logged(llm_rt, job_id)[0]


def test_an_answer_that_dropped_all_formatting_and_custom_emoji_is_asked_again_then_fails(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    llmock.reply(answer(FLAT), times=3)
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    row = post(llm_rt, post_id)
    assert row["state"] == "failed" and row["rewrite_html"] is None
    assert "lost 5 of the original's 5 formatting entities, links and custom emoji" in row["state_reason"]
    assert "2 custom emoji" in row["state_reason"] and "llm.max_entity_loss" in row["state_reason"]
    retry = llmock.requests[1].body["messages"][-1]["content"]
    assert "Keep the original's formatting" in retry and "custom emoji" in retry
    assert get_job(llm_rt.store, job_id)["status"] == "failed"


def test_an_answer_six_times_longer_than_the_original_is_invalid(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    long = KEPT + " Это очень важная новость, и мы расскажем о ней подробно." * 5  # six times the original
    llmock.reply(answer(long), times=2)
    llmock.reply(answer(KEPT))
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    assert get_job(llm_rt.store, job_id)["status"] == "succeeded"
    assert post(llm_rt, post_id)["rewrite_html"] == KEPT
    logged = invalid_logged(llm_rt, job_id)
    assert len(logged) == 2 and "times as long as the original" in logged[0] and "llm.length_ratio" in logged[0]
    assert "about as long as the original" in llmock.requests[1].body["messages"][-1]["content"]


def test_the_thresholds_are_route_settings(home, llmock, rewritten_calls):
    from tests.rewrite_helpers import make_rt

    path = write_routes(home)
    path.write_text(path.read_text() + "\n[routes.news.llm]\nmax_entity_loss = 1.0\nlength_ratio = [0.1, 10]\n")
    rt = make_rt(home, llmock)
    try:
        flat, long = add_post(rt, DONOR), add_post(rt, DONOR + " ещё")
        llmock.reply(answer(FLAT))
        rewrite_job(rt, flat)
        drain(rt, "rewrite")
        llmock.reply(answer(KEPT + " Подробно." * 50))
        rewrite_job(rt, long)
        drain(rt, "rewrite")
        assert post(rt, flat)["rewrite_html"] == FLAT and post(rt, long)["state"] == "rewritten"
        assert len(llmock.requests) == 2
    finally:
        rt.close()


def test_paragraphs_and_line_breaks_map_cleanly_and_are_accepted(llm_rt, llmock):
    post_id = add_post(llm_rt, "<b>Один</b> два.\nТри четыре.")
    llmock.reply(answer("<p>Один <b>два</b>.</p>\n<p>Три<br>четыре.</p>"))
    rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    assert post(llm_rt, post_id)["rewrite_html"] == "Один <b>два</b>.\n\nТри\nчетыре."
    assert len(llmock.requests) == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<b>a <i>b</b> c</i>", "</b> closes before </i>"),
        ("a </b> b", "</b> closes no <b>"),
        ('<span class="x">a</span>', '<span> without class="tg-spoiler"'),
        ("<div>a</div>", "<div> is not a Telegram tag"),
        ("<ul><li>a</li></ul>", "<ul> is not a Telegram tag"),
        ("a <!-- note --> b", "an HTML comment"),
        ("<pre><b>x</b></pre>", "<b> inside <pre>"),
        ('<tg-emoji emoji-id="abc">😀</tg-emoji>', "numeric emoji-id"),
        ("<a>a</a>", "<a> without href"),
        ("<img src=x>", "<img> is not a Telegram tag"),
    ],
)
def test_what_makes_an_answer_invalid_html(text, problem):
    from contentq.rewrite.checks import read_answer_html

    _, problems = read_answer_html(text)
    assert any(problem in p for p in problems), problems


def test_valid_telegram_html_passes_as_it_is():
    from contentq.rewrite.checks import read_answer_html

    html = ('<b>b</b> <strong>s</strong> <i>i</i> <u>u</u> <s>s</s> <span class="tg-spoiler">x</span> '
            '<tg-spoiler>y</tg-spoiler> <a href="https://e.example">a</a> <code>c</code> '
            '<pre><code class="language-python">p &lt; 1</code></pre> <blockquote expandable>q</blockquote> '
            '<tg-emoji emoji-id="1">😀</tg-emoji>')  # fmt: skip
    assert read_answer_html(html) == (html, [])


def test_entities_count_kinds_links_and_custom_emoji():
    from contentq.rewrite.checks import entities

    counted = entities(DONOR + ' https://other.example/x <a href="https://t.me/donor">Подписаться</a> t.me/donor/5')
    assert counted == {"bold": 1, "italic": 1, "link donor.example/article": 1, "link other.example/x": 1,
                       "custom emoji 5368324170671202286": 1, "custom emoji 5370870691140737817": 1}  # fmt: skip
    # The donor's own Telegram links are not counted: the model is told to drop them.


def test_a_bad_length_band_is_refused_when_the_routes_load():
    route = {"target": "@a", "sources": ["@b"], "llm": {"length_ratio": [2, 3]}}
    with pytest.raises(ConfigError, match=r"route 'x': llm.length_ratio: .*must hold 1"):
        parse_routes({"routes": {"x": route}})
    with pytest.raises(ConfigError, match=r"llm.max_entity_loss"):
        parse_routes({"routes": {"x": {**route, "llm": {"max_entity_loss": 1.5}}}})
    defaults = parse_routes({"routes": {"x": {"target": "@a", "sources": ["@b"]}}}).get("x").llm
    assert (defaults.max_entity_loss, defaults.length_ratio) == (0.5, (0.25, 3.0))


def test_the_models_spacing_is_published_as_it_wrote_it(llm_rt, llmock):
    # Issue 29, item 8: "Привет :) Цена : 100 ₽ ,  итого  два." went out as "Привет:) Цена: 100 ₽, итого два."
    spaced = "<b>Привет :)</b> Цена : 100 ₽ ,  итого  два.\n\n\nКонец ."
    post_id = add_post(llm_rt, spaced)
    llmock.reply(answer(spaced))
    rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    assert post(llm_rt, post_id)["rewrite_html"] == spaced
