"""The rewrite job driving the real OpenAI SDK against llmock on loopback, with real Valkey and SQLite."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rq import Queue
from rq.job import Job
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import now, parse
from contentq.content.html import html_to_text, validate_html, visible_len_utf16
from contentq.content.utf16 import utf16_len
from contentq.logs import build_handler
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.worker import run_worker
from contentq.settings import get_settings, load_settings
from contentq.store.jobs import get_job
from tests.conftest import drain, subprocess_env
from tests.rewrite_helpers import (
    add_media,
    add_post,
    answer,
    events,
    make_rt,
    notifications,
    post,
    rewrite_job,
    write_routes,
)

DONOR = (
    "<b>Breaking:</b> the new <i>Frobnicator 3</i> ships today. "
    '<a href="https://donor.example/article">Full story</a>\n\nSubscribe to @donor'
)
OUT = '<b>Frobnicator 3</b> is out: <a href="https://donor.example/article">the story</a>.'
"""An answer that keeps enough of DONOR's formatting and link (rewrite/checks.py) to be accepted."""


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
    assert "Frobnicator" in json.dumps(log, ensure_ascii=False)  # requests and responses are in the job log


def test_the_api_key_never_reaches_job_logs_job_records_or_process_logs(home, llmock, rewritten_calls, caplog):
    # A key that no generic pattern recognises (unlike "sk-…"): only the registered secret can hide it. It is
    # in the donor text (so in the prompt), in the base URL's userinfo, in the answer, and in a refusal.
    key = "Zq7Hf2LmN9pRtVw4XyZ8aBc"
    write_routes(home)
    base = llmock.base_url("openai").replace("://", f"://contentq:{key}@", 1)
    settings = load_settings(home=home, openai_base_url=base, openai_api_key=key, rewrite_backoff_base=1.0)
    rt = Runtime(settings)
    set_process_runtime(rt)
    caplog.set_level("DEBUG")
    # The worker's log output, as `contentq worker` sets it up (human lines and JSON lines).
    outputs = [io.StringIO(), io.StringIO()]
    handlers = [build_handler(settings), build_handler(settings.model_copy(update={"log_format": "json"}))]
    for handler, stream in zip(handlers, outputs, strict=True):
        handler.setStream(stream)  # type: ignore[attr-defined]
        logging.getLogger().addHandler(handler)
    try:
        leaked = add_post(rt, f"<b>Leak:</b> the key is {key}, Frobnicator 3 ships today.")
        llmock.reply(answer(f"<b>Frobnicator 3</b> ships today (key {key})."))
        ok_job = rewrite_job(rt, leaked)
        drain(rt, "rewrite")
        refused = add_post(rt, f"Another post mentioning {key}")
        llmock.fail(401, message=f"Incorrect API key provided: {key}")
        bad_job = rewrite_job(rt, refused)
        drain(rt, "rewrite")

        assert get_job(rt.store, ok_job)["status"] == "succeeded"
        assert get_job(rt.store, bad_job)["status"] == "failed"
        assert key in llmock.requests[0].body["messages"][-1]["content"]  # the donor text did go to the model
        log = rt.store.query("SELECT * FROM job_events WHERE job_id IN (?, ?)", (ok_job, bad_job))
        assert {"llm_request", "llm_response"} <= {e["event"] for e in log}
        records = {
            "job_events": log,
            "jobs": rt.store.query("SELECT * FROM jobs"),
            "notifications": rt.store.query("SELECT * FROM notifications"),
            "contentq's log records": [r.getMessage() for r in caplog.records if r.name.startswith("contentq")],
            "worker log output": [stream.getvalue() for stream in outputs],
        }
        for where, rows in records.items():
            dump = json.dumps(rows, ensure_ascii=False, default=str)
            assert dump and key not in dump, where
        assert "***" in json.dumps(log, ensure_ascii=False)
        assert "rewrite-" in outputs[0].getvalue() and "rewrite-" in outputs[1].getvalue()
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
        rt.close()
        get_settings.cache_clear()


