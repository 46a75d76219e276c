"""Recovery that heals itself (issue 12): dead workers' jobs, Redis outages, posts settled when their job fails.

Each test ends on the exact state of the job and the post. Workers run as processes where a kill matters.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler
from rq.utils import utcformat

from contentq.clock import iso, now
from contentq.runtime import reconcile as reconcile_module
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.reconcile import reconcile
from contentq.runtime.redis import EmbeddedServer
from contentq.runtime.tracking import enqueue
from contentq.settings import Settings, load_settings
from contentq.store.jobs import get_job, job_events
from contentq.store.posts import get_post
from contentq.store.workers import register_worker
from tests.conftest import drain, start_worker, wait_for
from tests.fake_telegram import FakeTelegram
from tests.publish_helpers import add_post, route_toml, write_config
from tests.shared_telegram import visible

FAST = {"CONTENTQ_WORKER_RECONCILE_INTERVAL": "1"}
"""Workers in these tests take their turn at the light reconcile every second (a minute by default)."""


_PEEKED: dict[int, str] = {}
"""Output of the workers read so far by _peek."""


def _ghost(rt: Runtime, name: str = "ghost") -> str:
    """A worker that registered, then died without a word (its pid is gone, its heartbeat old)."""
    register_worker(rt.store, name, ["publish"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rt.store.execute(
        "UPDATE workers SET pid = ?, heartbeat_at = ? WHERE name = ?",
        (dead.pid, iso(now() - timedelta(minutes=5)), name),
    )
    return name


def _stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return _PEEKED.pop(proc.pid, "") + (proc.stdout.read().decode(errors="replace") if proc.stdout else "")


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


# -- 1. a dead worker's job, whatever RQ's locks and registries say --------------------------------------------


def test_stale_registry_cleaning_lock_does_not_hold_back_a_dead_workers_job(rt, settings, tmp_path):
    # A worker killed while RQ cleaned the queue's registries leaves this lock for 899 s.
    rt.redis.set("rq:clean_registries:maintenance", 1, ex=899)
    marker = tmp_path / "running"
    row = enqueue(
        rt, "call", "victim", {"marker": str(marker), "seconds": 120}, handler="tests.jobfuncs:slow_first_time"
    )
    first = start_worker(settings, "maintenance", **FAST)
    try:
        wait_for(marker.exists, what="the job to start")
        _kill(first)
    finally:
        _stop(first)
    second = start_worker(settings, "maintenance", **FAST)
    try:
        wait_for(lambda: get_job(rt.store, row["id"])["status"] == "succeeded", timeout=60, what="the rerun")
    finally:
        out = _stop(second)
    job = get_job(rt.store, row["id"])
    assert (job["status"], job["attempts"], job["generation"]) == ("succeeded", 2, 2)
    assert json.loads(job["result"]) == "second time lucky"
    abandoned = [e for e in job_events(rt.store, row["id"]) if e["event"] == "abandoned"]
    assert len(abandoned) == 1 and "died during attempt 1 of 3" in abandoned[0]["message"]
    assert rt.redis.ttl("rq:clean_registries:maintenance") > 0  # RQ's cleaning never ran: contentq did not need it
    assert "WARNING" in out and "died during attempt 1 of 3; re-enqueued" in out


def test_reconcile_requeues_a_job_redis_calls_started_when_its_worker_is_dead(rt, settings, tmp_path):
    marker = tmp_path / "running"
    row = enqueue(
        rt, "call", "victim", {"marker": str(marker), "seconds": 120}, handler="tests.jobfuncs:slow_first_time"
    )
    worker = start_worker(settings, "maintenance")
    try:
        wait_for(marker.exists, what="the job to start")
        # RQ's scheduler runs in the worker's own process (a thread): nothing outlives a SIGKILL.
        assert _children(worker.pid) == []
        _kill(worker)
    finally:
        _stop(worker)
    assert Job.fetch(row["rq_id"], connection=rt.redis).get_status() == JobStatus.STARTED
    actions = reconcile(rt)
    assert [(a["job"], a["action"]) for a in actions] == [(row["id"], "re-enqueued (2 tries left)")]
    job = get_job(rt.store, row["id"])
    assert (job["status"], job["generation"], job["rq_id"], job["attempts"]) == ("queued", 2, f"{row['id']}-g2", 1)
    assert reconcile(rt) == []  # the new generation sits in its queue: nothing more to do


# -- 2. Redis outages ---------------------------------------------------------------------------------------


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A Valkey of this test's own, to kill and restart (the session's is shared)."""
    server = EmbeddedServer(tmp_path / "vk")
    server.start()
    yield server
    server.stop()


