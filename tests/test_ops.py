"""Alerts (once per window), doctor (ok/fail with the fix), health (exit codes for probes) and logs."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, now
from contentq.logs import JobContextFilter, JsonFormatter, RedactingFormatter
from contentq.ops import doctor
from contentq.ops import supervisor as sv
from contentq.ops.alerts import check_alerts
from contentq.ops.backup import make_backup
from contentq.redact import register_secret
from contentq.runtime.context import JobContext, Runtime, set_process_runtime
from contentq.runtime.queues import pause
from contentq.runtime.tracking import enqueue
from contentq.settings import load_settings
from contentq.store import open_store
from tests.conftest import REPO, drain, start_worker, wait_for

runner = CliRunner()


# Alerts -----------------------------------------------------------------------------------------------------


@pytest.fixture
def art(home: Path) -> Iterator[Runtime]:
    settings = load_settings(home=home, alert_failure_threshold=2, alert_window_seconds=3600, alert_queue_limit=1,
                             alert_max_wait_seconds=60)  # fmt: skip
    runtime = Runtime(settings)
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


def add_job(rt: Runtime, job_id: str, queue: str, status: str, at: str) -> None:
    rt.store.execute(
        "INSERT INTO jobs (id, kind, queue, key, status, created_at, enqueued_at, finished_at, updated_at)"
        " VALUES (?, 'call', ?, ?, ?, ?, ?, ?, ?)",
        (job_id, queue, job_id, status, at, at, at if status == "failed" else None, at),
    )


def notifications(rt: Runtime) -> list[dict[str, Any]]:
    return rt.store.query("SELECT key, message, suppressed FROM notifications ORDER BY id")


def firing(checks: list[Any]) -> set[str]:
    return {c.check for c in checks if c.firing}


def test_quiet_system_raises_no_alert(art: Runtime) -> None:
    add_job(art, "f-1", "rewrite", "failed", iso())
    checks = check_alerts(art)
    assert firing(checks) == set()
    assert notifications(art) == []


def test_failures_in_the_window_notify_once_per_window(art: Runtime) -> None:
    add_job(art, "f-old", "rewrite", "failed", iso(now() - timedelta(hours=2)))  # outside the window
    add_job(art, "f-1", "rewrite", "failed", iso())
    assert firing(check_alerts(art)) == set()
    add_job(art, "f-2", "publish", "failed", iso())
    checks = check_alerts(art)
    assert firing(checks) == {"failed jobs"}
    assert next(c for c in checks if c.firing).notified is True
    # The next cron run inside the window does not repeat the message.
    again = check_alerts(art)
    assert next(c for c in again if c.firing).notified is False
    rows = notifications(art)
    assert [r["key"] for r in rows] == ["alert:failures"]
    assert "2 jobs failed" in rows[0]["message"] and rows[0]["suppressed"] == 1


def test_queue_size_wait_and_open_breaker(art: Runtime) -> None:
    old = iso(now() - timedelta(minutes=10))
    add_job(art, "q-1", "rewrite", "queued", old)
    add_job(art, "q-2", "rewrite", "queued", iso())
    add_job(art, "c-1", "collect", "queued", old)
    pause(art.redis, "collect")  # a paused queue waits on purpose: no wait alert for it
    art.redis.set("contentq:llm:pybreaker:state", "open")
    checks = check_alerts(art)
    assert firing(checks) == {"queue rewrite size", "queue rewrite wait", "breaker llm"}
    keys = {r["key"] for r in notifications(art)}
    assert keys == {"alert:queue:rewrite", "alert:wait:rewrite", "alert:breaker:llm"}
    art.redis.set("contentq:llm:pybreaker:state", "closed")
    assert "breaker llm" not in firing(check_alerts(art))


def test_alerts_command(art: Runtime) -> None:
    add_job(art, "q-1", "rewrite", "queued", iso())
    add_job(art, "q-2", "rewrite", "queued", iso())
    env = {"CONTENTQ_ALERT_QUEUE_LIMIT": "1", "COLUMNS": "200"}
    result = runner.invoke(app, ["alerts", "check", "--no-notify", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = {c["check"]: c for c in json.loads(result.output)}
    assert data["queue rewrite size"]["firing"] is True and data["queue rewrite size"]["value"] == 2
    assert notifications(art) == []
    table = runner.invoke(app, ["alerts", "check"], env=env)
    assert "ALERT" in table.output and "queue rewrite holds 2 jobs" in table.output
    assert [r["key"] for r in notifications(art)] == ["alert:queue:rewrite"]


def test_notifications_command_lists_what_was_sent(art: Runtime) -> None:
    """The command the docs name (`contentq notifications`): the record of every alert, with the repeats held."""
    add_job(art, "f-1", "rewrite", "failed", iso())
    add_job(art, "f-2", "publish", "failed", iso())
    check_alerts(art)
    check_alerts(art)  # the same alert again inside the window: held back, counted
    art.notifier.notify("rewrite-invalid-output:7:2", "retrying rewrite of post 7: " + "a long reason " * 10)
    env = {"CONTENTQ_HOME": str(art.settings.home), "COLUMNS": "80"}
    listed = json.loads(runner.invoke(app, ["notifications", "--json"], env=env).output)
    assert [(n["key"], n["level"], n["suppressed"]) for n in listed] == [
        ("rewrite-invalid-output:7:2", "warning", 0),
        ("alert:failures", "error", 1),
    ]
    table = runner.invoke(app, ["notifications"], env=env)
    assert table.exit_code == 0, table.output
    assert "2 jobs failed" in table.output and "retrying rewrite of post 7" in table.output
    assert max(len(line) for line in table.output.splitlines()) <= 80
    only_errors = json.loads(runner.invoke(app, ["notifications", "--level", "error", "--json"], env=env).output)
    assert [n["key"] for n in only_errors] == ["alert:failures"]
    old = runner.invoke(app, ["notifications", "--since", "all", "--json"], env=env)
    assert len(json.loads(old.output)) == 2


# Doctor and health ------------------------------------------------------------------------------------------


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.headers.get("Authorization") != "Bearer good-key-123":
            self.send_response(401)
            body = b'{"error": {"message": "bad key", "type": "invalid_request_error"}}'
        else:
            self.send_response(200)
            body = b'{"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "x"}]}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def llm_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


ROUTES = """
[routes.news]
target = "@mine"
sources = ["@donor"]
rewriter = "llm"
schedule = { asap = true }
"""


def by_check(probes: list[doctor.Probe]) -> dict[str, doctor.Probe]:
    return {p.check: p for p in probes}


def test_doctor_reports_each_problem_with_its_fix(home: Path, llm_url: str) -> None:
    (home / "contentq.toml").write_text(ROUTES)
    settings = load_settings(home=home, openai_base_url=llm_url, openai_api_key="wrong-key-456")
    missing = by_check(doctor.run_doctor(settings, read_user_crontab=lambda: ""))["database"]
    assert missing.status == "warn" and "does not exist yet" in missing.detail
    assert not settings.db_path.exists()  # checking did not create it
    store = open_store(settings.db_path)
    last = store.one("SELECT * FROM _sqlite_migrations ORDER BY name DESC LIMIT 1")
    assert last is not None
    store.execute("DELETE FROM _sqlite_migrations WHERE id = ?", (last["id"],))
    store.close()
    pending = by_check(doctor.run_doctor(settings, read_user_crontab=lambda: ""))["database"]
    assert pending.status == "fail" and "1 migration(s) pending" in pending.detail
    assert "contentq db migrate" in pending.fix
    store = open_store(settings.db_path, migrate=False)  # put the record back: the schema has it applied
    store.db["_sqlite_migrations"].insert(last)
    store.close()
    probes = by_check(doctor.run_doctor(settings, read_user_crontab=lambda: ""))
    assert probes["config"].status == "ok" and "news" in probes["config"].detail
    assert probes["database"].status == "ok"
    assert probes["redis"].status == "ok"
    assert probes["workers"].status == "warn" and "supervisorctl start" in probes["workers"].fix
    assert probes["telegram"].status == "fail" and "my.telegram.org" in probes["telegram"].fix
    assert probes["llm"].status == "fail" and "CONTENTQ_OPENAI_API_KEY" in probes["llm"].fix
    assert "wrong-key-456" not in json.dumps([p.as_dict() for p in probes.values()])
    assert probes["supervisor"].status == "warn" and "supervisor render" in probes["supervisor"].fix
    assert probes["cron"].status == "warn" and "crontab.example" in probes["cron"].fix


def test_doctor_all_good(home: Path, llm_url: str) -> None:
    (home / "contentq.toml").write_text(ROUTES)
    session = home / "telegram.session"
    session.write_text("session")
    session.chmod(0o600)
    settings = load_settings(home=home, openai_base_url=llm_url, openai_api_key="good-key-123", tg_api_id=1,
                             tg_api_hash="0123456789abcdef")  # fmt: skip
    sv.write(settings, sv.default_output(settings))
    open_store(settings.db_path).close()
    make_backup(settings)
    for path in (home, settings.db_path):  # what the contentq entry point's umask gives
        path.chmod(0o700 if path.is_dir() else 0o600)
    cron = (REPO / "crontab.example").read_text()
    probes = by_check(doctor.run_doctor(settings, read_user_crontab=lambda: cron))
    statuses = {name: p.status for name, p in probes.items()}
    assert statuses == {"config": "ok", "data directory": "ok", "permissions": "ok", "database": "ok", "backup": "ok",
                        "redis": "ok", "workers": "warn", "telegram": "ok", "listener": "skip",
                        "telegram account main": "ok", "llm": "ok", "supervisor": "ok", "cron": "ok"}  # fmt: skip
    # A session readable by others, a stale supervisor config, an unreachable endpoint.
    session.chmod(0o644)
    changed = load_settings(home=home, openai_base_url="http://127.0.0.1:1/v1", openai_api_key="good-key-123",
                            tg_api_id=1, tg_api_hash="0123456789abcdef", imagegen_concurrency=4)  # fmt: skip
    probes = by_check(doctor.run_doctor(changed, read_user_crontab=lambda: cron, llm_timeout=2))
    assert probes["telegram"].status == "warn" and "chmod 600" in probes["telegram"].fix
    assert probes["supervisor"].status == "fail" and "numprocs" in probes["supervisor"].detail
    assert "supervisorctl reread" in probes["supervisor"].fix
    assert probes["llm"].status == "fail" and "unreachable" in probes["llm"].detail


def test_doctor_command_exit_codes(home: Path) -> None:
    (home / "contentq.toml").write_text(
        ROUTES.replace('rewriter = "llm"', 'rewriter = "clean"').replace(
            'sources = ["@donor"]', 'sources = ["@donor"]\npublisher = "outbox"'
        )
    )
    env = {"COLUMNS": "250", "CONTENTQ_TG_API_ID": "1", "CONTENTQ_TG_API_HASH": "0123456789abcdef"}
    (home / "telegram.session").write_text("s")
    (home / "telegram.session").chmod(0o600)
    result = runner.invoke(app, ["doctor"], env=env)
    assert result.exit_code == 0, result.output  # warnings (no workers, cron, supervisor) are not failures
    assert "warn" in result.output
    (home / "contentq.toml").write_text("[routes.bad]\ntarget = 1\n")
    result = runner.invoke(app, ["doctor", "--json"], env=env)
    assert result.exit_code == 1
    config = next(p for p in json.loads(result.output) if p["check"] == "config")
    assert config["status"] == "fail" and "bad" in config["detail"]


def test_health_exits_non_zero_without_workers(rt: Runtime) -> None:
    rt.store  # noqa: B018 - creates the database
    result = runner.invoke(app, ["health"])
    assert result.exit_code == 1 and "no live worker" in result.output
    assert runner.invoke(app, ["health", "--no-workers"]).exit_code == 0
    worker = start_worker(rt.settings)
    try:
        wait_for(lambda: runner.invoke(app, ["health"]).exit_code == 0, 30, what="health with a worker")
        data = json.loads(runner.invoke(app, ["health", "--json"]).output)
        assert data["healthy"] is True and [p["check"] for p in data["probes"]] == ["redis", "database", "workers"]
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_health_fails_when_redis_is_down(home: Path) -> None:
    result = runner.invoke(app, ["health", "--no-workers"], env={"CONTENTQ_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == 1 and "fail redis" in result.output
    assert result.output.count("CONTENTQ_REDIS_URL") == 1  # the fix is said once, not in the detail and again


def test_doctor_and_health_say_the_redis_fix_once(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTENTQ_REDIS_URL")  # the embedded Valkey of this home, never started
    probe, conn = doctor.check_redis(load_settings(home=home))
    # doctor: a warning (the next command starts it); health, the monitoring probe, still fails below.
    assert conn is None and probe.status == "warn" and "not running" in probe.detail
    assert "contentq redis start" in probe.fix and "contentq redis start" not in probe.detail
    result = runner.invoke(app, ["health", "--no-workers"])
    assert result.exit_code == 1 and result.output.count("contentq redis start") == 1, result.output


# Logs -------------------------------------------------------------------------------------------------------


def log_inside_a_job(ctx: JobContext, **payload: Any) -> None:
    """A job handler (kind 'call') that logs without passing any job fields."""
    logging.getLogger("contentq.test").warning("inside the job with key sk-live-abcdefghijkl")


class _Capture(logging.Handler):
    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.addFilter(JobContextFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_json_log_lines_carry_the_job_and_hide_secrets(rt: Runtime) -> None:
    capture = _Capture(JsonFormatter())
    logger = logging.getLogger("contentq.test")
    logger.addHandler(capture)
    try:
        row = enqueue(rt, "call", "logs", handler="tests.test_ops:log_inside_a_job")
        drain(rt, "maintenance")
    finally:
        logger.removeHandler(capture)
    [line] = capture.lines
    data = json.loads(line)
    assert data["job_id"] == row["id"] and data["queue"] == "maintenance"
    assert data["level"] == "warning" and data["ts"].endswith("+00:00")
    assert "sk-live" not in line and "***" in data["message"]


def test_human_lines_append_the_fields_and_redact() -> None:
    register_secret("hunter2-secret")
    record = logging.LogRecord("contentq.jobs", logging.INFO, __file__, 1, "sent with %s", ("hunter2-secret",), None)
    record.job_id = "publish-42"
    record.post_id = 42
    record.status = "succeeded"
    record.duration_ms = 12.5
    text = RedactingFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert text == "INFO contentq.jobs: sent with *** [job_id=publish-42 post_id=42 status=succeeded duration_ms=12.5]"
    data = json.loads(JsonFormatter().format(record))
    assert data["post_id"] == 42 and data["duration_ms"] == 12.5 and data["message"] == "sent with ***"


def test_doctor_warns_on_a_readable_env_file_and_data(home: Path) -> None:
    env_file = home / ".env"
    env_file.write_text("CONTENTQ_OPENAI_API_KEY=sk-planted-0000\n")
    env_file.chmod(0o644)
    home.chmod(0o700)
    probe = doctor.check_permissions(load_settings(home=home))
    assert probe.status == "warn" and str(env_file) in probe.detail and f"chmod 600 {env_file}" in probe.fix
    env_file.chmod(0o600)
    home.chmod(0o755)
    probe = doctor.check_permissions(load_settings(home=home))
    assert probe.status == "warn" and str(home) in probe.detail and "go-rwx" in probe.fix
    home.chmod(0o700)
    assert doctor.check_permissions(load_settings(home=home)).status == "ok"


def test_doctor_names_the_servers_real_version(home: Path) -> None:
    """Valkey answers `redis_version:7.2.4` (for clients' sake) whatever its release: the binary knows better."""
    import re
    import subprocess

    from contentq.runtime.redis import find_server_binary

    binary = find_server_binary()
    assert binary is not None
    real = re.search(r"v=(\S+)", subprocess.run([binary, "--version"], capture_output=True, text=True).stdout)
    assert real is not None
    result = runner.invoke(app, ["doctor", "--json"])
    probe = next(p for p in json.loads(result.output) if p["check"] == "redis")
    assert probe["status"] == "ok" and probe["detail"].endswith(f"(Valkey {real.group(1)})"), probe
    assert doctor.server_version({"redis_version": "7.0.15"}) == "Redis 7.0.15"
