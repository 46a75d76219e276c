"""purge removes exactly what is past retention, keeps what dedup and running jobs still need, in batches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from rq.job import Job
from rq.registry import FinishedJobRegistry
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, now
from contentq.media import store_bytes
from contentq.ops.purge import purge
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import enqueue
from contentq.settings import load_settings
from tests.conftest import drain


@pytest.fixture
def prt(home: Path) -> Iterator[Runtime]:
    """Retention 30 days (the default), dedup window 45 days."""
    runtime = Runtime(load_settings(home=home, dedup_window_days=45))
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


def ago(days: float) -> str:
    return iso(now() - timedelta(days=days))


def add_post(rt: Runtime, msg_id: int, state: str, updated_days: float, collected_days: float | None = None) -> int:
    collected = ago(collected_days if collected_days is not None else updated_days)
    with rt.store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO posts (route, source, source_msg_id, text_html, collected_at, state, updated_at, content_hash)"
            " VALUES ('news', '@donor', ?, 'text', ?, ?, ?, ?)",
            (msg_id, collected, state, ago(updated_days), f"hash-{msg_id}"),
        )
        return int(cursor.lastrowid or 0)


def add_media(rt: Runtime, post_id: int | None, data: bytes, origin: str = "donor") -> Path:
    stored = store_bytes(rt.settings.media_dir, data, ext=".jpg")
    rt.store.execute(
        "INSERT INTO media (post_id, origin, kind, sha256, path, size, created_at) VALUES (?, ?, 'photo', ?, ?, ?, ?)",
        (post_id, origin, stored.sha256, stored.relpath, stored.size, ago(40)),
    )
    return stored.path(rt.settings.media_dir)


def add_job(rt: Runtime, job_id: str, kind: str, key: str, status: str, finished_days: float | None,
            post_id: int | None = None) -> None:  # fmt: skip
    finished = ago(finished_days) if finished_days is not None else None
    created = ago((finished_days or 0) + 0.01)
    with rt.store.transaction() as conn:
        conn.execute(
            "INSERT INTO jobs (id, kind, queue, key, status, post_id, rq_id, created_at, finished_at, updated_at)"
            " VALUES (?, ?, 'maintenance', ?, ?, ?, ?, ?, ?, ?)",
            (job_id, kind, key, status, post_id, f"{job_id}-g1", created, finished, finished or created),
        )
        for event in ("enqueued", "started", status):
            conn.execute("INSERT INTO job_events (job_id, at, event) VALUES (?, ?, ?)", (job_id, created, event))


def ids(rt: Runtime, table: str) -> set[object]:
    return {r["id"] for r in rt.store.query(f"SELECT id FROM {table}")}


def seed(rt: Runtime) -> dict[str, object]:
    s: dict[str, object] = {}
    s["old_published"] = add_post(rt, 1, "published", 40, collected_days=50)
    s["old_duplicate"] = add_post(rt, 2, "duplicate", 50)
    s["old_rejected"] = add_post(rt, 3, "rejected", 60)
    s["in_dedup_window"] = add_post(rt, 4, "failed", 35)  # past retention, but dedup still compares with it
    s["recent_published"] = add_post(rt, 5, "published", 10)
    s["old_but_scheduled"] = add_post(rt, 6, "scheduled", 100)  # not ended: never purged
    s["old_failed_retrying"] = add_post(rt, 7, "failed", 50)  # a retry is queued for it
    s["unique_file"] = add_media(rt, s["old_published"], b"only the old post uses this")  # type: ignore[arg-type]
    s["shared_file"] = add_media(rt, s["old_duplicate"], b"shared with a recent post")  # type: ignore[arg-type]
    add_media(rt, s["recent_published"], b"shared with a recent post")  # type: ignore[arg-type]
    s["unattached_image"] = add_media(rt, None, b"a card no post uses", origin="generated")
    rt.store.execute(
        "INSERT INTO sends (post_id, target, part, random_id, status, created_at, updated_at)"
        " VALUES (?, '@mine', 0, 1, 'sent', ?, ?)",
        (s["old_published"], ago(40), ago(40)),
    )
    add_job(rt, "rewrite-1", "rewrite", "1", "succeeded", 40, post_id=s["old_published"])  # type: ignore[arg-type]
    add_job(rt, "collect-old", "collect", "@old", "failed", 45)
    add_job(rt, "publish-9", "publish", "9", "failed", 40)  # old, but the same key ran again lately
    add_job(rt, "publish-9-2", "publish", "9", "succeeded", 5)
    add_job(rt, "rewrite-10", "rewrite", "10", "succeeded", 10)
    add_job(rt, "publish-7", "publish", "7", "queued", None, post_id=s["old_failed_retrying"])  # type: ignore[arg-type]
    for days in (40, 1):
        rt.store.execute(
            "INSERT INTO notifications (key, at, level, message) VALUES ('k', ?, 'warning', 'm')", (ago(days),)
        )
    return s


def test_purge_removes_exactly_what_is_past_retention(prt: Runtime) -> None:
    rt = prt
    s = seed(rt)
    posts_before, jobs_before = ids(rt, "posts"), ids(rt, "jobs")

    dry = purge(rt, dry_run=True)
    assert ids(rt, "posts") == posts_before and ids(rt, "jobs") == jobs_before  # nothing touched
    assert Path(s["unique_file"]).exists()  # type: ignore[arg-type]

    report = purge(rt, batch_size=2)  # small batches: several transactions
    gone = {s["old_published"], s["old_duplicate"], s["old_rejected"]}
    assert ids(rt, "posts") == posts_before - gone
    assert ids(rt, "jobs") == {"publish-9", "publish-9-2", "rewrite-10", "publish-7"}
    assert rt.store.scalar("SELECT COUNT(*) FROM job_events WHERE job_id IN ('rewrite-1', 'collect-old')") == 0
    assert rt.store.scalar("SELECT COUNT(*) FROM job_events WHERE job_id = 'publish-9'") == 3
    assert rt.store.scalar("SELECT COUNT(*) FROM sends") == 0
    assert rt.store.scalar("SELECT COUNT(*) FROM notifications") == 1
    # The web feed's change records go by age too: only the recent post's insert is left.
    assert [r["post_id"] for r in rt.store.query("SELECT post_id FROM post_changes")] == [s["recent_published"]]
    # Media: the rows of purged posts go; a file shared with a post that stays is kept.
    assert rt.store.scalar("SELECT COUNT(*) FROM media") == 1
    assert not Path(s["unique_file"]).exists()  # type: ignore[arg-type]
    assert not Path(s["unattached_image"]).exists()  # type: ignore[arg-type]  # the images pruner's part
    assert Path(s["shared_file"]).exists()  # type: ignore[arg-type]

    expected = {"job records": 2, "job events": 6, "posts": 3, "media rows": 2, "media files": 1,
                "send records": 1, "notifications": 1, "unattached images": 1, "post changes": 6}  # fmt: skip
    for what, n in expected.items():
        assert report.removed[what] == n, what
        assert dry.removed[what] == n, f"dry run: {what}"
    assert report.removed["media bytes"] == len(b"only the old post uses this") + len(b"a card no post uses")
    assert report.kept["posts inside the dedup window"] == 1

    again = purge(rt)
    assert all(n == 0 for what, n in again.removed.items()), again.removed


def test_older_than_overrides_the_retention(prt: Runtime) -> None:
    seed(prt)
    report = purge(prt, older_than=timedelta(days=55))
    assert report.removed["posts"] == 1  # only the 60-day-old rejected post
    assert report.removed["job records"] == 0


def test_rq_registries_lose_old_finished_jobs(prt: Runtime) -> None:
    rt = prt
    old = enqueue(rt, "call", "old", handler="tests.jobfuncs:ok")
    fresh = enqueue(rt, "call", "fresh", handler="tests.jobfuncs:ok")
    drain(rt, "maintenance")
    registry = FinishedJobRegistry("maintenance", connection=rt.redis)
    assert set(registry.get_job_ids()) == {old["rq_id"], fresh["rq_id"]}
    job = Job.fetch(old["rq_id"], connection=rt.redis)
    job.ended_at = now() - timedelta(days=40)
    job.save()

    assert purge(rt, dry_run=True).removed["RQ registry entries"] == 1
    assert set(registry.get_job_ids()) == {old["rq_id"], fresh["rq_id"]}
    report = purge(rt)
    assert report.removed["RQ registry entries"] == 1
    assert registry.get_job_ids() == [fresh["rq_id"]]
    assert not Job.exists(old["rq_id"], connection=rt.redis)


def test_purge_command_prints_what_it_removed(prt: Runtime) -> None:
    seed(prt)
    runner = CliRunner()
    result = runner.invoke(app, ["purge", "--dry-run"], env={"COLUMNS": "200", "CONTENTQ_DEDUP_WINDOW_DAYS": "45"})
    assert result.exit_code == 0, result.output
    assert "would remove" in result.output and "posts" in result.output
    assert prt.store.scalar("SELECT COUNT(*) FROM posts") == 7
    result = runner.invoke(app, ["purge", "--older-than", "30d", "--json"], env={"CONTENTQ_DEDUP_WINDOW_DAYS": "45"})
    data = json.loads(result.output)
    assert data["removed"]["posts"] == 3 and data["dry_run"] is False
    assert prt.store.scalar("SELECT COUNT(*) FROM posts") == 4
    bad = runner.invoke(app, ["purge", "--older-than", "soon"])
    assert bad.exit_code != 0


def test_audit_rows_go_by_their_own_retention_in_batches(home: Path) -> None:
    """audit_events used to grow forever: rows older than CONTENTQ_AUDIT_RETENTION_DAYS go, in batches, counted;
    a short --older-than does not take the audit trail along."""
    rt = Runtime(load_settings(home=home, audit_retention_days=100))
    try:
        for n, days in enumerate([400, 250, 101, 101, 101, 99, 40, 1]):
            rt.store.execute(
                "INSERT INTO audit_events (at, actor, kind, target, action) VALUES (?, 'cli:ops', 'queue', ?, 'pause')",
                (ago(days), f"q{n}"),
            )
        kept = {"q5", "q6", "q7"}
        assert purge(rt, dry_run=True, batch_size=2).removed["audit events"] == 5
        assert rt.store.scalar("SELECT COUNT(*) FROM audit_events") == 8
        report = purge(rt, older_than=timedelta(days=7), batch_size=2)  # three batches of at most two rows
        assert report.removed["audit events"] == 5
        assert {r["target"] for r in rt.store.query("SELECT target FROM audit_events")} == kept
        assert purge(rt).removed["audit events"] == 0
    finally:
        rt.close()
