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
from contentq.errors import DatabaseLockedError, DatabaseUnavailableError
from contentq.runtime.tracking import enqueue
from contentq.store.db import open_store
from tests.conftest import start_worker, wait_for

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
