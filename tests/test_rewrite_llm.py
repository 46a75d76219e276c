"""The rewrite job driving the real OpenAI SDK against llmock on loopback, with real Valkey and SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from contentq import pipeline
from contentq.cli.app import app
from contentq.clock import now, parse
from contentq.content.html import html_to_text, validate_html, visible_len_utf16
from contentq.content.utf16 import utf16_len
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import enqueue
from contentq.runtime.worker import run_worker
from contentq.settings import get_settings, load_settings
from contentq.store.jobs import get_job
from tests.conftest import drain
from tests.rewrite_helpers import add_media, add_post, answer, events, notifications, post, write_routes

API_KEY = "sk-test-secret-0123456789abcdef"

DONOR = (
    "<b>Breaking:</b> the new <i>Frobnicator 3</i> ships today. "
    '<a href="https://donor.example/article">Full story</a>\n\nSubscribe to @donor'
)


@pytest.fixture
def rewritten_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Stands in for the publish area's pipeline step, recording which posts reached it."""
    calls: list[int] = []

    def on_rewritten(runtime: Runtime, post_id: int) -> str:
        calls.append(post_id)
        return "rewritten"

    monkeypatch.setattr(pipeline, "on_rewritten", on_rewritten)
    return calls


def make_rt(home, llmock, **overrides) -> Runtime:  # type: ignore[no-untyped-def]
    settings = load_settings(
        home=home,
        openai_base_url=llmock.base_url("openai"),
        openai_api_key=API_KEY,
        rewrite_backoff_base=1.0,
        worker_maintenance_interval=1,
        **overrides,
    )
    runtime = Runtime(settings)
    set_process_runtime(runtime)
    return runtime


@pytest.fixture
def llm_rt(home, llmock, rewritten_calls) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    write_routes(home)
    runtime = make_rt(home, llmock)
    yield runtime
    runtime.close()


def rewrite_job(rt: Runtime, post_id: int) -> str:
    return str(enqueue(rt, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id)["id"])


def test_happy_path_rewrites_with_structured_output_and_records_usage(llm_rt, llmock, rewritten_calls):
    add_post(
        llm_rt, "old", state="published", rewrite_html="<b>Earlier post</b> in our style", published_at="2024-01-01"
    )
    post_id = add_post(llm_rt, DONOR)
    llmock.reply(
        answer(
            '<b>Новинка:</b> Frobnicator 3 🚀 уже в продаже. <a href="https://donor.example/article">Подробнее</a>'
            ' and <a href="https://spam.example/buy">buy here</a> https://spam.example/x',
            title="Frobnicator 3",
            image_prompt="A shiny frobnicator on a desk",
        )
    )
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")

    job = get_job(llm_rt.store, job_id)
    assert job["status"] == "succeeded", job["error"]
    row = post(llm_rt, post_id)
    assert row["state"] == "rewritten"
    assert row["rewriter"] == "llm" and row["truncated"] == 0
    assert row["title"] == "Frobnicator 3" and row["image_prompt"] == "A shiny frobnicator on a desk"
    # Formatting kept, the donor's link kept, links the model invented removed (anchor text stays).
    assert row["rewrite_html"].startswith("<b>Новинка:</b> Frobnicator 3 🚀")
    assert '<a href="https://donor.example/article">Подробнее</a>' in row["rewrite_html"]
    assert "spam.example" not in row["rewrite_html"] and "buy here" in row["rewrite_html"]
    assert validate_html(row["rewrite_html"]) == []
    assert rewritten_calls == [post_id]

    # The request: structured output with our schema; the prompt carries the route, description, style and donor.
    body = llmock.last_request.body
    assert body["model"] == "gpt-4o-mini"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == [
        "text", "title", "image_prompt", "skip", "skip_reason"
    ]  # fmt: skip
    prompt = "\n".join(m["content"] for m in body["messages"])
    assert "Daily technology news" in prompt and "Rewrite for a tech audience" in prompt
    assert "<b>Earlier post</b> in our style" in prompt
    assert DONOR in prompt
    assert "https://my-site.example" in prompt

    usage = llm_rt.store.query("SELECT * FROM usage WHERE post_id = ?", (post_id,))
    assert len(usage) == 1 and usage[0]["route"] == "news" and usage[0]["job_id"] == job_id
    assert usage[0]["tokens_in"] > 0 and usage[0]["tokens_out"] > 0 and usage[0]["cost"] > 0
    assert json.loads(job["result"])["tokens_out"] == usage[0]["tokens_out"]

    log = events(llm_rt, job_id)
    kinds = [e["event"] for e in log]
    assert "llm_request" in kinds and "llm_response" in kinds and "validated" in kinds
    dump = json.dumps(log, ensure_ascii=False)
    assert "Frobnicator" in dump  # requests and responses are in the job log …
    assert API_KEY not in dump  # … without the secret


