"""stats figures checked against a seeded database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, now
from contentq.errors import ContentqError
from contentq.ops.stats import collect_stats, parse_since, percentile
from contentq.runtime.context import Runtime


def hours_ago(h: float) -> str:
    return iso(now() - timedelta(hours=h))


def add_job(rt: Runtime, job_id: str, queue: str, kind: str, status: str, duration_ms: float | None,
            created_h: float = 1, retries: int = 0, reschedules: int = 0) -> None:  # fmt: skip
    with rt.store.transaction() as conn:
        conn.execute(
            "INSERT INTO jobs (id, kind, queue, key, status, duration_ms, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, kind, queue, job_id, status, duration_ms, hours_ago(created_h), hours_ago(created_h)),
        )
        for _ in range(retries):
            conn.execute("INSERT INTO job_events (job_id, at, event) VALUES (?, ?, 'retrying')", (job_id, iso()))
        for _ in range(reschedules):
            conn.execute("INSERT INTO job_events (job_id, at, event) VALUES (?, ?, 'rescheduled')", (job_id, iso()))


def add_post(rt: Runtime, n: int, route: str, state: str, updated_h: float) -> None:
    rt.store.execute(
        "INSERT INTO posts (route, source, source_msg_id, collected_at, state, updated_at)"
        " VALUES (?, '@d', ?, ?, ?, ?)",
        (route, n, hours_ago(updated_h + 1), state, hours_ago(updated_h)),
    )


def add_usage(rt: Runtime, route: str, tokens_in: int, tokens_out: int, cost: float, h: float) -> None:
    rt.store.execute(
        "INSERT INTO usage (at, route, model, tokens_in, tokens_out, cost) VALUES (?, ?, 'gpt-4o-mini', ?, ?, ?)",
        (hours_ago(h), route, tokens_in, tokens_out, cost),
    )


@pytest.fixture
def seeded(rt: Runtime) -> Runtime:
    add_job(rt, "rewrite-1", "rewrite", "rewrite", "succeeded", 100, retries=2)
    add_job(rt, "rewrite-2", "rewrite", "rewrite", "succeeded", 200, retries=1)
    add_job(rt, "rewrite-3", "rewrite", "rewrite", "succeeded", 300)
    add_job(rt, "rewrite-4", "rewrite", "rewrite", "failed", 1000, retries=2)
    add_job(rt, "rewrite-old", "rewrite", "rewrite", "failed", 5000, created_h=72)
    add_job(rt, "publish-1", "publish", "publish", "queued", None, reschedules=2)
    add_job(rt, "publish-2", "publish", "publish", "cancelled", None)
    add_job(rt, "collect-1", "collect", "collect", "succeeded", 40)
    add_post(rt, 1, "news", "published", 1)
    add_post(rt, 2, "news", "published", 72)
    add_post(rt, 3, "news", "failed", 2)
    add_post(rt, 4, "tech", "scheduled", 3)
    add_usage(rt, "news", 100, 50, 0.001, 1)
    add_usage(rt, "news", 200, 100, 0.002, 2)
    add_usage(rt, "tech", 1000, 1000, 0.5, 72)
    return rt


def test_job_figures_per_queue_and_kind(seeded: Runtime) -> None:
    data = collect_stats(seeded, timedelta(hours=24))
    jobs = {(j["queue"], j["kind"]): j for j in data["jobs"]}
    assert set(jobs) == {("rewrite", "rewrite"), ("publish", "publish"), ("collect", "collect")}
    rewrite = jobs[("rewrite", "rewrite")]
    assert rewrite["count"] == 4 and rewrite["succeeded"] == 3 and rewrite["failed"] == 1
    assert rewrite["failure_rate"] == 0.25
    assert rewrite["avg_ms"] == 400.0
    assert rewrite["p95_ms"] == 1000.0
    assert rewrite["avg_retries"] == 1.25
    publish = jobs[("publish", "publish")]
    assert publish["count"] == 2 and publish["failure_rate"] is None and publish["avg_ms"] is None
    assert publish["active"] == 1 and publish["cancelled"] == 1 and publish["reschedules"] == 2


def test_all_time_includes_old_jobs(seeded: Runtime) -> None:
    data = collect_stats(seeded, None)
    rewrite = next(j for j in data["jobs"] if j["kind"] == "rewrite")
    assert rewrite["count"] == 5 and rewrite["failed"] == 2 and rewrite["failure_rate"] == 0.4
    assert rewrite["p95_ms"] == 5000.0
    assert data["llm"]["total"] == {"calls": 3, "failed": 0, "tokens_in": 1300, "tokens_out": 1150, "cost": 0.503}


def test_posts_per_state_and_route_and_llm_usage(seeded: Runtime) -> None:
    data = collect_stats(seeded, timedelta(hours=24))
    posts = {(p["route"], p["state"]): (p["total"], p["in_window"]) for p in data["posts"]}
    assert posts == {("news", "published"): (2, 1), ("news", "failed"): (1, 1), ("tech", "scheduled"): (1, 1)}
    assert data["llm"]["total"] == {"calls": 2, "failed": 0, "tokens_in": 300, "tokens_out": 150, "cost": 0.003}
    assert data["llm"]["by_route_model"] == [
        {
            "route": "news",
            "model": "gpt-4o-mini",
            "calls": 2,
            "failed": 0,
            "tokens_in": 300,
            "tokens_out": 150,
            "cost": 0.003,
        }
    ]


def test_stats_command_json_and_table(seeded: Runtime) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["stats", "--since", "24h", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert next(j for j in data["jobs"] if j["kind"] == "rewrite")["failure_rate"] == 0.25
    table = runner.invoke(app, ["stats"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "rewrite" in table.output and "25.0" in table.output and "1,000.0" in table.output
    assert "0.0030" in table.output
    assert runner.invoke(app, ["stats", "--since", "all", "--json"]).exit_code == 0


def test_percentile_and_since_parsing() -> None:
    assert percentile([], 95) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert parse_since("all") is None
    assert parse_since("7d") == timedelta(days=7)
    with pytest.raises(ContentqError):
        parse_since("0s")
