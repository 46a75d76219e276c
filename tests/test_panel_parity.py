"""What operators of Sidekiq's Web UI, rq-dashboard or Flower expect (issue 25), on the API and the CLI: bulk
retry and cancel by queue, kind and age with a count first; search of posts by their words (SQLite FTS5 over the
original and the rewritten text); the workers; the sources."""

from __future__ import annotations

from datetime import timedelta

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app as cli
from contentq.clock import iso, now
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.jobs import get_job
from contentq.store.search import match_query
from tests.panel_helpers import seed
from tests.publish_helpers import add_post
from tests.web_helpers import client, failed_job, json_of

runner = CliRunner()


def failed_in(rt: Runtime, queue: str, key: str, *, kind: str = "noop", age: timedelta | None = None) -> str:
    """A failed job of this queue (and kind, and age)."""
    job_id = failed_job(rt, key)
    created = iso(now() - age) if age else iso()
    rt.store.execute("UPDATE jobs SET queue = ?, kind = ?, created_at = ? WHERE id = ?", (queue, kind, created, job_id))
    return job_id


# -- bulk retry and cancel ---------------------------------------------------------------------------------


def test_cli_retries_every_failed_job_of_a_queue_after_saying_how_many(rt: Runtime) -> None:
    rewrite = [failed_in(rt, "rewrite", f"r{n}") for n in range(3)]
    other = failed_in(rt, "collect", "c0")
    refused = runner.invoke(cli, ["jobs", "retry", "--all", "--queue", "rewrite", "--status", "failed"], input="n\n")
    assert "retry 3 failed jobs of queue rewrite?" in refused.output and refused.exit_code == 1
    assert "add --yes" in str(refused.exception)
    assert {get_job(rt.store, j)["status"] for j in rewrite} == {"failed"}  # nothing done on "no"
    done = runner.invoke(cli, ["jobs", "retry", "--all", "--queue", "rewrite", "--status", "failed"], input="y\n")
    assert done.exit_code == 0 and "3 failed job(s) queued again" in done.output, done.output
    assert {get_job(rt.store, j)["status"] for j in rewrite} == {"queued"}
    assert get_job(rt.store, other)["status"] == "failed"  # another queue: untouched
    assert [e["event"] for e in rt.store.query("SELECT event FROM job_events WHERE job_id = ?", (rewrite[0],))][
        -1
    ] == "restarted"
    none_left = runner.invoke(cli, ["jobs", "retry", "--all", "--queue", "rewrite", "--yes"])
    assert none_left.exit_code == 0 and "no failed jobs of queue rewrite" in none_left.output


def test_cli_bulk_filters_by_kind_and_age_and_cancels_queued_jobs(rt: Runtime) -> None:
    old = failed_in(rt, "maintenance", "old", age=timedelta(hours=3))
    new = failed_in(rt, "maintenance", "new")
    other_kind = failed_in(rt, "maintenance", "k", kind="settle", age=timedelta(hours=3))
    result = runner.invoke(cli, ["jobs", "retry", "--all", "--kind", "noop", "--older-than", "1h", "--yes"])
    assert result.exit_code == 0 and "1 failed job(s) queued again" in result.output, result.output
    assert [get_job(rt.store, j)["status"] for j in (old, new, other_kind)] == ["queued", "failed", "failed"]
    waiting = [enqueue(rt, "noop", f"w{n}")["id"] for n in range(2)]
    cancelled = runner.invoke(cli, ["jobs", "cancel", "--all", "--queue", "maintenance", "--since", "1h", "--yes"])
    assert cancelled.exit_code == 0 and "2 queued job(s) cancelled" in cancelled.output, cancelled.output
    assert {get_job(rt.store, j)["status"] for j in waiting} == {"cancelled"}
    assert get_job(rt.store, old)["status"] == "queued"  # created 3 h ago: outside --since 1h
    wrong = runner.invoke(cli, ["jobs", "retry", "--all", "--status", "queued", "--yes"])
    assert wrong.exit_code == 1 and "retry takes failed or cancelled jobs, not 'queued' ones" in str(wrong.exception)


def test_retry_all_failed_still_works_without_a_question(rt: Runtime) -> None:
    jobs = [failed_in(rt, "maintenance", f"a{n}") for n in range(2)]
    result = runner.invoke(cli, ["jobs", "retry", "--all-failed"])
    assert result.exit_code == 0 and all(f"{j} queued again (run 2)" in result.output for j in jobs), result.output


def test_api_bulk_retry_counts_first_then_does_them_all_in_one_request(rt: Runtime) -> None:
    tc = client(rt)
    jobs = [failed_in(rt, "publish", f"p{n}", kind="publish") for n in range(4)]
    failed_in(rt, "rewrite", "r")
    counted = json_of(tc.post("/api/bulk/retry", json={"queue": "publish", "dry_run": True}))
    assert counted == {"action": "retry", "matched": 4, "done": 0, "ids": [], "skipped": [], "more": False}
    assert {get_job(rt.store, j)["status"] for j in jobs} == {"failed"}
    done = json_of(tc.post("/api/bulk/retry", json={"queue": "publish", "kind": "publish"}))
    assert done["matched"] == 4 and done["done"] == 4 and sorted(done["ids"]) == sorted(jobs)
    assert {get_job(rt.store, j)["status"] for j in jobs} == {"queued"}
    cancelled = json_of(tc.post("/api/bulk/cancel", json={"queue": "publish"}))
    assert cancelled["done"] == 4 and {get_job(rt.store, j)["status"] for j in jobs} == {"cancelled"}
    bad = tc.post("/api/bulk/cancel", json={"status": "failed"})
    assert bad.status_code == 422 and "status" in json_of(bad)["error"]