def test_invalid_output_twice_then_valid_succeeds_after_three_attempts_with_two_notifications(llm_rt, llmock):
    post_id = add_post(llm_rt, DONOR)
    llmock.reply("Sure! Here is your post: Frobnicator is great")  # not JSON
    llmock.reply(json.dumps({"title": "no text", "skip": False}))  # JSON, wrong schema
    llmock.reply(answer(OUT))
    job_id = rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")

    job = get_job(llm_rt.store, job_id)
    assert job["status"] == "succeeded"
    assert json.loads(job["result"])["attempts"] == 3
    assert post(llm_rt, post_id)["rewrite_html"] == OUT
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
    llmock.reply(answer(OUT))
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
    llmock.reply(answer(OUT))
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
    rt = make_rt(home, llmock, breaker_fail_max=2, breaker_reset_timeout=30, openai_call_attempts=3)
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
            # Re-enqueued for the end of the cool-down (measured from when it was re-enqueued, not from now:
            # a loaded machine may take long to get here).
            wait = parse(job["next_retry_at"]) - parse(job["enqueued_at"])
            assert timedelta(0) < wait <= timedelta(seconds=30)
        assert {post(rt, i)["state"] for i in (first, second)} == {"collected"}
        env = {"CONTENTQ_HOME": str(home)}
        status = CliRunner().invoke(app, ["queue", "status", "--json"], env=env)
        assert json.loads(status.stdout)["llm_breaker"]["state"] == "open"
        text = CliRunner().invoke(app, ["queue", "status"], env=env)
        assert "open after 2 failures" in text.stdout

        # The cool-down passes (simulated: the breaker opened 31 s ago, the jobs are due) and the provider
        # is back: both jobs run and succeed, with no retry used up.
        for name in ("opened_at", "opened_at_exact"):
            key = f"contentq:llm:pybreaker:{name}"
            rt.redis.set(key, int(float(rt.redis.get(key)) - 31))
        registry = Queue("rewrite", connection=rt.redis).scheduled_job_registry
        for job_id in jobs:
            registry.schedule(Job.fetch(get_job(rt.store, job_id)["rq_id"], connection=rt.redis), datetime.now(UTC))
        llmock.reset()
        llmock.reply(answer(OUT), times=2)
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


def test_caption_limit_applies_when_the_post_has_media_under_truncate(llm_rt, llmock, home):
    write_routes(home, long_text="truncate")
    long_text = "<b>Фото дня 📸</b> " + " ".join(["Очень длинное описание снимка 🌄."] * 80)
    post_id = add_post(llm_rt, long_text.replace("снимка", "кадра"), kind="photo")
    add_media(llm_rt, post_id)
    llmock.reply(answer(long_text))
    rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    row = post(llm_rt, post_id)
    assert row["state"] == "rewritten" and row["truncated"] == 1
    assert visible_len_utf16(row["rewrite_html"]) <= 1024 < utf16_len(html_to_text(long_text))
    assert row["rewrite_html"].startswith("<b>Фото дня 📸</b>") and validate_html(row["rewrite_html"]) == []
    assert "at most 1024 characters" in llmock.last_request.body["messages"][-1]["content"]  # the post's own rule


def test_under_split_a_long_caption_from_the_model_is_kept_whole(llm_rt, llmock):
    long_text = "<b>Фото дня 📸</b> " + " ".join(["Очень длинное описание снимка 🌄."] * 80)
    post_id = add_post(llm_rt, long_text.replace("снимка", "кадра"), kind="photo")
    add_media(llm_rt, post_id)
    llmock.reply(answer(long_text))
    rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    row = post(llm_rt, post_id)
    assert row["state"] == "rewritten" and row["truncated"] == 0
    assert html_to_text(row["rewrite_html"]) == html_to_text(long_text)  # nothing cut: published as its own text
    prompt = "\n".join(m["content"] for m in llmock.last_request.body["messages"])
    assert "do not shorten it" in prompt and "at most" not in prompt
    assert "<tg-emoji emoji-id=" in prompt  # custom emoji are asked to be kept


def test_text_limit_cuts_nested_formatting_from_the_model_under_truncate(llm_rt, llmock, home):
    write_routes(home, long_text="truncate")
    paragraph = '<b>Жирный <i>курсив <a href="https://donor.example/article">ссылка 🔗</a></i></b> текст. '
    post_id = add_post(llm_rt, paragraph * 190)
    llmock.reply(answer(paragraph * 200))
    rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    row = post(llm_rt, post_id)
    assert row["truncated"] == 1 and visible_len_utf16(row["rewrite_html"]) <= 4096
    assert validate_html(row["rewrite_html"]) == []
    assert html_to_text(row["rewrite_html"]).endswith("текст.")


def test_images_route_enqueues_imagegen_when_that_kind_exists(home, llmock, rewritten_calls, monkeypatch):
    from contentq.runtime.kinds import KINDS, Kind

    monkeypatch.setitem(KINDS, "imagegen", KINDS.get("imagegen") or Kind("imagegen", "tests.jobfuncs:ok", "imagegen"))
    write_routes(home, images="optional", image_backend="openai")
    rt = make_rt(home, llmock)
    try:
        with_prompt, without = add_post(rt, DONOR), add_post(rt, DONOR + " 2")
        llmock.reply(answer(OUT, image_prompt="a desk"))
        rewrite_job(rt, with_prompt)
        drain(rt, "rewrite")
        llmock.reply(answer(OUT))
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
    llmock.reply(answer(OUT), times=2)
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


