"""Hostile LLM answers through a real rewrite job (real SDK, Valkey, SQLite): every case ends with the post and
the job in a final or waiting state, the breaker told, the admin alerted. Answers llmock cannot give come from
a small local server (tests/llm_server.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from contentq.clock import now, parse
from contentq.flow import pipeline
from contentq.integrations.breakers import llm_breaker_state
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import enqueue
from contentq.runtime.worker import run_worker
from contentq.settings import load_settings
from contentq.store.jobs import get_job
from tests.conftest import drain
from tests.llm_server import Canned, LocalLLM, completion, error, local_llm  # noqa: F401 - fixture
from tests.rewrite_helpers import add_post, answer, events, notifications, post, write_routes

DONOR = "<b>Breaking:</b> the new <i>Frobnicator 3</i> ships today."
GOOD = completion(answer("<b>Frobnicator 3</b> is out."))


@pytest.fixture
def rewritten(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def on_rewritten(runtime: Runtime, post_id: int) -> str:
        calls.append(post_id)
        return "rewritten"

    monkeypatch.setattr(pipeline, "on_rewritten", on_rewritten)
    return calls


def _runtime(home: Path, base_url: str, **overrides: object) -> Runtime:
    write_routes(home)
    settings = load_settings(
        home=home, openai_base_url=base_url, openai_api_key="sk-test-hostile-0123456789", rewrite_backoff_base=1.0,
        worker_maintenance_interval=1, **overrides,
    )  # fmt: skip
    runtime = Runtime(settings)
    set_process_runtime(runtime)
    return runtime


@pytest.fixture
def rt(home: Path, local_llm: LocalLLM, rewritten: list[int]) -> Iterator[Runtime]:  # noqa: F811
    runtime = _runtime(home, local_llm.base_url)
    yield runtime
    runtime.close()


def _rewrite(rt: Runtime, post_id: int, handler: str | None = None) -> str:
    return str(enqueue(rt, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id, handler=handler)["id"])


@pytest.mark.parametrize("retry_after", ["1e12", "99999999999", "inf"])
def test_a_retry_after_beyond_an_hour_is_an_outage_the_job_waits_an_hour(rt, local_llm, retry_after):  # noqa: F811
    post_id = add_post(rt, DONOR)
    local_llm.queue(error(429, "slow down", headers={"Retry-After": retry_after}))
    job_id = _rewrite(rt, post_id)
    run_worker(rt, ["rewrite"], burst=True)

    job = get_job(rt.store, job_id)
    assert job["status"] == "queued", job  # rescheduled, not stuck in_progress (1e12 used to overflow)
    wait = parse(job["next_retry_at"]) - now()
    assert timedelta(minutes=55) < wait <= timedelta(hours=1)
    assert "taken as an outage" in job["retry_reason"]
    row = post(rt, post_id)
    assert row["state"] == "collected" and row["state_reason"].startswith("waiting:")
    assert llm_breaker_state(rt.settings, rt.redis)["state"] == "open"  # every worker holds off
    assert any(m.startswith("LLM calls paused") for m in notifications(rt))
    assert len(local_llm.chat_requests) == 1


BAD_200 = {
    "html page": Canned(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"}),
    "broken json": Canned(200, b'{"id": "chatcmpl-1", "choices": [{"message": '),
    "lone surrogate": Canned(200, completion('"<b>Frobnicator</b> \\ud800 is out"', raw=True)),
    "no message": Canned(200, b'{"id": "c", "object": "chat.completion", "choices": [{"index": 0}]}'),
}


@pytest.mark.parametrize("case", list(BAD_200))
def test_a_200_that_is_no_valid_answer_is_invalid_output_counted_by_the_breaker(rt, local_llm, case):  # noqa: F811
    post_id = add_post(rt, DONOR)
    local_llm.queue(BAD_200[case])
    job_id = _rewrite(rt, post_id)
    drain(rt, "rewrite")

    job = get_job(rt.store, job_id)
    assert job["status"] == "failed" and job["attempts"] == 1, job  # the three asks were the tries
    assert "invalid output 3 times" in job["error"]
    row = post(rt, post_id)
    assert row["state"] == "failed" and "invalid output" in row["state_reason"]
    assert len(local_llm.chat_requests) == 3
    assert llm_breaker_state(rt.settings, rt.redis)["failures"] == 3
    alerts = notifications(rt)
    assert len(alerts) == 3 and f"rewrite of post {post_id} failed" in alerts[-1]
    logged = [e["message"] for e in events(rt, job_id) if e["event"] == "invalid_output"]
    assert len(logged) == 3


def test_an_html_page_then_a_good_answer_succeeds_on_the_second_ask(rt, local_llm, rewritten):  # noqa: F811
    post_id = add_post(rt, DONOR)
    local_llm.queue(BAD_200["html page"], GOOD)
    job_id = _rewrite(rt, post_id)
    drain(rt, "rewrite")
    job = get_job(rt.store, job_id)
    assert job["status"] == "succeeded" and json.loads(job["result"])["attempts"] == 2
    assert post(rt, post_id)["rewrite_html"] == "<b>Frobnicator 3</b> is out." and rewritten == [post_id]
    assert notifications(rt) == [f"retrying rewrite of post {post_id}: the model returned invalid output (attempt 2/3)"]
    assert "without a chat completion" in " ".join(e["message"] for e in events(rt, job_id))


def test_a_partial_structured_output_is_not_accepted(rt, local_llm):  # noqa: F811
    post_id = add_post(rt, DONOR)
    local_llm.queue(completion(json.dumps({"text": "<b>Frobnicator</b>", "skip": False})))
    job_id = _rewrite(rt, post_id)
    drain(rt, "rewrite")
    job = get_job(rt.store, job_id)
    assert job["status"] == "failed" and "missing: title, image_prompt, skip_reason" in job["error"]
    assert post(rt, post_id)["state"] == "failed"
    assert len(local_llm.chat_requests) == 3 and len(notifications(rt)) == 3


def test_a_huge_invalid_answer_is_echoed_back_only_as_a_short_excerpt(rt, local_llm):  # noqa: F811
    post_id = add_post(rt, DONOR)
    huge = "I will not answer in JSON. " * 8000  # 216,000 characters
    local_llm.queue(completion(huge), GOOD)
    job_id = _rewrite(rt, post_id)
    drain(rt, "rewrite")
    assert get_job(rt.store, job_id)["status"] == "succeeded"
    assert post(rt, post_id)["state"] == "rewritten"
    retry = local_llm.chat_requests[1].body
    assert retry is not None
    echoed = retry["messages"][-2]
    assert echoed["role"] == "assistant" and echoed["content"].startswith("I will not answer in JSON.")
    assert len(echoed["content"]) < 600 and "more characters not shown" in echoed["content"]
    assert len(retry["messages"][-1]["content"]) < 800  # the correction itself is bounded too


@pytest.mark.parametrize(
    "body",
    [completion(None, refusal="I can't help with that."),
     completion(json.dumps({"refusal": "I can't help with that."}))],
    ids=["message.refusal", "refusal in the JSON"],
)  # fmt: skip
def test_a_refusal_fails_the_post_with_the_reason_and_alerts(rt, local_llm, rewritten, body):  # noqa: F811
    post_id = add_post(rt, DONOR)
    local_llm.queue(body)
    job_id = _rewrite(rt, post_id)
    drain(rt, "rewrite")
    job = get_job(rt.store, job_id)
    assert job["status"] == "failed" and job["attempts"] == 1, job
    row = post(rt, post_id)
    assert row["state"] == "failed" and row["state_reason"] == "rewrite: the model refused: I can't help with that."
    assert notifications(rt) == [f"rewrite of post {post_id} failed: the model refused: I can't help with that."]
    assert len(local_llm.chat_requests) == 1 and rewritten == []


def test_the_rewrite_deadline_counts_the_jobs_cold_start(home, llmock, rewritten, tmp_path, monkeypatch):
    # The handler's module takes 4 s to import (as the OpenAI SDK can on a cold worker). RQ's 8 s clock started
    # before it; model calls must be over by 8 - 3 s after the job's start, not after the handler's.
    module = tmp_path / "cold_rewrite_module.py"
    module.write_text("import time\ntime.sleep(4)\nfrom contentq.jobs.rewrite import run\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("cold_rewrite_module", None)
    runtime = _runtime(home, llmock.base_url("openai"), rewrite_timeout=8, rewrite_attempts=1)
    try:
        post_id = add_post(runtime, DONOR)
        llmock.delay(7)
        job_id = _rewrite(runtime, post_id, handler="cold_rewrite_module:run")
        run_worker(runtime, ["rewrite"], burst=True)
        job = get_job(runtime.store, job_id)
        assert job["status"] == "failed", job
        assert "JobTimeout" not in (job["error"] or "") and "no time left" in job["error"], job["error"]
        assert post(runtime, post_id)["state"] == "failed"  # settled, not left 'rewriting' by a killed job
        assert llmock.requests == []  # no call was started that the job could not see through
    finally:
        runtime.close()