def test_worker_survives_valkey_killed_under_it_and_resumes(home, own_valkey, tmp_path):
    settings = load_settings(
        home=home, redis_url=own_valkey.url, worker_heartbeat_ttl=3, worker_maintenance_interval=1,
        maintenance_backoff_base=1.0,
    )  # fmt: skip
    rt = Runtime(settings)
    set_process_runtime(rt)
    worker = start_worker(settings, "maintenance", **FAST)
    try:
        running = enqueue(rt, "call", "through-the-outage", {"seconds": 3}, handler="tests.jobfuncs:sleep")
        wait_for(lambda: get_job(rt.store, running["id"])["status"] == "in_progress", what="the job to start")
        pid = own_valkey.pid()
        assert pid
        os.kill(pid, signal.SIGKILL)
        # The job ends while Redis is away: its outcome is in SQLite, and the worker waits instead of exiting.
        wait_for(lambda: get_job(rt.store, running["id"])["status"] == "succeeded", what="the job to end")
        wait_for(lambda: "Redis is unreachable" in _peek(worker), timeout=15, what="the outage warning")
        assert worker.poll() is None
        own_valkey.start()
        after = enqueue(rt, "call", "after-the-outage", {}, handler="tests.jobfuncs:ok")
        delayed = enqueue(rt, "call", "delayed-after-the-outage", {}, handler="tests.jobfuncs:ok", delay=1)
        for row in (after, delayed):
            wait_for(lambda r=row: get_job(rt.store, r["id"])["status"] == "succeeded", timeout=60, what=row["id"])
        assert worker.poll() is None
    finally:
        out = _stop(worker)
        rt.close()
    assert worker.returncode == 0
    for row in (running, after, delayed):
        job = get_job(rt.store, row["id"])
        assert (job["status"], job["attempts"]) == ("succeeded", 1)
    assert out.count("Redis is unreachable") == 1  # one WARNING per outage, not one per try
    assert out.count("Redis is back") == 1
    assert "Traceback" not in out


def _peek(proc: subprocess.Popen[bytes]) -> str:
    """What the worker printed so far (non-blocking)."""
    import fcntl

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        chunk = proc.stdout.read() or b""
    except BlockingIOError:
        chunk = b""
    _PEEKED[proc.pid] = _PEEKED.get(proc.pid, "") + chunk.decode(errors="replace")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return _PEEKED[proc.pid]


def test_a_dead_schedulers_lock_does_not_stall_delayed_jobs(rt, settings):
    # As after an AOF reload: the lock of a scheduler that died is back, with up to a minute to live.
    ghost = _ghost(rt)
    rt.redis.set(RQScheduler.get_locking_key("maintenance"), ghost, ex=60)
    row = enqueue(rt, "call", "delayed", {}, handler="tests.jobfuncs:ok", delay=1)
    worker = start_worker(settings, "maintenance", **FAST)
    try:
        wait_for(lambda: get_job(rt.store, row["id"])["status"] == "succeeded", timeout=30, what="the delayed job")
    finally:
        _stop(worker)
    job = get_job(rt.store, row["id"])
    assert (job["status"], job["attempts"], job["generation"]) == ("succeeded", 1, 1)
    assert rt.redis.get(RQScheduler.get_locking_key("maintenance")) != ghost.encode()


# -- 3. a failed job settles its post ---------------------------------------------------------------------


