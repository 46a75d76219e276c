"""An LLM endpoint that does not answer: posts wait for it as long as their route's llm_patience, then fail with
the reason and one alert; `jobs retry` tries a waiting job now; every failed request counts in usage and stats.
The real OpenAI SDK against a closed port on loopback (and llmock), real Valkey and SQLite."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.worker import run_worker
from contentq.settings import get_settings, load_settings
from contentq.store.jobs import get_job
from tests.conftest import drain
from tests.rewrite_helpers import API_KEY, add_post, answer, events, make_rt, post, rewrite_job, write_routes

runner = CliRunner()

DONOR = "<b>Breaking:</b> the new <i>Frobnicator 3</i> ships today."
OUT = "<b>Frobnicator 3</b> ships <i>today</i>."


def closed_port() -> int:
    """A loopback port nobody listens on: every request is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def with_patience(home: Path, patience: str) -> None:
    routes = write_routes(home)
    text = routes.read_text().replace('rewriter = "llm"', f'rewriter = "llm"\nllm_patience = "{patience}"', 1)
    routes.write_text(text)


@pytest.fixture
def down_rt(home: Path, rewritten_calls: list[int]) -> Runtime:
    with_patience(home, "3s")
    settings = load_settings(
        home=home, openai_base_url=f"http://127.0.0.1:{closed_port()}/v1", openai_api_key=API_KEY,
        openai_call_attempts=1, rewrite_backoff_base=1.0, breaker_fail_max=2, breaker_reset_timeout=1,
        worker_maintenance_interval=1,
    )  # fmt: skip
    rt = Runtime(settings)
    set_process_runtime(rt)
    yield rt
    rt.close()
    get_settings.cache_clear()


@pytest.mark.timeout(120)
def test_an_unreachable_endpoint_fails_the_posts_after_the_patience_with_one_alert(down_rt: Runtime) -> None:
    rt = down_rt
    posts = [add_post(rt, DONOR), add_post(rt, DONOR + " (2)"), add_post(rt, DONOR + " (3)")]
    jobs = [rewrite_job(rt, p) for p in posts]
    drain(rt, "rewrite", timeout=60)  # runs until no job waits any more

    for post_id, job_id in zip(posts, jobs, strict=True):
        row = post(rt, post_id)
        assert row["state"] == "failed", row
        assert "the LLM endpoint has not answered for" in row["state_reason"]
        assert "route news waits 3s, llm_patience" in row["state_reason"]
        job = get_job(rt.store, job_id)
        assert job["status"] == "failed" and "llm_patience" in job["error"]
        names = [e["event"] for e in events(rt, job_id)]
        assert names.count("llm_waiting") == 1 and "llm_outage" in names
        assert "rescheduled" in names  # it waited before it gave up
    alerts = rt.store.query("SELECT key, message FROM notifications WHERE key LIKE 'llm-outage:%'")
    assert len(alerts) == 1 and "llm_patience" in alerts[0]["message"]
    assert "contentq jobs retry --all-failed --queue rewrite" in alerts[0]["message"]
    assert not rt.store.query("SELECT 1 FROM notifications WHERE key LIKE 'rewrite-failed:%'")  # not one per post

    # Every request that was refused is counted: usage and stats say so.
    failed = int(rt.store.scalar("SELECT COUNT(*) FROM usage WHERE error IS NOT NULL"))
    assert failed >= 2
    env = {"CONTENTQ_HOME": str(rt.settings.home)}
    usage = json.loads(runner.invoke(app, ["usage", "--json"], env=env).output)
    assert usage["total"]["calls"] == usage["total"]["failed"] == failed
    stats = json.loads(runner.invoke(app, ["stats", "--json"], env=env).output)
    assert stats["llm"]["total"]["failed"] == failed
    shown = runner.invoke(app, ["stats"], env={**env, "COLUMNS": "120"}).output
    assert "no LLM calls" not in shown and "failed" in shown


@pytest.mark.timeout(120)
def test_jobs_retry_tries_a_waiting_job_now_through_the_open_breaker(home, llmock, rewritten_calls) -> None:
    write_routes(home)
    rt = make_rt(home, llmock, breaker_fail_max=1, breaker_reset_timeout=3600, openai_call_attempts=1)
    try:
        post_id = add_post(rt, DONOR)
        llmock.outage(status=503)
        job_id = rewrite_job(rt, post_id)
        run_worker(rt, ["rewrite"], burst=True)
        waiting = get_job(rt.store, job_id)
        assert waiting["status"] == "queued" and waiting["next_retry_at"], waiting  # an hour's cool-down
        assert "circuit breaker" in waiting["retry_reason"]

        llmock.reset()
        llmock.reply(answer(OUT))
        result = runner.invoke(app, ["jobs", "retry", job_id], env={"CONTENTQ_HOME": str(home)})
        assert result.exit_code == 0, result.output
        assert "runs now" in result.output
        assert get_job(rt.store, job_id)["next_retry_at"] is None
        run_worker(rt, ["rewrite"], burst=True)

        assert get_job(rt.store, job_id)["status"] == "succeeded"
        assert post(rt, post_id)["state"] == "rewritten"
        names = [e["event"] for e in events(rt, job_id)]
        assert "tried_now" in names and "trial" in names
        state = json.loads(runner.invoke(app, ["queue", "status", "--json"], env={"CONTENTQ_HOME": str(home)}).output)
        assert state["llm_breaker"]["state"] == "closed"  # the trial call closed it
    finally:
        rt.close()
        get_settings.cache_clear()


def test_a_route_patience_must_be_a_duration(home: Path) -> None:
    with_patience(home, "soon")
    result = runner.invoke(app, ["doctor", "--json"], env={"CONTENTQ_HOME": str(home)})
    config = next(p for p in json.loads(result.output) if p["check"] == "config")
    assert config["status"] == "fail" and "llm_patience" in config["detail"] and "not a duration" in config["detail"]


def test_a_queued_job_that_waits_for_nothing_is_not_retried(home: Path, rt: Runtime) -> None:
    from contentq.runtime.tracking import enqueue

    row = enqueue(rt, "call", "soon", handler="tests.jobfuncs:ok")
    result = runner.invoke(app, ["jobs", "retry", row["id"]])
    assert result.exit_code == 1 and "runs as soon as a worker of queue" in str(result.exception)
    drain(rt)
