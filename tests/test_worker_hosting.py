"""`contentq worker --host listen,bot`: the Telegram worker also runs the listeners and the admin bot (the compact
layout), in real worker processes on the session's Valkey, against the file-backed Telegram fakes (tests/
shared_telegram.py for the accounts, tests/shared_bot.py for the bot) so the test can act from outside."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from contentq import accounts
from contentq.cli.app import app
from contentq.flow import pipeline
from contentq.ops.doctor import FAIL, OK, run_health
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.hosting import Host, Hosted, lease_holder, lease_key
from contentq.runtime.tracking import enqueue
from contentq.settings import Settings, load_settings
from contentq.store.jobs import get_job
from contentq.store.posts import get_post
from tests import shared_bot
from tests.conftest import subprocess_env, wait_for
from tests.publish_helpers import add_post, route_toml, write_config
from tests.shared_telegram import post_donor, visible

ADMIN = 111
STOP_TIMEOUT = 20
"""A worker that has not exited this long after TERM is stuck (it stops within seconds)."""


@pytest.fixture
def hosting(home: Path) -> Settings:
    write_config(home, route_toml())  # @donor → @mychan, no rewrite, published as soon as possible
    return load_settings(home=home, worker_heartbeat_ttl=3, worker_maintenance_interval=1, publish_min_interval=0,
                         publish_account_budget=0)  # fmt: skip


@pytest.fixture
def rt(hosting: Settings) -> Iterator[Runtime]:
    runtime = Runtime(hosting)
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


class Workers:
    """Worker processes started by a test, each logging to a file; killed at the end if still running."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.tg_db = tmp_path / "telegram.db"
        self.bot_db = tmp_path / "bot.db"
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, host: str, **env: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker-{len(self.procs)}.log"
        fakes = {"CONTENTQ_TG_GATEWAY": "tests.shared_telegram:gateway_from_env",
                 "CONTENTQ_FAKE_TG_DB": str(self.tg_db), "CONTENTQ_PUBLISH_MIN_INTERVAL": "0",
                 "CONTENTQ_PUBLISH_ACCOUNT_BUDGET": "0"}  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "contentq", "worker", "--host", host],
                                    env=subprocess_env(self.settings, **{**fakes, **env}), stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip
        self.procs.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return next(log for p, log in self.procs if p is proc).read_text(errors="replace")

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        """TERM, then the exit code: a warm shutdown that ends the hosted services too."""
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit {STOP_TIMEOUT} s after TERM:\n{self.log(proc)}") from None

    def close(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(hosting: Settings, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(hosting, tmp_path)
    yield started
    started.close()


def listener(rt: Runtime, name: str = "listen") -> dict | None:
    return rt.store.one("SELECT name, pid, state, disconnect_reason FROM listeners WHERE name = ?", (name,))


def connected_in(rt: Runtime, proc: subprocess.Popen[bytes], name: str = "listen") -> bool:
    row = listener(rt, name)
    return row is not None and row["pid"] == proc.pid and row["state"] == "connected"


def test_a_worker_hosting_the_listener_collects_a_donor_post_live_and_publishes_it(rt, workers):
    worker = workers.start("listen")
    wait_for(lambda: connected_in(rt, worker), what="the hosted listener connected")
    post_donor(workers.tg_db, "@donor", [(1, "Live <b>news</b>")], live=True)
    wait_for(lambda: [m["html"] for m in visible(workers.tg_db, "@mychan")] == ["Live <b>news</b>"], timeout=60,
             what="the live post published by the same worker")  # fmt: skip
    post = rt.store.one("SELECT * FROM posts WHERE source = '@donor'")
    assert post is not None and post["state"] == "published"
    first = rt.store.one("SELECT actor FROM post_changes WHERE post_id = ? ORDER BY id LIMIT 1", (post["id"],))
    assert first is not None and first["actor"] == "listen:listen"  # taken live, not by a collect job
    assert workers.stop(worker) == 0
    row = listener(rt)
    assert row is not None and row["state"] == "stopped"
    assert lease_holder(rt.redis, "listen") is None  # given back: a standby takes over at once


def awaiting_approval(rt: Runtime) -> int:
    write_config(rt.settings.home, route_toml(extra="approval = true"))
    post_id = add_post(rt, "Rewritten <b>news</b> of the day")
    assert pipeline.on_rewritten(rt, post_id) == "awaiting_approval"
    return post_id


def test_the_bot_hosted_by_the_worker_answers_an_approval_press_and_term_stops_all_three(rt, workers):
    post_id = awaiting_approval(rt)
    bot = {"CONTENTQ_BOT_TOKEN": "123456:test-token-value", "CONTENTQ_BOT_ADMINS": str(ADMIN),
           "CONTENTQ_BOT_GATEWAY": "tests.shared_bot:gateway_from_env",
           "CONTENTQ_FAKE_BOT_DB": str(workers.bot_db)}  # fmt: skip
    worker = workers.start("listen,bot", **bot)
    wait_for(lambda: connected_in(rt, worker), what="the hosted listener connected")

    def card() -> shared_bot.ChatMessage | None:
        found = [m for m in shared_bot.messages(workers.bot_db, ADMIN) if "awaiting approval" in m.html]
        return found[0] if found else None

    control = wait_for(card, what="the approval card, sent by the bot in the worker")
    query = shared_bot.press(workers.bot_db, ADMIN, ADMIN, control.id, "Approve")
    text, alert = wait_for(lambda: shared_bot.answer_to(workers.bot_db, query), what="the answer to the press")
    assert text.startswith("Approved:") and not alert
    approved = rt.store.one("SELECT actor FROM post_changes WHERE post_id = ? AND event = 'approved'", (post_id,))
    assert approved is not None and approved["actor"] == f"bot:{ADMIN}"
    # The approved post is published by the worker's own jobs (asap), through the same process.
    wait_for(lambda: get_post(rt.store, post_id)["state"] == "published", timeout=60, what="the approved post out")
    # health knows the bot runs, and where
    with_bot = load_settings(home=rt.settings.home, bot_token="123456:test-token-value", bot_admins=str(ADMIN))
    (running,) = [p for p in run_health(with_bot, workers=False) if p.check == "bot running"]
    assert running.status == OK and f"pid {worker.pid}" in running.detail
    assert f"@{shared_bot.USERNAME}" in running.detail

    assert workers.stop(worker) == 0  # the job loop, the listener and the bot: one TERM
    (gone,) = [p for p in run_health(with_bot, workers=False) if p.check == "bot running"]
    assert gone.status == FAIL and "contentq-telegram" in (gone.fix or "")
    log = workers.log(worker)
    assert "hosting listen, bot in this worker" in log and "bot stopped" in log
    assert "123456:test-token-value" not in log
    row = listener(rt)
    assert row is not None and row["state"] == "stopped"


def test_a_hosted_listener_whose_account_is_logged_out_leaves_the_worker_and_its_jobs_alone(rt, workers):
    accounts.add_account(rt, "alt")
    write_config(rt.settings.home, route_toml(sources='["@donor", "@donor_b"]',
                                              extra='source_accounts = { "@donor_b" = "alt" }'))  # fmt: skip
    worker = workers.start("listen", CONTENTQ_TG_GATEWAY="tests.shared_telegram:accounts_from_env",
                           CONTENTQ_FAKE_TG_LOGGED_OUT="alt")  # fmt: skip
    # One listener per reading account, named as the standalone ones, both in this worker.
    wait_for(lambda: connected_in(rt, worker), what="the default account's listener connected")
    wait_for(lambda: (listener(rt, "listen-alt") or {}).get("state") == "not_logged_in",
             what="the logged-out account's listener waiting for a login")  # fmt: skip
    down = listener(rt, "listen-alt")
    assert down is not None and down["pid"] == worker.pid and "accounts login alt" in (down["disconnect_reason"] or "")

    post_donor(workers.tg_db, "@donor", [(1, "Still <b>flowing</b>")], live=True)
    wait_for(lambda: [m["html"] for m in visible(workers.tg_db, "@mychan")] == ["Still <b>flowing</b>"],
             timeout=60, what="the other account's post published")  # fmt: skip
    job = enqueue(rt, "call", "beside-a-logged-out-listener", handler="tests.jobfuncs:ok")
    wait_for(lambda: get_job(rt.store, job["id"])["status"] == "succeeded", what="a job of the same worker")
    assert worker.poll() is None
    health = CliRunner().invoke(app, ["health"])
    assert "listener listen-alt: not logged in" in health.output, health.output
    assert workers.stop(worker) == 0


def test_only_one_of_two_hosting_workers_runs_the_listener_and_the_other_takes_over(rt, workers):
    first = workers.start("listen")
    wait_for(lambda: connected_in(rt, first), what="the first worker's listener connected")
    second = workers.start("listen")
    wait_for(lambda: rt.store.scalar("SELECT COUNT(*) FROM workers WHERE pid = ? AND stopped_at IS NULL",
                                     (second.pid,)), what="the second worker up")  # fmt: skip
    time.sleep(2.0)  # a few of its lease tries (every second here): it stands by
    assert connected_in(rt, first)
    holder = rt.store.scalar("SELECT name FROM workers WHERE pid = ?", (first.pid,))
    assert lease_holder(rt.redis, "listen") == holder
    assert "listen runs in" in workers.log(second) and "standing by" in workers.log(second)

    first.kill()  # no goodbye: the lease expires (the heartbeat TTL, 3 s here) and the standby takes over
    first.wait()
    wait_for(lambda: connected_in(rt, second), what="the second worker's listener taking over")
    post_donor(workers.tg_db, "@donor", [(1, "After the <b>takeover</b>")], live=True)
    wait_for(lambda: [m["html"] for m in visible(workers.tg_db, "@mychan")] == ["After the <b>takeover</b>"],
             timeout=60, what="the post taken live by the second worker")  # fmt: skip
    assert workers.stop(second) == 0


def test_host_needs_known_names_and_no_burst(home):
    runner = CliRunner()
    wrong = runner.invoke(app, ["worker", "--host", "listen,web"])
    assert wrong.exit_code == 1 and "--host web" in str(wrong.exception or wrong.output)
    burst = runner.invoke(app, ["worker", "--burst", "--host", "listen"])
    assert burst.exit_code == 1 and "--burst" in str(burst.exception or burst.output)


def test_host_bot_without_a_token_runs_no_bot(rt, workers):
    worker = workers.start("bot")
    wait_for(lambda: rt.store.scalar("SELECT COUNT(*) FROM workers WHERE pid = ? AND stopped_at IS NULL",
                                     (worker.pid,)), what="the worker up")  # fmt: skip
    assert workers.stop(worker) == 0
    log = workers.log(worker)
    assert "CONTENTQ_BOT_TOKEN is not set" in log and "hosting" not in log
    assert lease_holder(rt.redis, "bot") is None


# -- the host itself, in-process on the session's Valkey --------------------------------------------------------


class Loop:
    """A hosted service that runs until stopped, or raises at once while `fail` is set."""

    def __init__(self, runs: list[Loop], fail: bool = False) -> None:
        self.stopped = threading.Event()
        self.fail = fail
        runs.append(self)

    def run(self) -> None:
        if self.fail:
            raise RuntimeError("a bug in the service")
        self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


def test_a_failing_service_is_started_again_and_a_lease_lost_to_another_process_stops_it_here(rt):
    runs: list[Loop] = []
    failures = [True, True]  # the first two runs fail
    service = Hosted("svc", lambda: Loop(runs, fail=bool(failures and failures.pop())))
    host = Host(rt.redis, [service], owner="worker-a", lease_ttl=1.0, first_wait=0.05, max_wait=0.2)
    host.start()
    try:
        wait_for(lambda: len(runs) == 3 and not runs[-1].stopped.is_set(), what="the third run, running")
        assert lease_holder(rt.redis, "svc") == "worker-a"
        standby_runs: list[Loop] = []
        standby = Host(rt.redis, [Hosted("svc", lambda: Loop(standby_runs))], owner="worker-b", lease_ttl=1.0,
                       first_wait=0.05, max_wait=0.2)  # fmt: skip
        standby.start()
        time.sleep(1.0)  # several of its tries: the lease is held
        assert standby_runs == []
        # Redis loses the lease (a flush) and the standby takes it first: the holder stops its run.
        rt.redis.delete(lease_key("svc"))
        wait_for(lambda: standby_runs, what="the standby's run")
        wait_for(runs[2].stopped.is_set, what="the first host giving the service up")
        assert lease_holder(rt.redis, "svc") == "worker-b"
        assert standby.join(5) == []
        assert lease_holder(rt.redis, "svc") is None  # given back on stop
    finally:
        host.join(5)


def test_a_holder_cut_off_from_redis_stops_its_service_before_its_lease_can_expire(rt):
    # The holder cannot know whether another host took the lease meanwhile: it stops within two thirds of the TTL.
    runs: list[Loop] = []
    host = Host(rt.redis, [Hosted("svc", lambda: Loop(runs))], owner="worker-a", lease_ttl=3.0, first_wait=0.05,
                max_wait=0.2)  # fmt: skip
    host.start()
    try:
        wait_for(lambda: runs and not runs[0].stopped.is_set(), what="the service running")
        with socket.socket() as probe:  # a port nothing listens on: this host's Redis is unreachable from now on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        host.conn = redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=0.2)
        wait_for(runs[0].stopped.is_set, timeout=10, interval=0.02, what="the service stopped by its unrenewed lease")
        # stopped while its lease still stood in Redis: no other host could have taken the service yet
        assert rt.redis.get(lease_key("svc")) == b"worker-a" and rt.redis.pttl(lease_key("svc")) > 0
        time.sleep(0.5)
        assert len(runs) == 1  # not started again while the lease cannot be taken
    finally:
        host.join(5)


def test_a_standalone_bot_stands_by_while_a_worker_hosts_the_bot(rt, workers):
    # Halfway through a layout change a spread `contentq bot` may run beside a worker hosting the bot: one token,
    # one bot. The standalone program takes the same lease, so it waits instead of answering a second time.
    rt.redis.set(lease_key("bot"), "hosting-worker", px=60_000)
    env = subprocess_env(rt.settings, CONTENTQ_BOT_GATEWAY="tests.shared_bot:gateway_from_env",
                         CONTENTQ_FAKE_BOT_DB=str(workers.bot_db), CONTENTQ_BOT_TOKEN="123456:test-token-value",
                         CONTENTQ_BOT_ADMINS=str(ADMIN))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "contentq", "bot"], env=env, stderr=subprocess.PIPE)
    try:
        time.sleep(4.0)  # several of its tries to take the lease
        assert proc.poll() is None  # up, standing by
        assert not workers.bot_db.exists() or shared_bot.logins(workers.bot_db) == []
        rt.redis.delete(lease_key("bot"))  # the hosting worker is gone
        wait_for(lambda: workers.bot_db.exists() and shared_bot.logins(workers.bot_db) == [proc.pid], 30,
                 what="the standalone bot taking over")  # fmt: skip
        assert lease_holder(rt.redis, "bot") != "hosting-worker"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"bot stopped" in err, err.decode()
    assert lease_holder(rt.redis, "bot") is None  # given back