@pytest.fixture
def one_try(home: Path) -> Settings:
    write_config(home, route_toml())
    return load_settings(
        home=home, worker_heartbeat_ttl=3, worker_maintenance_interval=1, publish_attempts=1, rewrite_attempts=3,
        publish_min_interval=0, publish_account_budget=0,
    )  # fmt: skip


def test_last_publish_try_killed_after_the_send_settles_the_post_published(one_try, tmp_path):
    rt = Runtime(one_try)
    set_process_runtime(rt)
    post_id = add_post(rt, "Settled <b>once</b>", state="scheduled", scheduled_at=iso())
    tg_db = tmp_path / "telegram.db"
    fake = {"CONTENTQ_TG_GATEWAY": "tests.shared_telegram:gateway_from_env", "CONTENTQ_FAKE_TG_DB": str(tg_db),
            "CONTENTQ_PUBLISH_ATTEMPTS": "1", "CONTENTQ_PUBLISH_MIN_INTERVAL": "0",
            "CONTENTQ_PUBLISH_ACCOUNT_BUDGET": "0", **FAST}  # fmt: skip
    marker = tmp_path / "sent"
    row = enqueue(rt, "publish", str(post_id), {"post_id": post_id}, post_id=post_id)
    first = start_worker(one_try, "publish", CONTENTQ_FAKE_TG_HANG="after_send",
                         CONTENTQ_FAKE_TG_MARKER=str(marker), **fake)  # fmt: skip
    try:
        wait_for(marker.exists, what="the message to be sent")
        _kill(first)
    finally:
        _stop(first)
    second = start_worker(one_try, "publish", **fake)
    try:
        wait_for(lambda: get_post(rt.store, post_id)["state"] == "published", timeout=60, what="the settlement")
    finally:
        _stop(second)
    job = get_job(rt.store, row["id"])
    assert job["status"] == "failed"
    assert job["error"].startswith("abandoned: worker ") and "during the last attempt (attempt 1 of 1)" in job["error"]
    settle = rt.store.one("SELECT * FROM jobs WHERE kind = 'settle' AND post_id = ?", (post_id,))
    assert settle is not None and (settle["status"], settle["parent_id"]) == ("succeeded", row["id"])
    messages = visible(tg_db, "@mychan")
    assert [m["html"] for m in messages] == ["Settled <b>once</b>"]  # exactly once: nothing was resent
    post = get_post(rt.store, post_id)
    assert json.loads(post["message_ids"]) == [messages[0]["id"]]
    assert post["link"] == f"https://t.me/mychan/{messages[0]['id']}"
    rt.close()


def _running_job(rt: Runtime, kind: str, post_id: int, worker: str, attempts: int) -> dict:
    row = enqueue(rt, kind, str(post_id), {"post_id": post_id}, post_id=post_id)
    rt.store.execute(
        "UPDATE jobs SET status = 'in_progress', attempts = ?, worker = ?, started_at = ? WHERE id = ?",
        (attempts, worker, iso(), row["id"]),
    )
    return get_job(rt.store, row["id"])


def test_last_publish_try_killed_before_the_send_fails_the_post_and_tells_the_admin(one_try):
    rt = Runtime(one_try)
    set_process_runtime(rt)
    fake = FakeTelegram()
    fake.add_channel("@mychan")
    rt.services["telegram"] = fake
    post_id = add_post(rt, "Never sent", state="publishing", scheduled_at=iso())
    job = _running_job(rt, "publish", post_id, _ghost(rt), attempts=1)
    actions = reconcile(rt)
    assert [(a["job"], a["action"]) for a in actions] == [(job["id"], "marked failed, its post settled")]
    drain(rt, "publish")  # the settle job
    job = get_job(rt.store, job["id"])
    assert (job["status"], job["error"]) == (
        "failed", "abandoned: worker ghost died during the last attempt (attempt 1 of 1)"
    )  # fmt: skip
    post = get_post(rt.store, post_id)
    assert post["state"] == "failed"
    assert post["state_reason"] == (
        "publish: abandoned: worker ghost died during the last attempt (attempt 1 of 1); "
        "the post is not (completely) in @mychan"
    )
    alert = rt.store.one("SELECT * FROM notifications WHERE key = ?", (f"publish-failed:{post_id}",))
    assert alert is not None and "abandoned" in alert["message"] and alert["level"] == "error"
    assert fake.visible("@mychan") == []
    rt.close()


