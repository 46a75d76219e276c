"""Tracked jobs through real Valkey and SQLite: success, retries, reschedule, fatal, pause, reconcile, cancel."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
import redis
from rq import Queue
from rq.job import Job

from contentq.errors import ContentqError
from contentq.runtime import queues
from contentq.runtime.reconcile import reconcile
from contentq.runtime.redis import NO_RETRY
from contentq.runtime.tracking import cancel, enqueue, retry
from contentq.runtime.worker import run_worker
from contentq.store.db import Store
from contentq.store.jobs import get_job, job_events
from tests.conftest import drain, subprocess_env


def call(rt, key, handler, payload=None, **kw):
    return enqueue(rt, "call", key, payload or {}, handler=f"tests.jobfuncs:{handler}", **kw)


def events(rt, job_id):
    return [e["event"] for e in job_events(rt.store, job_id)]


def test_job_runs_and_is_recorded_succeeded(rt):
    row = call(rt, "hello", "ok", {"x": 1}, post_id=7)
    assert row["id"] == "call-hello" and row["rq_id"] == "call-hello-g1"
    assert get_job(rt.store, row["id"])["status"] == "queued"
    drain(rt, "maintenance")
    job = get_job(rt.store, row["id"])
    assert job["status"] == "succeeded"
    assert job["attempts"] == 1
    assert job["post_id"] == 7
    assert json.loads(job["result"]) == {"echo": {"x": 1}, "attempt": 1}
    assert job["duration_ms"] is not None and job["finished_at"] >= job["started_at"]
    assert events(rt, row["id"]) == ["enqueued", "started", "succeeded"]


def test_enqueue_is_deduplicated_while_active_and_new_run_after(rt):
    first = call(rt, "same", "ok")
    again = call(rt, "same", "ok")
    assert again["id"] == first["id"] and again["deduplicated"]
    drain(rt, "maintenance")
    later = call(rt, "same", "ok")
    assert later["id"] == "call-same-2"


def test_processes_enqueuing_the_same_keys_at_once_record_each_key_once(rt, settings):
    """Enqueue is a read and one INSERT … WHERE NOT EXISTS (no explicit transaction): however the processes
    interleave, each (kind, key) gets one record and one RQ job, and none of them fails."""
    script = (
        "from contentq.runtime.context import Runtime\nfrom contentq.runtime.tracking import enqueue\n"
        "from contentq.settings import get_settings\nrt = Runtime(get_settings())\n"
        "for _ in range(2):\n    for i in range(60):\n        enqueue(rt, 'noop', f'k{i}')\n"
    )
    env = subprocess_env(settings)
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    rows = rt.store.query("SELECT key, COUNT(*) AS n FROM jobs WHERE kind = 'noop' GROUP BY key")
    assert len(rows) == 60 and {r["n"] for r in rows} == {1}
    assert Queue("maintenance", connection=rt.redis).count == 60
    assert rt.store.scalar("SELECT COUNT(*) FROM job_events WHERE event = 'enqueued'") == 60


def test_a_key_whose_slug_is_taken_many_times_still_gets_an_id(rt):
    for n in range(1, 31):
        job_id = "call-a_b" if n == 1 else f"call-a_b-{n}"
        rt.store.execute(
            "INSERT INTO jobs (id, kind, queue, key, status, rq_id, created_at, updated_at)"
            " VALUES (?, 'call', 'maintenance', 'a_b', 'succeeded', ?, '2030-01-01', '2030-01-01')",
            (job_id, f"{job_id}-g1"),
        )
    row = call(rt, "a.b", "ok")
    assert row["id"] == "call-a_b-31"


def test_a_result_is_stored_redacted_as_a_whole(rt):
    row = call(rt, "secret-result", "secret_shapes")
    drain(rt, "maintenance")
    stored = get_job(rt.store, row["id"])["result"]
    assert "hunter2" not in stored and "sk-abcdefghijklmnopqrstuvwx" not in stored


def test_enqueue_leaves_no_statement_open_on_the_shared_connection(rt, monkeypatch):
    """An INSERT … RETURNING ends, and commits, only when its rows are all read: read outside the store's lock,
    another thread's transaction on the same connection could come in between and fail to commit. Here such a
    transaction runs right after each store call of the enqueue returns."""
    assert rt.store is not None  # opened before the calls are watched

    def then_a_transaction(method):  # type: ignore[no-untyped-def]
        def call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            result = method(self, *args, **kwargs)
            with self.transaction() as conn:
                conn.execute("UPDATE workers SET heartbeat_at = 'x' WHERE name = 'nobody'")
            return result

        return call

    monkeypatch.setattr(Store, "execute", then_a_transaction(Store.execute))
    monkeypatch.setattr(Store, "query", then_a_transaction(Store.query))
    row = enqueue(rt, "noop", "open")
    other = sqlite3.connect(rt.settings.db_path)
    try:
        assert other.execute("SELECT status FROM jobs WHERE id = ?", (row["id"],)).fetchone() == ("queued",)
    finally:
        other.close()


def test_enqueue_and_transactions_on_one_connection_from_two_threads(rt):
    """Two threads of one process share its connection (a worker's job and housekeeping, the web's pool), from
    its lazy opening on: every enqueue committed, every transaction through."""
    errors: list[BaseException] = []
    ids: list[str] = []

    def enqueuing() -> None:
        try:
            ids.extend(enqueue(rt, "noop", f"t{i}")["id"] for i in range(2000))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def transacting() -> None:
        try:
            for i in range(2000):
                with rt.store.transaction() as conn:
                    conn.execute("UPDATE workers SET heartbeat_at = ? WHERE name = 'nobody'", (str(i),))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=enqueuing), threading.Thread(target=transacting)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        sys.setswitchinterval(previous)
    assert errors == []
    other = sqlite3.connect(rt.settings.db_path)  # what other processes see: all of it committed
    try:
        seen = {r[0] for r in other.execute("SELECT id FROM jobs WHERE kind = 'noop'")}
    finally:
        other.close()
    assert seen == set(ids) and len(ids) == 2000


def test_failing_job_is_retried_with_backoff_then_failed_with_its_error(rt):
    row = call(rt, "bad", "always_fails")
    drain(rt, "maintenance", timeout=60)
    job = get_job(rt.store, row["id"])
    assert job["status"] == "failed"
    assert job["attempts"] == 3 == job["max_attempts"]
    assert job["error"] == "RuntimeError: boom on attempt 3"
    log = job_events(rt.store, row["id"])
    retries = [e for e in log if e["event"] == "retrying"]
    assert len(retries) == 2
    assert "retry in 1 s" in retries[0]["message"]  # backoff base 1 in the test settings
    assert log[-1]["event"] == "failed" and log[-1]["level"] == "error"


def test_fatal_error_is_not_retried(rt):
    row = call(rt, "fatal", "fatal")
    drain(rt, "maintenance")
    job = get_job(rt.store, row["id"])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert "cannot be retried" in job["error"]


def test_retryable_error_defers_its_next_try_then_the_queue_backoff_resumes(rt):
    row = call(rt, "busy", "retry_deferred", {"seconds": 2})
    drain(rt, "maintenance", timeout=60)
    job = get_job(rt.store, row["id"])
    assert job["status"] == "failed" and job["attempts"] == 3
    assert job["error"] == "RetryableError: upstream busy on attempt 3"
    retries = [e["message"] for e in job_events(rt.store, row["id"]) if e["event"] == "retrying"]
    second = rt.settings.policy("maintenance").retry_intervals()[1]
    assert "retry in 2 s (2 left)" in retries[0]  # the error's defer, not the queue's first interval (1 s)
    assert f"retry in {second} s (1 left)" in retries[1]  # the queue's backoff again


def test_configuration_error_in_a_job_fails_it_without_retry(rt):
    row = call(rt, "cfg", "config_broken")
    drain(rt, "maintenance")
    job = get_job(rt.store, row["id"])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"] == "ConfigError: route 'news' has no target; set it in contentq.toml"
    assert "fatal, not retried" in job_events(rt.store, row["id"])[-1]["message"]


def test_reschedule_runs_later_without_using_a_retry(rt):
    row = call(rt, "flood", "reschedule_once", {"delay": 1})
    run_worker(rt, ["maintenance"], burst=True)
    job = get_job(rt.store, row["id"])
    assert job["status"] == "queued"
    assert job["retry_reason"] == "FLOOD_WAIT of 2 s"
    assert job["next_retry_at"] is not None
    assert job["rq_id"] == "call-flood-g2"
    drain(rt, "maintenance")
    job = get_job(rt.store, row["id"])
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert "rescheduled" in events(rt, row["id"])


def test_pause_keeps_jobs_queued_and_resume_drains_them(rt):
    rows = [call(rt, f"p{i}", "ok") for i in range(3)]
    queues.pause(rt.redis, "maintenance")
    run_worker(rt, ["maintenance"], burst=True)
    assert {get_job(rt.store, r["id"])["status"] for r in rows} == {"queued"}
    status = {s["queue"]: s for s in queues.queue_status(rt)}["maintenance"]
    assert status["paused"] and status["queued"] == 3 and status["redis"]["queued"] == 3
    queues.resume(rt.redis, "maintenance")
    drain(rt, "maintenance")
    assert {get_job(rt.store, r["id"])["status"] for r in rows} == {"succeeded"}


def test_flushall_then_reconcile_recreates_lost_jobs(rt):
    rows = [call(rt, f"r{i}", "ok") for i in range(4)]
    rt.redis.flushall()
    actions = reconcile(rt)
    assert sorted(a["job"] for a in actions) == sorted(r["id"] for r in rows)
    assert all(a["found"] == "missing from Redis" for a in actions)
    assert reconcile(rt) == []  # nothing left to do
    drain(rt, "maintenance")
    for r in rows:
        job = get_job(rt.store, r["id"])
        assert job["status"] == "succeeded" and job["generation"] == 2
        assert "reconciled" in events(rt, r["id"])


def test_reconcile_keeps_a_delayed_job_delayed(rt):
    row = call(rt, "later", "ok", delay=3600)
    rt.redis.flushall()
    (action,) = reconcile(rt)
    assert action["action"].startswith("re-enqueued to run in")
    job = Job.fetch(get_job(rt.store, row["id"])["rq_id"], connection=rt.redis)
    assert job.get_status() == "scheduled"


def test_cancel_a_queued_job(rt):
    row = call(rt, "c", "ok")
    cancel(rt, row["id"])
    drain(rt, "maintenance")
    job = get_job(rt.store, row["id"])
    assert job["status"] == "cancelled" and job["attempts"] == 0
    with pytest.raises(ContentqError, match="already cancelled"):
        cancel(rt, row["id"])


def test_retry_failed_job_makes_a_new_generation(rt):
    row = call(rt, "f", "fatal")
    drain(rt, "maintenance")
    again = retry(rt, row["id"])
    assert again["generation"] == 2 and again["status"] == "queued"
    assert "restarted" in events(rt, row["id"])
    with pytest.raises(ContentqError, match="is queued and runs as soon as a worker of queue maintenance is free"):
        retry(rt, row["id"])


def test_stale_generation_does_nothing(rt):
    row = call(rt, "stale", "ok")
    queues.pause(rt.redis, "maintenance")
    rt.redis.delete(f"rq:job:{row['rq_id']}")  # as if Redis lost it
    reconcile(rt)  # generation 2 is now current
    # Put the lost generation 1 back, as a worker that popped it before the loss might still run it.
    from rq import Queue

    Queue("maintenance", connection=rt.redis).enqueue(
        "contentq.runtime.execute.run_tracked", row["id"], job_id=row["rq_id"]
    )
    queues.resume(rt.redis, "maintenance")
    drain(rt, "maintenance")
    job = get_job(rt.store, row["id"])
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert "skipped" in events(rt, row["id"])


def test_redis_refusing_the_job_keeps_the_record_for_reconcile(rt, settings):
    from contentq.runtime.context import Runtime

    broken = Runtime(settings, store=rt.store, conn=redis.Redis(host="127.0.0.1", port=1, retry=NO_RETRY))
    with pytest.raises(ContentqError, match="reconcile"):
        call(broken, "lost", "ok")
    assert get_job(rt.store, "call-lost")["status"] == "queued"
    reconcile(rt)
    drain(rt, "maintenance")
    assert get_job(rt.store, "call-lost")["status"] == "succeeded"


def test_keys_that_share_a_slug_never_share_an_id(rt):
    first = call(rt, "a", "ok")
    drain(rt, "maintenance")
    second = call(rt, "a", "ok")  # call-a-2
    other = call(rt, "a-2", "ok")  # would also be call-a-2
    dotted, underscored = call(rt, "x.y", "ok"), call(rt, "x_y", "ok")
    ids = [first["id"], second["id"], other["id"], dotted["id"], underscored["id"]]
    assert len(set(ids)) == 5


def test_reconcile_leaves_a_running_job_alone_until_its_time_is_surely_up(rt):
    from contentq.clock import iso, now

    row = call(rt, "running", "ok")
    rt.store.execute(
        "UPDATE jobs SET status = 'in_progress', attempts = 1, started_at = ? WHERE id = ?", (iso(), row["id"])
    )
    rt.redis.flushall()
    assert reconcile(rt) == []  # its worker may still be on it
    long_ago = iso(now() - timedelta(hours=2))
    rt.store.execute("UPDATE jobs SET started_at = ? WHERE id = ?", (long_ago, row["id"]))
    (action,) = reconcile(rt)
    assert action["job"] == row["id"]
    drain(rt, "maintenance")
    assert get_job(rt.store, row["id"])["status"] == "succeeded"


def test_reschedules_are_counted_apart_from_tries(rt):
    row = call(rt, "counted", "reschedule_once", {"delay": 0})
    drain(rt, "maintenance")
    job = get_job(rt.store, row["id"])
    assert job["attempts"] == 2 and job["reschedules"] == 1


def test_an_operator_retry_gives_fresh_tries_and_keeps_the_attempts_made(rt):
    row = call(rt, "spent", "always_fails")
    drain(rt, "maintenance", timeout=60)
    spent = get_job(rt.store, row["id"])
    assert spent["status"] == "failed" and spent["attempts"] == 3 == spent["max_attempts"]
    retry(rt, row["id"])
    again = get_job(rt.store, row["id"])
    # A worker killed on the first run after the retry must find tries left (reconcile re-enqueues, not fails).
    assert again["attempts"] == 3 and again["max_attempts"] == 6
    drain(rt, "maintenance", timeout=60)
    done = get_job(rt.store, row["id"])
    assert done["status"] == "failed" and done["attempts"] == 6 and done["error"] == "RuntimeError: boom on attempt 6"