def test_a_job_that_changed_meanwhile_is_skipped_and_named_not_a_reason_to_stop(rt: Runtime) -> None:
    from contentq.runtime import bulk

    jobs = [failed_in(rt, "maintenance", f"m{n}") for n in range(3)]
    spec = bulk.JobFilter("retry", "failed", "maintenance")
    real_retry = bulk.tracking.retry

    def racing(runtime: Runtime, job_id: str) -> dict[str, object]:
        if job_id == jobs[1]:  # another operator retried this one a moment before
            real_retry(runtime, job_id)
        return real_retry(runtime, job_id)

    bulk.tracking.retry = racing  # type: ignore[assignment]
    try:
        result = bulk.bulk_action(rt, spec)
    finally:
        bulk.tracking.retry = real_retry  # type: ignore[assignment]
    assert sorted(result.done) == sorted([jobs[0], jobs[2]])
    # The other operator's retry queued it: a second retry says so (a queued job runs as soon as a worker is free).
    assert [s["id"] for s in result.skipped] == [jobs[1]]
    assert result.skipped[0]["error"].startswith(f"job {jobs[1]} is queued")


# -- search ---------------------------------------------------------------------------------------------------


def test_search_finds_posts_by_words_of_the_original_or_the_rewrite(rt: Runtime) -> None:
    tc = client(rt)
    ids = seed(rt)
    assert [p["id"] for p in json_of(tc.get("/api/posts", params={"search": "ракеты"}))["items"]] == [
        ids["awaiting_approval"]
    ]
    both = json_of(tc.get("/api/posts", params={"search": "launch"}))  # the rewrite of one, a caption of another
    assert {p["id"] for p in both["items"]} == {ids["rewritten"], ids["album"]} and both["total"] == 2
    one_state = json_of(tc.get("/api/posts", params={"search": "launch", "state": "rewritten"}))
    assert [p["id"] for p in one_state["items"]] == [ids["rewritten"]]
    assert json_of(tc.get("/api/posts", params={"search": 'AND OR ( " * NEAR'}))["total"] == 0  # input, not syntax
    result = runner.invoke(cli, ["posts", "list", "--search", "Запуск пятниц"])
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert result.exit_code == 0 and [int(r[0]) for r in rows] == [ids["awaiting_approval"]], result.output


def test_the_search_index_follows_edits_and_deletions(rt: Runtime) -> None:
    tc = client(rt)
    post_id = add_post(rt, "An old text about tulips", state="awaiting_approval")

    def found(words: str) -> list[int]:
        return [p["id"] for p in json_of(tc.get("/api/posts", params={"search": words}))["items"]]

    assert found("tulips") == [post_id]
    rt.store.execute("UPDATE posts SET rewrite_html = 'Now about roses' WHERE id = ?", (post_id,))
    assert found("roses") == [post_id] and found("tulips") == [post_id]  # the original still says tulips
    rt.store.execute("UPDATE posts SET text_html = 'daisies' WHERE id = ?", (post_id,))
    assert found("tulips") == [] and found("daisies") == [post_id]
    rt.store.execute("DELETE FROM posts WHERE id = ?", (post_id,))
    assert found("daisies") == [] and found("roses") == []


@pytest.mark.parametrize(
    ("typed", "query"),
    [
        ("ракеты", '"ракеты"*'),
        ('say "hi"', '"say"* """hi"""*'),
        ("a", '"a"'),
        ("-- ()", None),
        ("x AND y", '"x" "AND"* "y"'),
    ],
)
def test_what_is_typed_is_quoted_words_never_fts_syntax(typed: str, query: str | None) -> None:
    assert match_query(typed) == query


# -- workers and sources --------------------------------------------------------------------------------------


def test_workers_are_listed_with_state_job_heartbeat_memory_and_jobs_done(rt: Runtime) -> None:
    seed(rt)
    monkey = rt.settings.model_copy(update={"worker_heartbeat_ttl": 3600})
    rt.settings = monkey
    workers = {w["name"]: w for w in json_of(client(rt).get("/api/workers"))}
    alive, dead, stopped = workers["host.1234"], workers["host.999"], workers["host.42"]
    assert (
        alive["state"] == "alive"
        and alive["current_job"] == "noop-waiting"
        and alive["queues"] == ["publish", "rewrite"]
    )
    assert alive["memory_kb"] > 10_000 and alive["jobs_succeeded"] == 1 and alive["heartbeat_age_s"] < 60
    assert dead["state"] == "dead" and dead["memory_kb"] is None and dead["heartbeat_age_s"] > 86400
    assert stopped["state"] == "stopped" and stopped["stopped_at"]


def test_sources_show_route_last_collect_cursor_error_listener_and_footer(rt: Runtime) -> None:
    seed(rt)
    sources = {s["source"]: s for s in json_of(client(rt).get("/api/sources"))}
    donor, other = sources["@donor"], sources["@other"]
    assert donor["route"] == "news" and donor["last_message_id"] == 5120 and donor["last_run"]
    assert donor["listener"]["state"] == "connected" and donor["listener"]["status"] == "ok"
    assert donor["footer"]["lines"] == ["Subscribe: @donor"] and donor["footer"]["sample"] == 20
    assert other["error"].startswith("ChannelPrivateError") and other["listener"] is None and other["footer"] is None