def test_last_rewrite_try_killed_fails_the_post_and_tells_the_admin(one_try):
    rt = Runtime(one_try)
    set_process_runtime(rt)
    post_id = add_post(rt, "Half rewritten", state="rewriting")
    job = _running_job(rt, "rewrite", post_id, _ghost(rt), attempts=3)
    actions = reconcile(rt)
    assert [(a["job"], a["action"]) for a in actions] == [(job["id"], "marked failed, its post settled")]
    reason = "abandoned: worker ghost died during the last attempt (attempt 3 of 3)"
    assert (get_job(rt.store, job["id"])["status"], get_job(rt.store, job["id"])["error"]) == ("failed", reason)
    post = get_post(rt.store, post_id)
    assert (post["state"], post["state_reason"]) == ("failed", f"rewrite: {reason}")
    alert = rt.store.one("SELECT * FROM notifications WHERE key = ?", (f"rewrite-failed:{post_id}",))
    assert alert is not None and reason in alert["message"]
    rt.close()


def test_a_rewrite_try_killed_with_tries_left_runs_again(one_try):
    rt = Runtime(one_try)
    set_process_runtime(rt)
    post_id = add_post(rt, "Half rewritten", state="rewriting")
    job = _running_job(rt, "rewrite", post_id, _ghost(rt), attempts=1)
    reconcile(rt)
    after = get_job(rt.store, job["id"])
    assert (after["status"], after["generation"], after["attempts"]) == ("queued", 2, 1)
    rq_job = Job.fetch(after["rq_id"], connection=rt.redis)
    assert rq_job.retries_left == 1  # three tries in all: one used, this one, one retry
    assert get_post(rt.store, post_id)["state"] == "rewriting"  # the rewrite job takes it up again
    rt.close()


# -- 4. lost between pop and start ---------------------------------------------------------------------


def test_job_lost_between_pop_and_start_is_picked_up_by_a_workers_light_reconcile(rt, settings):
    row = enqueue(rt, "call", "lost", {}, handler="tests.jobfuncs:ok")
    # A worker popped it (BLPOP) and died before it began: Redis still calls it queued, but no list holds it.
    assert rt.redis.lrem("rq:queue:maintenance", 0, row["rq_id"]) == 1
    worker = start_worker(settings, "maintenance", **FAST)
    try:
        wait_for(lambda: get_job(rt.store, row["id"])["status"] == "succeeded", timeout=60, what="the lost job")
    finally:
        out = _stop(worker)
    job = get_job(rt.store, row["id"])
    assert (job["status"], job["attempts"], job["generation"]) == ("succeeded", 1, 2)
    events = [e for e in job_events(rt.store, row["id"]) if e["event"] == "reconciled"]
    assert len(events) == 1 and "lost between pop and start" in events[0]["message"]
    assert "lost between pop and start" in out


def test_job_started_in_redis_by_a_dead_worker_that_never_began_it_is_requeued(rt):
    row = enqueue(rt, "call", "popped", {}, handler="tests.jobfuncs:ok")
    ghost = _ghost(rt)
    rq_job = Job.fetch(row["rq_id"], connection=rt.redis)
    rt.redis.lrem("rq:queue:maintenance", 0, row["rq_id"])
    rt.redis.hset(rq_job.key, mapping={"status": "started", "worker_name": ghost, "started_at": utcformat(now())})
    actions = reconcile(rt)
    assert [a["found"] for a in actions] == [f"started in Redis by worker {ghost}, which is gone, but never begun"]
    job = get_job(rt.store, row["id"])
    assert (job["status"], job["generation"], job["attempts"]) == ("queued", 2, 0)
    drain(rt, "maintenance")
    assert get_job(rt.store, row["id"])["status"] == "succeeded"


