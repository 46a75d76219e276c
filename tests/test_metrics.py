"""Prometheus metrics: the endpoint scraped over loopback, the textfile dump, and the off switch."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.ops import metrics
from contentq.runtime.context import Runtime
from contentq.runtime.queues import pause
from contentq.runtime.tracking import enqueue
from contentq.settings import load_settings
from tests.conftest import drain, subprocess_env, wait_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(data: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return data[(name, tuple(sorted(labels.items())))]


def seed(rt: Runtime) -> None:
    enqueue(rt, "call", "ok", handler="tests.jobfuncs:ok")
    enqueue(rt, "call", "fails", handler="tests.jobfuncs:always_fails")
    enqueue(rt, "call", "flood", {"delay": 1}, handler="tests.jobfuncs:reschedule_once")
    drain(rt, "maintenance")
    pause(rt.redis, "rewrite")
    enqueue(rt, "call", "waiting", handler="tests.jobfuncs:ok", queue="rewrite")
    rt.store.execute(
        "INSERT INTO posts (route, source, source_msg_id, collected_at, state, updated_at)"
        " VALUES ('news', '@d', 1, '2024-01-01T00:00:00+00:00', 'published', '2024-01-01T00:00:00+00:00')"
    )
    rt.store.execute("INSERT INTO usage (at, tokens_in, tokens_out, cost) VALUES ('2024-01-01', 120, 30, 0.25)")
    rt.redis.set("contentq:llm:pybreaker:state", "open")


def check(data: dict) -> None:  # type: ignore[type-arg]
    assert value(data, "contentq_jobs", queue="maintenance", kind="call", status="succeeded") == 2
    assert value(data, "contentq_jobs", queue="maintenance", kind="call", status="failed") == 1
    assert value(data, "contentq_job_duration_seconds_count", queue="maintenance", kind="call") == 3
    assert value(data, "contentq_job_duration_seconds_bucket", queue="maintenance", kind="call", le="+Inf") == 3
    assert value(data, "contentq_job_retries_total", queue="maintenance", kind="call") == 2  # 3 attempts
    assert value(data, "contentq_flood_waits_total", queue="maintenance", kind="call") == 1
    assert value(data, "contentq_queue_jobs", queue="rewrite", state="ready") == 1
    assert value(data, "contentq_redis_queue_length", queue="rewrite") == 1
    assert value(data, "contentq_queue_paused", queue="rewrite") == 1
    assert value(data, "contentq_oldest_queued_job_age_seconds", queue="rewrite") > 0
    assert value(data, "contentq_oldest_queued_job_age_seconds", queue="publish") == 0
    assert value(data, "contentq_posts", route="news", state="published") == 1
    assert value(data, "contentq_llm_tokens_total", direction="in") == 120
    assert value(data, "contentq_llm_cost_total") == 0.25
    assert value(data, "contentq_breaker_open", breaker="llm") == 1
    assert value(data, "contentq_breaker_state", breaker="llm", state="closed") == 0
    assert value(data, "contentq_redis_up") == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_endpoint_scraped_over_loopback(rt: Runtime) -> None:
    seed(rt)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "contentq", "metrics", "serve", "--port", str(port)],
        env=subprocess_env(rt.settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def scrape() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    return str(response.read().decode())
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                return None

        text = wait_for(scrape, 30, what="the metrics endpoint")
        check(samples(text))
        # Figures are read at scrape time: a new job shows in the next scrape.
        enqueue(rt, "call", "another", handler="tests.jobfuncs:ok", queue="rewrite")
        assert value(samples(scrape() or ""), "contentq_queue_jobs", queue="rewrite", state="ready") == 2
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def test_in_process_server_on_any_port(rt: Runtime) -> None:
    seed(rt)
    server, thread = metrics.serve(rt, 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5) as response:
            check(samples(response.read().decode()))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_dump_for_the_textfile_collector(rt: Runtime, tmp_path: Path) -> None:
    seed(rt)
    target = tmp_path / "textfile" / "contentq.prom"
    result = CliRunner().invoke(app, ["metrics", "dump", str(target)])
    assert result.exit_code == 0, result.output
    check(samples(target.read_text()))
    assert not list(target.parent.glob("*.tmp*"))  # written atomically, nothing left over
    printed = CliRunner().invoke(app, ["metrics", "dump"])
    check(samples(printed.output))


def test_metrics_can_be_turned_off(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTENTQ_METRICS_ENABLED", "false")
    env = subprocess_env(load_settings(), CONTENTQ_METRICS_ENABLED="false")
    args = [sys.executable, "-m", "contentq", "metrics", "dump"]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "CONTENTQ_METRICS_ENABLED" in result.stderr


def test_redis_down_still_serves_the_database_figures(home: Path) -> None:
    settings = load_settings(home=home, redis_url="redis://127.0.0.1:1/0")
    rt = Runtime(settings)
    try:
        data = samples(metrics.exposition(rt))
        assert value(data, "contentq_redis_up") == 0
        assert value(data, "contentq_queue_jobs", queue="publish", state="ready") == 0
    finally:
        rt.close()