def test_a_retry_after_over_five_seconds_is_not_slept_through_by_default(llm_rt, llmock):
    assert llm_rt.settings.openai_retry_after_max == 5
    post_id = add_post(llm_rt, DONOR)
    llmock.rate_limit(times=1, retry_after=10)
    job_id = rewrite_job(llm_rt, post_id)
    run_worker(llm_rt, ["rewrite"], burst=True)
    job = get_job(llm_rt.store, job_id)
    assert job["status"] == "queued" and "asks to wait 10 s" in job["retry_reason"]
    assert timedelta(seconds=5) < parse(job["next_retry_at"]) - parse(job["enqueued_at"]) <= timedelta(seconds=10)
    assert len(llmock.requests) == 1


def test_a_short_retry_after_that_would_outlast_the_job_timeout_re_enqueues_the_job(home, llmock, rewritten_calls):
    # rewrite_timeout 8 s leaves 5 s for model calls: a 4 s wait would leave too little for the next try.
    write_routes(home)
    rt = make_rt(home, llmock, rewrite_timeout=8)
    try:
        post_id = add_post(rt, DONOR)
        llmock.rate_limit(times=1, retry_after=4)
        job_id = rewrite_job(rt, post_id)
        run_worker(rt, ["rewrite"], burst=True)
        job = get_job(rt.store, job_id)
        assert job["status"] == "queued" and "asks to wait 4 s" in job["retry_reason"], job
        assert post(rt, post_id)["state"] == "collected"
        assert len(llmock.requests) == 1
    finally:
        rt.close()


def test_a_slow_endpoint_is_cut_off_before_the_job_timeout_so_the_job_fails_cleanly(home, llmock, rewritten_calls):
    # openai_timeout is 30 s, the job's 8 s: the request gets the 5 s left, not 30 (RQ would kill it at 8).
    write_routes(home)
    rt = make_rt(home, llmock, rewrite_timeout=8, rewrite_attempts=1)
    try:
        post_id = add_post(rt, DONOR)
        llmock.delay(7)
        job_id = rewrite_job(rt, post_id)
        run_worker(rt, ["rewrite"], burst=True)
        job = get_job(rt.store, job_id)
        assert job["status"] == "failed", job
        assert "timed out" in job["error"] and "no time left for another try" in job["error"], job["error"]
        assert "JobTimeout" not in job["error"]
        assert post(rt, post_id)["state"] == "failed"
    finally:
        rt.close()


def test_breaker_cool_down_counts_from_the_exact_opening_time(settings, rt):
    from contentq.integrations.breakers import llm_breaker_state

    rt.redis.mset(
        {
            "contentq:llm:pybreaker:state": "open",
            "contentq:llm:pybreaker:fail_counter": 5,
            "contentq:llm:pybreaker:opened_at": 1000,  # pybreaker's whole seconds
            "contentq:llm:pybreaker:opened_at_exact": "1000.9",
        }
    )
    state = llm_breaker_state(settings, rt.redis, clock=lambda: 1001.0)
    assert state["state"] == "open"
    assert state["cooldown_s"] == pytest.approx(settings.breaker_reset_timeout - 0.1)


def test_unknown_post_ids_are_an_error(llm_rt):
    post_id = add_post(llm_rt, DONOR)
    result = subprocess.run(
        [sys.executable, "-m", "contentq", "rewrite", str(post_id), "999"],
        env={**subprocess_env(llm_rt.settings), "COLUMNS": "200"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert result.stderr.strip().startswith("error: no post 999") and len(result.stderr.strip().splitlines()) == 1
    assert llm_rt.store.scalar("SELECT COUNT(*) FROM jobs") == 0  # nothing enqueued


def test_the_cli_does_not_load_the_openai_sdk_to_start():
    code = "import sys, contentq.cli.app; sys.exit('openai' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=str(Path(__file__).parent.parent)).returncode == 0


def test_media_only_post_is_not_sent_to_the_model(llm_rt, llmock):
    post_id = add_post(llm_rt, "", kind="photo")
    add_media(llm_rt, post_id)
    rewrite_job(llm_rt, post_id)
    drain(llm_rt, "rewrite")
    row = post(llm_rt, post_id)
    assert row["state"] == "rewritten" and row["rewrite_html"] == ""
    assert llmock.requests == []