def test_reconcile_leaves_a_try_that_just_ended_retrying_while_redis_still_calls_it_started(rt):
    """The try's end ("retrying": queued in SQLite, the worker's current job cleared) comes before RQ moves the job
    out of started: a reconcile in between must date the job from that end, not from RQ's old start."""
    row = enqueue(rt, "call", "retrying", {}, handler="tests.jobfuncs:ok")
    register_worker(rt.store, "busy", ["maintenance"])  # alive: this process's pid, a fresh heartbeat
    rq_job = Job.fetch(row["rq_id"], connection=rt.redis)
    rt.redis.lrem("rq:queue:maintenance", 0, row["rq_id"])
    long_ago = now() - timedelta(seconds=rt.settings.worker_heartbeat_ttl * 10)
    rt.redis.hset(rq_job.key, mapping={"status": "started", "worker_name": "busy", "started_at": utcformat(long_ago)})
    rt.store.execute("UPDATE jobs SET attempts = 1, worker = 'busy', updated_at = ? WHERE id = ?", (iso(), row["id"]))
    assert reconcile(rt) == []
    assert get_job(rt.store, row["id"])["generation"] == 1


def test_a_run_that_ended_without_its_end_statement_does_not_keep_its_worker_busy(rt, settings):
    """A handler that leaves by a BaseException never records its end: the worker's current job must still be
    cleared, or the reconcile would take the live worker for busy with the job, which then never ends."""
    row = enqueue(rt, "call", "escapes", {}, handler="tests.jobfuncs:escapes")
    worker = start_worker(settings, "maintenance", **FAST)
    try:
        wait_for(lambda: get_job(rt.store, row["id"])["status"] == "failed", timeout=60,
                 what="the job ended by the reconcile after its runs ended without a word")  # fmt: skip
    finally:
        _stop(worker)
    job = get_job(rt.store, row["id"])
    assert job["error"].startswith("abandoned: ") and job["attempts"] == job["max_attempts"]


def test_redis_flushed_under_a_running_worker_loses_nothing(rt, settings):
    worker = start_worker(settings, "maintenance", **FAST)
    try:
        first = enqueue(rt, "call", "before-flush", {}, handler="tests.jobfuncs:ok")
        wait_for(lambda: get_job(rt.store, first["id"])["status"] == "succeeded", what="the first job")
        redis.Redis.from_url(settings.redis_url or "").flushall()
        second = enqueue(rt, "call", "after-flush", {}, handler="tests.jobfuncs:ok", delay=1)
        wait_for(lambda: get_job(rt.store, second["id"])["status"] == "succeeded", timeout=60, what="the next job")
    finally:
        _stop(worker)
    assert worker.returncode == 0


# -- logs ---------------------------------------------------------------------------------------------------


def test_a_transient_retry_is_one_warning_line_and_its_traceback_goes_to_the_job_events(rt, caplog):
    row = enqueue(rt, "call", "flaky", {}, handler="tests.jobfuncs:always_fails")
    with caplog.at_level(logging.DEBUG, logger="contentq"), caplog.at_level(logging.INFO, logger="rq"):
        drain(rt, "maintenance")
    job = get_job(rt.store, row["id"])
    assert (job["status"], job["attempts"], job["error"]) == ("failed", 3, "RuntimeError: boom on attempt 3")
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert [(r.levelname, r.getMessage().split(" (ran ")[0]) for r in retries] == [
        ("WARNING", f"{row['id']} retrying")
    ] * 2
    assert all(r.getMessage().endswith(f"RuntimeError: boom on attempt {n}; retry in 1 s ({3 - n} left)")
               for n, r in enumerate(retries, 1))  # fmt: skip
    assert not [
        r for r in caplog.records if r.levelno >= logging.INFO and ("Traceback" in r.getMessage() or r.exc_info)
    ]
    events = [e for e in job_events(rt.store, row["id"]) if e["event"] == "retrying"]
    assert len(events) == 2 and all("Traceback (most recent call last)" in e["message"] for e in events)