def test_invalid_output_twice_then_valid_succeeds_after_three_attempts_with_two_notifications(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    llmock.reply("Sure! Here is your post: Frobnicator is great")  # not JSON
    llmock.reply(json.dumps({"title": "no text", "skip": False}))  # JSON, wrong schema
    llmock.reply(answer("<b>Frobnicator 3</b> is out."))
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")

    job = get_job(llm_rt.store, job_id)
    assert job["status"] == "succeeded"
    assert json.loads(job["result"])["attempts"] == 3
    assert post(llm_rt, post_id)["rewrite_html"] == "<b>Frobnicator 3</b> is out."
    assert notifications(llm_rt) == [
        f"retrying rewrite of post {post_id}: the model returned invalid output (attempt 2/3)",
        f"retrying rewrite of post {post_id}: the model returned invalid output (attempt 3/3)",
    ]
    assert len(llmock.requests) == 3
    # The retry tells the model what was wrong.
    assert "not JSON" in llmock.requests[1].body["messages"][-1]["content"]
    assert llm_rt.store.scalar("SELECT COUNT(*) FROM usage WHERE post_id = ?", (post_id,)) == 3


def test_invalid_output_three_times_fails_with_the_raw_output_in_the_job_log(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    garbage = "I cannot produce JSON today. " * 200
    llmock.reply(garbage, times=3)
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")

    job = get_job(llm_rt.store, job_id)
    assert job["status"] == "failed" and job["attempts"] == 1  # not retried: the three model calls were the tries
    assert "invalid output 3 times" in job["error"]
    row = post(llm_rt, post_id)
    assert row["state"] == "failed" and "invalid output" in row["state_reason"]
    final = [e for e in events(llm_rt, job_id) if e["event"] == "invalid_output_final"]
    raw = json.loads(final[0]["data"])["raw_output"]
    assert raw.startswith("I cannot produce JSON today.") and len(raw) < len(garbage)
    messages = notifications(llm_rt)
    assert len(messages) == 3 and "failed: the model returned invalid output 3 times" in messages[-1]


def test_rate_limit_with_retry_after_is_retried_and_succeeds(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    llmock.rate_limit(times=1, retry_after=1)
    llmock.reply(answer("Frobnicator 3 is out."))
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")

    assert get_job(llm_rt.store, job_id)["status"] == "succeeded"
    assert post(llm_rt, post_id)["state"] == "rewritten"
    assert [r.status for r in llmock.requests] == [429, 200]
    llmock.assert_resilient()  # llmock's verdict: the client waited as long as Retry-After asked
    retry = [e for e in events(llm_rt, job_id) if e["event"] == "llm_retry"]
    assert "HTTP 429" in retry[0]["message"] and "retrying in 1.0 s" in retry[0]["message"]


def test_server_errors_are_retried_inside_the_call(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    llmock.fail(500, times=2)
    llmock.reply(answer("Frobnicator 3 is out."))
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    assert get_job(llm_rt.store, job_id)["status"] == "succeeded"
    assert [r.status for r in llmock.requests] == [500, 500, 200]


def test_context_length_exceeded_fails_at_once_and_notifies(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    llmock.context_overflow()
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")

    job = get_job(llm_rt.store, job_id)
    assert job["status"] == "failed" and job["attempts"] == 1
    assert "context window" in job["error"]
    assert len(llmock.requests) == 1
    assert post(llm_rt, post_id)["state"] == "failed"
    assert any(e["event"] == "context_too_long" for e in events(llm_rt, job_id))
    assert any(f"rewrite of post {post_id} failed" in m and "context window" in m for m in notifications(llm_rt))


def test_request_over_the_context_window_is_refused_before_sending(home, llmock, rewritten_calls):
    write_routes(home)
    rt = make_rt(home, llmock, openai_context_window=3000, openai_max_output_tokens=500)
    try:
        post_id = add_post(rt, "<b>Длинный пост</b> " + "очень много текста " * 400)
        job_id = rewrite_job(rt, post_id)
        drain(rt, "rewrite")
        job = get_job(rt.store, job_id)
        assert job["status"] == "failed" and "CONTENTQ_OPENAI_CONTEXT_WINDOW" in job["error"]
        assert llmock.requests == []  # nothing was sent (nor billed)
        assert any("context window" in m for m in notifications(rt))
    finally:
        rt.close()


def test_unauthorized_is_fatal_and_not_retried(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    llmock.fail(401)
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    job = get_job(llm_rt.store, job_id)
    assert job["status"] == "failed" and job["attempts"] == 1
    assert "CONTENTQ_OPENAI_API_KEY" in job["error"]
    assert len(llmock.requests) == 1
    assert any("refuses contentq's requests" in m for m in notifications(llm_rt))


def test_skip_from_the_model_filters_the_post(llm_rt, llmock, rewritten_calls):
    post_id = add_post(llm_rt, "Buy our course! 50% off, link in bio")
    llmock.reply(answer("", skip=True, skip_reason="advertisement"))
    rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    row = post(llm_rt, post_id)
    assert row["state"] == "filtered" and row["state_reason"] == "rewrite: advertisement"
    assert rewritten_calls == []


def test_breaker_opens_after_configured_failures_and_jobs_wait_for_the_cool_down(home, llmock, rewritten_calls):
    write_routes(home)
    rt = make_rt(home, llmock, breaker_fail_max=2, breaker_reset_timeout=3, openai_call_attempts=3)
    try:
        first, second = add_post(rt, DONOR), add_post(rt, DONOR + " (2)")
        llmock.outage(status=503)
        jobs = [rewrite_job(rt, first), rewrite_job(rt, second)]
        run_worker(rt, ["rewrite"], burst=True)

        # Two failed requests opened the breaker; the second job did not even call the endpoint.
        assert [r.status for r in llmock.requests] == [503, 503]
        for job_id in jobs:
            job = get_job(rt.store, job_id)
            assert job["status"] == "queued", job
            assert "circuit breaker" in job["retry_reason"]
            wait = parse(job["next_retry_at"]) - now()
            assert timedelta(0) < wait <= timedelta(seconds=3)
        assert {post(rt, i)["state"] for i in (first, second)} == {"collected"}
        status = CliRunner().invoke(app, ["queue", "status", "--json"], env={"CONTENTQ_HOME": str(home)})
        assert json.loads(status.stdout)["llm_breaker"]["state"] == "open"

        # After the cool-down the provider is back: both jobs run and succeed, with no retry used up.
        llmock.reset()
        llmock.reply(answer("One."), times=2)
        drain(rt, "rewrite", timeout=30)
        for job_id in jobs:
            job = get_job(rt.store, job_id)
            assert job["status"] == "succeeded"
            assert not [e for e in events(rt, job_id) if e["event"] == "retrying"]
        assert {post(rt, i)["state"] for i in (first, second)} == {"rewritten"}
        assert rewritten_calls == sorted(rewritten_calls) and len(rewritten_calls) == 2
    finally:
        rt.close()
        get_settings.cache_clear()


def test_caption_limit_applies_when_the_post_has_media(llm_rt, llmock):
    post_id = add_post(llm_rt, "<b>Фото дня</b> 📸", kind="photo")
    add_media(llm_rt, post_id)
    long_text = "<b>Фото дня 📸</b> " + " ".join(["Очень длинное описание снимка 🌄."] * 80)
    llmock.reply(answer(long_text))
    rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    row = post(llm_rt, post_id)
    assert row["state"] == "rewritten" and row["truncated"] == 1
    assert visible_len_utf16(row["rewrite_html"]) <= 1024 < utf16_len(html_to_text(long_text))
    assert row["rewrite_html"].startswith("<b>Фото дня 📸</b>") and validate_html(row["rewrite_html"]) == []
    assert "at most 1024 characters" in llmock.last_request.body["messages"][0]["content"]


def test_text_limit_cuts_nested_formatting_from_the_model(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    paragraph = '<b>Жирный <i>курсив <a href="https://donor.example/article">ссылка 🔗</a></i></b> текст. '
    llmock.reply(answer(paragraph * 200))
    rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    row = post(llm_rt, post_id)
    assert row["truncated"] == 1 and visible_len_utf16(row["rewrite_html"]) <= 4096
    assert validate_html(row["rewrite_html"]) == []
    assert html_to_text(row["rewrite_html"]).endswith("текст.")


def test_images_route_enqueues_imagegen_when_that_kind_exists(home, llmock, rewritten_calls, monkeypatch):
    from contentq.jobs import KINDS, Kind

    monkeypatch.setitem(KINDS, "imagegen", KINDS.get("imagegen") or Kind("imagegen", "tests.jobfuncs:ok", "imagegen"))
    write_routes(home, images="optional", image_backend="openai")
    rt = make_rt(home, llmock)
    try:
        with_prompt, without = add_post(rt, DONOR), add_post(rt, DONOR + " 2")
        llmock.reply(answer("A.", image_prompt="a desk"))
        rewrite_job(rt, with_prompt)
        drain(rt, "rewrite")
        llmock.reply(answer("B."))
        rewrite_job(rt, without)
        drain(rt, "rewrite")
        keys = [r["key"] for r in rt.store.query("SELECT key FROM jobs WHERE kind = 'imagegen'")]
        assert keys == [str(with_prompt)]
        child = rt.store.one("SELECT * FROM jobs WHERE kind = 'imagegen'")
        assert child is not None and child["post_id"] == with_prompt and child["parent_id"] == f"rewrite-{with_prompt}"
        assert rewritten_calls == [with_prompt, without]
    finally:
        rt.close()


def test_rewrite_command_enqueues_and_usage_command_sums(llm_rt, llmock, home):
    post_id = add_post(llm_rt, DONOR)
    other = add_post(llm_rt, DONOR + " 2")
    env = {"CONTENTQ_HOME": str(home)}
    runner = CliRunner()
    result = runner.invoke(app, ["rewrite", "--pending", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert [r["result"] for r in json.loads(result.stdout)] == ["queued", "queued"]
    again = runner.invoke(app, ["rewrite", str(post_id), "--json"], env=env)
    assert json.loads(again.stdout)[0]["result"] == "already queued"
    llmock.reply(answer("Rewritten."), times=2)
    drain(llm_rt, "rewrite")
    assert {post(llm_rt, i)["state"] for i in (post_id, other)} == {"rewritten"}

    done = runner.invoke(app, ["rewrite", str(post_id)], env=env)
    assert "skipped: post is rewritten" in done.stdout
    usage = runner.invoke(app, ["usage", "--since", "1d", "--json"], env=env)
    data = json.loads(usage.stdout)
    assert data["total"]["calls"] == 2 and data["rows"][0]["route"] == "news" and data["rows"][0]["posts"] == 2
    table = runner.invoke(app, ["usage"], env=env)
    assert "news" in table.stdout and "total" in table.stdout
    missing = runner.invoke(app, ["rewrite"], env=env)
    assert missing.exit_code != 0


def test_long_retry_after_re_enqueues_the_job_instead_of_sleeping(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    llmock.rate_limit(times=1, retry_after=120)
    job_id = rewrite_job(llm_rt, post_id)
    run_worker(llm_rt, ["rewrite"], burst=True)
    job = get_job(llm_rt.store, job_id)
    assert job["status"] == "queued" and "asks to wait 120 s" in job["retry_reason"]
    assert timedelta(seconds=100) < parse(job["next_retry_at"]) - now() <= timedelta(seconds=120)
    assert post(llm_rt, post_id)["state"] == "collected"
    assert len(llmock.requests) == 1


def test_media_only_post_is_not_sent_to_the_model(llm_rt, llmock):
    post_id = add_post(llm_rt, "", kind="photo")
    add_media(llm_rt, post_id)
    rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    row = post(llm_rt, post_id)
    assert row["state"] == "rewritten" and row["rewrite_html"] == ""
    assert llmock.requests == []
