"""A database held by another process (BEGIN EXCLUSIVE, as a careless `sqlite3` session or a long VACUUM would)
is the machine's trouble: jobs wait it out without using a try or timing out, each worker says so once and says
once when it clears; the CLI says it waits, and gives up after CONTENTQ_DB_WAIT_SECONDS with the same message."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.errors import DatabaseFullError, DatabaseLockedError, DatabaseUnavailableError
from contentq.runtime.tracking import enqueue
from contentq.store.db import open_store
from tests.conftest import start_worker, wait_for
from tests.test_publish_split import prt  # noqa: F401, F811 - the publish runtime fixture

HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def hold_database(path: object, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.timeout(240)
def test_jobs_wait_out_a_held_database_without_using_a_try(rt, settings):
    jobs = [enqueue(rt, "call", f"db-{i}", {"seconds": 0.3}, handler="tests.jobfuncs:db_work")["id"] for i in range(12)]
    # Short busy timeout and job timeout: a job that counted the wait against its clock would time out.
    env = {"CONTENTQ_DB_BUSY_TIMEOUT_MS": "1000", "CONTENTQ_MAINTENANCE_TIMEOUT": "6"}
    workers = [start_worker(settings, "maintenance", **env) for _ in range(2)]
    try:
        wait_for(lambda: rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'") >= 1,
                 timeout=60, what="the first job done")  # fmt: skip
        holder = hold_database(settings.db_path, 15)
        assert holder.wait(60) == 0
        wait_for(lambda: rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'") == len(jobs),
                 timeout=90, what="every job done")  # fmt: skip
        rows = rt.store.query("SELECT id, status, attempts, reschedules FROM jobs")
        assert {(r["status"], r["attempts"]) for r in rows} == {("succeeded", 1)}, rows
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30)[0].decode() for worker in workers]
    busy_workers = 0
    for out in outputs:
        waits = out.count("is busy (held by another process); waiting")
        clears = out.count("the database is free again")
        assert waits == clears <= 1, out  # one line when it starts, one when it ends, never one a try
        busy_workers += waits
        assert "Traceback" not in out and "retry in" not in out, out
    assert busy_workers >= 1  # at least one worker met the held database (both, unless one sat idle)


def test_the_cli_says_it_waits_and_gives_up_after_the_configured_time(home, monkeypatch, settings):
    runner = CliRunner()
    assert runner.invoke(app, ["queue", "status"]).exit_code in (0, 1)  # the database exists
    monkeypatch.setenv("CONTENTQ_DB_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setenv("CONTENTQ_DB_WAIT_SECONDS", "2")
    holder = hold_database(settings.db_path, 8)
    try:
        started = time.monotonic()
        result = runner.invoke(app, ["queue", "reconcile"])
        took = time.monotonic() - started
    finally:
        holder.wait(30)
    # The CLI's main() prints a ContentqError as its one `error:` line (tests/test_hostile_cli.py checks that path).
    assert isinstance(result.exception, DatabaseLockedError), result.output
    assert result.output.count("is busy (held by another process); waiting") == 1, result.output
    message = str(result.exception)
    assert "is busy (held by another process)" in message and "gave up after 2 s" in message, message
    assert "CONTENTQ_DB_WAIT_SECONDS" in message
    assert took < 7


def test_a_statement_waits_then_goes_through_once_the_database_is_free(tmp_path, caplog):
    path = tmp_path / "db.sqlite3"
    store = open_store(path, busy_timeout_ms=100, wait_seconds=30)
    store.execute("CREATE TABLE t (x)")
    holder = hold_database(path, 2)
    with caplog.at_level("INFO", logger="contentq.store"):
        store.execute("INSERT INTO t VALUES (1)")
        with store.transaction() as conn:
            conn.execute("INSERT INTO t VALUES (2)")
    holder.wait(10)
    assert store.scalar("SELECT COUNT(*) FROM t") == 2
    messages = [r.getMessage() for r in caplog.records]
    assert sum("busy (held by another process); waiting" in m for m in messages) == 1, messages
    assert sum("free again" in m for m in messages) == 1, messages
    store.close()


def test_a_bad_statement_is_not_waited_on(tmp_path):
    store = open_store(tmp_path / "db.sqlite3", wait_seconds=30)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        store.execute("INSERT INTO missing VALUES (1)")
    assert time.monotonic() - started < 1
    store.close()


def test_a_full_disk_is_a_wait_and_nothing_is_torn(tmp_path, caplog):
    # SQLite's max_page_count makes it answer SQLITE_FULL exactly as a full file system would.
    path = tmp_path / "db.sqlite3"
    store = open_store(path, wait_seconds=1.5)
    store.execute("CREATE TABLE t (x)")
    pages = store.scalar("PRAGMA page_count")
    store.execute(f"PRAGMA max_page_count = {pages + 1}")
    with (
        caplog.at_level("WARNING", logger="contentq.store"),
        pytest.raises(DatabaseUnavailableError) as info,
        store.transaction() as conn,
    ):
        for _ in range(50):
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 4000,))
    assert "is full" in str(info.value)
    assert store.scalar("SELECT COUNT(*) FROM t") == 0  # all or nothing
    assert store.scalar("PRAGMA integrity_check") == "ok"
    store.close()


def test_a_moment_of_full_disk_mid_publish_costs_the_post_nothing(prt, monkeypatch):  # noqa: F811
    # Part 1 is out and recorded; the job's log line after it meets a full disk (a backup's scratch copy filling
    # the disk for a moment). That is the machine's trouble: the job runs again and sends the rest, each part once;
    # it must not fail the post, take part 1 back or spend a try.
    from contentq.flow.dispatch import dispatch
    from contentq.store import jobs as store_jobs
    from contentq.store.posts import get_post
    from tests.conftest import drain
    from tests.publish_helpers import fake
    from tests.test_publish_split import long_post

    tg = fake(prt)
    post_id, _ = long_post(prt)
    real = store_jobs.log_event
    refused: list[str] = []

    def log_event(store, job_id, event, message="", **kw):  # type: ignore[no-untyped-def]
        if event == "sent" and not refused:
            refused.append(job_id)
            raise DatabaseFullError("the disk holding the database is full")
        return real(store, job_id, event, message, **kw)

    monkeypatch.setattr(store_jobs, "log_event", log_event)
    dispatch(prt)
    drain(prt, "publish")
    assert refused
    post = get_post(prt.store, post_id)
    assert post["state"] == "published", post["state_reason"]
    assert not [m for m in tg.sent if m.deleted]
    texts = [m.html for m in tg.sent]
    assert len(texts) == len(set(texts)) >= 2  # every part once
    job = prt.store.one("SELECT status, attempts FROM jobs WHERE kind = 'publish'")
    assert (job["status"], job["attempts"]) == ("succeeded", 1)


def test_after_giving_up_the_next_wait_is_a_wait_of_its_own(tmp_path, caplog):
    path = tmp_path / "db.sqlite3"
    store = open_store(path, busy_timeout_ms=100, wait_seconds=1.0)
    store.execute("CREATE TABLE t (x)")
    holder = hold_database(path, 2.5)
    with caplog.at_level("WARNING", logger="contentq.store"), pytest.raises(DatabaseLockedError):
        store.execute("INSERT INTO t VALUES (1)")
    holder.wait(10)
    store.execute("INSERT INTO t VALUES (2)")
    # A short hold that a 1-s wait rides out: it must not give up at once as if the first wait were still on.
    holder = hold_database(path, 0.4)
    with caplog.at_level("WARNING", logger="contentq.store"):
        store.execute("INSERT INTO t VALUES (3)")
    holder.wait(10)
    assert store.scalar("SELECT COUNT(*) FROM t") == 2
    assert sum("waiting" in r.getMessage() for r in caplog.records) == 2  # each wait told once
    store.close()


def test_the_run_again_after_a_database_wait_has_the_job_timeout_running(tmp_path):
    from contentq.runtime.execute import run_waiting_out_the_database
    from contentq.runtime.worker import pause_job_timer

    store = open_store(tmp_path / "db.sqlite3", wait_seconds=None)
    store.wait.pause = pause_job_timer
    seen: list[float] = []

    def handler() -> str:
        seen.append(signal.getitimer(signal.ITIMER_REAL)[0])
        if len(seen) == 1:
            raise DatabaseFullError("the disk holding the database is full")
        return "done"

    signal.signal(signal.SIGALRM, lambda *a: None)
    signal.alarm(30)
    try:
        assert run_waiting_out_the_database(store, handler) == "done"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        store.close()
    assert seen[0] > 25 and seen[1] > 25  # the run again is timed too (a hang would still end)


def test_after_a_stall_only_the_workers_alive_when_it_began_get_a_fresh_beat(tmp_path):
    from datetime import timedelta

    from contentq.clock import iso, now
    from contentq.store.workers import grace_after_stall, register_worker

    store = open_store(tmp_path / "db.sqlite3")
    register_worker(store, "alive", ["publish"])
    register_worker(store, "dead-long-ago", ["publish"])
    stamp = now()
    store.execute("UPDATE workers SET heartbeat_at = ? WHERE name = 'alive'", (iso(stamp - timedelta(seconds=70)),))
    store.execute(
        "UPDATE workers SET heartbeat_at = ? WHERE name = 'dead-long-ago'", (iso(stamp - timedelta(hours=2)),)
    )
    assert grace_after_stall(store, 0.3, ttl=30) == 0  # a short wait changes nothing
    assert grace_after_stall(store, 60.0, ttl=30) == 1  # beat 70 s ago: within the 60-s stall + TTL
    beats = {r["name"]: r["heartbeat_at"] for r in store.query("SELECT name, heartbeat_at FROM workers")}
    assert beats["alive"] >= iso(stamp) and beats["dead-long-ago"] < iso(stamp - timedelta(hours=1))
    store.close()