# -- 5. a post stranded between a job's failure and its settlement ---------------------------------------------


class Killed(BaseException):
    """The process is SIGKILLed here: nothing after this point runs."""


def _killed_before_settling(*_: object) -> None:
    raise Killed


def _fail_abandoned_job_then_die(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's failure is committed, then the process dies before the post is settled (the window between
    `finish` and `settle_failed_job` in run_tracked, or between the UPDATE and the hook in reconcile)."""
    monkeypatch.setattr(reconcile_module, "settle_failed_job", _killed_before_settling)
    with pytest.raises(Killed):
        reconcile(rt)
    monkeypatch.undo()


def test_publish_failure_committed_but_never_settled_is_settled_once_by_reconcile(one_try, monkeypatch):
    rt = Runtime(one_try)
    set_process_runtime(rt)
    fake = FakeTelegram()
    fake.add_channel("@mychan")
    rt.services["telegram"] = fake
    post_id = add_post(rt, "Never sent", state="publishing", scheduled_at=iso())
    job = _running_job(rt, "publish", post_id, _ghost(rt), attempts=1)
    _fail_abandoned_job_then_die(rt, monkeypatch)
    reason = "abandoned: worker ghost died during the last attempt (attempt 1 of 1)"
    assert (get_job(rt.store, job["id"])["status"], get_post(rt.store, post_id)["state"]) == ("failed", "publishing")
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'settle'") == 0  # stranded: no job moves it

    first, second = reconcile(rt), reconcile(rt)
    assert first == [
        {
            "job": job["id"],
            "found": f"post {post_id} is publishing, but its publish job ended failed without settling it",
            "action": "its post settled",
        }
    ]
    assert second == []  # the settle job is now the post's newest job
    settles = rt.store.query("SELECT * FROM jobs WHERE kind = 'settle'")
    assert [(s["post_id"], s["parent_id"], s["status"]) for s in settles] == [(post_id, job["id"], "queued")]
    assert json.loads(settles[0]["payload"]) == {"post_id": post_id, "reason": reason}
    drain(rt, "publish")
    assert get_job(rt.store, settles[0]["id"])["status"] == "succeeded"
    post = get_post(rt.store, post_id)
    assert (post["state"], post["state_reason"]) == (
        "failed", f"publish: {reason}; the post is not (completely) in @mychan"
    )  # fmt: skip
    alerts = rt.store.query("SELECT * FROM notifications WHERE key = ?", (f"publish-failed:{post_id}",))
    assert [(a["level"], a["suppressed"]) for a in alerts] == [("error", 0)] and reason in alerts[0]["message"]
    assert reconcile(rt) == []
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'settle'") == 1
    assert fake.visible("@mychan") == []
    rt.close()


@pytest.mark.parametrize(("kind", "alert"), [("rewrite", "rewrite-failed"), ("generate", "post-failed")])
def test_rewrite_failure_committed_but_never_settled_fails_the_post_once(one_try, monkeypatch, kind, alert):
    rt = Runtime(one_try)
    set_process_runtime(rt)
    post_id = add_post(rt, "Half written", state="rewriting")
    job = _running_job(rt, kind, post_id, _ghost(rt), attempts=3)
    _fail_abandoned_job_then_die(rt, monkeypatch)
    assert get_post(rt.store, post_id)["state"] == "rewriting"

    actions = reconcile(rt)
    assert [(a["job"], a["action"]) for a in actions] == [(job["id"], "its post settled")]
    assert reconcile(rt) == []
    reason = "abandoned: worker ghost died during the last attempt (attempt 3 of 3)"
    post = get_post(rt.store, post_id)
    assert (post["state"], post["state_reason"]) == ("failed", f"{kind}: {reason}")
    assert (get_job(rt.store, job["id"])["status"], get_job(rt.store, job["id"])["error"]) == ("failed", reason)
    alerts = rt.store.query("SELECT * FROM notifications WHERE key = ?", (f"{alert}:{post_id}",))
    assert [(a["level"], a["suppressed"]) for a in alerts] == [("error", 0)] and reason in alerts[0]["message"]
    rt.close()


def test_a_post_moved_after_its_job_failed_is_not_settled_by_reconcile(one_try):
    rt = Runtime(one_try)
    set_process_runtime(rt)
    post_id = add_post(rt, "Published from the CLI", state="scheduled", scheduled_at=iso())
    job = _running_job(rt, "publish", post_id, _ghost(rt), attempts=1)
    earlier = iso(now() - timedelta(minutes=1))
    rt.store.execute(
        "UPDATE jobs SET status = 'failed', error = 'old failure', finished_at = ? WHERE id = ?", (earlier, job["id"])
    )
    # `contentq publish ID` (in process, no job) moved the post to publishing after that job had ended.
    rt.store.execute("UPDATE posts SET state = 'publishing', updated_at = ? WHERE id = ?", (iso(), post_id))
    assert reconcile(rt) == []
    assert get_post(rt.store, post_id)["state"] == "publishing"
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'settle'") == 0
    rt.close()


# -- 6. a stale read never fails or re-enqueues a run that started since ----------------------------------------


@pytest.mark.parametrize("attempts", [1, 3], ids=["tries-left", "last-try"])
def test_reconcile_leaves_alone_a_job_that_restarted_on_another_worker_after_it_was_read(
    one_try, monkeypatch, attempts
):
    rt = Runtime(one_try)
    set_process_runtime(rt)
    post_id = add_post(rt, "Being rewritten", state="rewriting")
    job = _running_job(rt, "rewrite", post_id, _ghost(rt), attempts=attempts)
    register_worker(rt.store, "alive", ["rewrite"])

    def restarted_meanwhile(*_: object) -> bool:
        # Between reconcile's read and its check, RQ retried the job (same rq_id) and worker `alive` took it.
        rt.store.execute(
            "UPDATE jobs SET attempts = ?, worker = 'alive', started_at = ? WHERE id = ?",
            (min(attempts + 1, 3), iso(), job["id"]),
        )
        return True  # the ghost, which the stale row names, is gone

    monkeypatch.setattr(reconcile_module, "_holder_gone", restarted_meanwhile)
    assert reconcile_module.recover_abandoned(rt) == []
    after = get_job(rt.store, job["id"])
    assert (after["status"], after["worker"], after["rq_id"], after["generation"]) == (
        "in_progress", "alive", job["rq_id"], 1
    )  # fmt: skip
    assert not [e for e in job_events(rt.store, job["id"]) if e["event"] in ("abandoned", "failed")]
    assert get_post(rt.store, post_id)["state"] == "rewriting"
    assert not rt.redis.exists(Job.key_for(f"{job['id']}-g2"))
    rt.close()


def test_an_image_job_whose_last_try_died_lets_its_post_go_on_without_the_image(home, monkeypatch):
    write_config(home, route_toml(extra='images = "optional"'))
    settings = load_settings(home=home, worker_heartbeat_ttl=3, worker_maintenance_interval=1, imagegen_attempts=1)
    rt = Runtime(settings)
    set_process_runtime(rt)
    post_id = add_post(rt, "Waiting for its card", state="rewritten", rewrite_html="Waiting for its card")
    job = _running_job(rt, "imagegen", post_id, _ghost(rt), attempts=1)
    _fail_abandoned_job_then_die(rt, monkeypatch)  # the job is failed, its hook never ran
    assert get_post(rt.store, post_id)["state"] == "rewritten"

    actions = reconcile(rt)
    assert [(a["job"], a["action"]) for a in actions] == [(job["id"], "its post settled")]
    assert reconcile(rt) == []
    assert get_job(rt.store, job["id"])["status"] == "failed"
    assert get_post(rt.store, post_id)["state"] == "scheduled"  # an optional image: published without it
    rt.close()
