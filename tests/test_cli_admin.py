"""The admin CLI: tables, --json, and one clear line with exit 1 for bad ids, no Redis, a locked database."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from typing import Any

import typer
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.runtime.tracking import enqueue
from contentq.settings import load_settings
from tests.conftest import drain, subprocess_env

runner = CliRunner()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a child process: exit codes and stderr exactly as a user sees them."""
    own = {k: v for k, v in os.environ.items() if k.startswith("CONTENTQ_")}
    env = subprocess_env(load_settings(), COLUMNS="200", **own)
    command = [sys.executable, "-m", "contentq", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_queue_status_table_and_json(rt):
    enqueue(rt, "call", "a", handler="tests.jobfuncs:ok")
    result = runner.invoke(app, ["queue", "status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "maintenance" in result.output and "publish" in result.output
    result = runner.invoke(app, ["queue", "status", "--json"])
    data = json.loads(result.output)
    maintenance = next(q for q in data["queues"] if q["queue"] == "maintenance")
    assert maintenance["queued"] == 1 and maintenance["paused"] is False


def test_jobs_list_show_logs_json(rt):
    row = enqueue(rt, "call", "b", {"n": 1}, handler="tests.jobfuncs:ok")
    drain(rt, "maintenance")
    listed = json.loads(runner.invoke(app, ["jobs", "list", "--json", "--status", "succeeded"]).output)
    assert [j["id"] for j in listed] == [row["id"]]
    assert listed[0]["payload"] == {"n": 1}
    shown = json.loads(runner.invoke(app, ["jobs", "show", row["id"], "--json"]).output)
    assert shown["status"] == "succeeded" and shown["attempts"] == 1
    logs = json.loads(runner.invoke(app, ["jobs", "logs", row["id"], "--json"]).output)
    assert [e["event"] for e in logs] == ["enqueued", "started", "succeeded"]
    table = runner.invoke(app, ["jobs", "list", "--since", "1h"], env={"COLUMNS": "200"})
    assert row["id"] in table.output


def test_pause_resume_retry_cancel_commands(rt):
    row = enqueue(rt, "call", "c", handler="tests.jobfuncs:fatal")
    assert runner.invoke(app, ["queue", "pause", "maintenance"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["queue", "status", "--json"]).output)["queues"][4]["paused"] is True
    assert runner.invoke(app, ["queue", "resume", "maintenance"]).exit_code == 0
    drain(rt, "maintenance")
    result = runner.invoke(app, ["jobs", "retry", "--all-failed"])
    assert result.exit_code == 0 and row["id"] in result.output
    result = runner.invoke(app, ["jobs", "cancel", row["id"]])
    assert result.exit_code == 0
    assert rt.store.scalar("SELECT status FROM jobs WHERE id = ?", (row["id"],)) == "cancelled"


def test_unknown_id_is_one_line_and_exit_1(rt):
    result = cli("jobs", "show", "no-such-job")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: no job 'no-such-job'; `contentq jobs list` shows the jobs"]


def test_unreachable_redis_is_one_line_and_exit_1(rt, monkeypatch):
    monkeypatch.setenv("CONTENTQ_REDIS_URL", "redis://:hunter2secret@127.0.0.1:1/0")
    result = cli("queue", "status")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach Redis at redis://:***@127.0.0.1:1/0")
    assert "hunter2secret" not in result.stderr


def test_locked_database_says_it_waits_then_gives_up_with_exit_1(rt, monkeypatch):
    row = enqueue(rt, "call", "locked", handler="tests.jobfuncs:ok")
    holder = sqlite3.connect(str(rt.settings.db_path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        monkeypatch.setenv("CONTENTQ_DB_BUSY_TIMEOUT_MS", "200")
        monkeypatch.setenv("CONTENTQ_DB_WAIT_SECONDS", "1")
        result = cli("jobs", "cancel", row["id"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1
    waiting, error = result.stderr.strip().splitlines()
    assert "is busy (held by another process); waiting" in waiting
    assert error.startswith("error: ") and "is busy (held by another process); gave up after 1 s" in error


def test_every_command_has_help_text():
    command = typer.main.get_command(app)

    seen: list[str] = []

    def walk(cmd: Any, path: str) -> list[str]:  # typer vendors its own click: duck-type groups
        seen.append(path)
        missing = [] if (cmd.help or cmd.short_help) else [path]
        if hasattr(cmd, "list_commands"):  # through the click API: the top-level group builds commands lazily
            ctx = typer.Context(cmd)
            for name in cmd.list_commands(ctx):
                missing += walk(cmd.get_command(ctx, name), f"{path} {name}")
        return missing

    assert walk(command, "contentq") == []
    assert {"contentq queue status", "contentq jobs retry", "contentq demo", "contentq collect"} <= set(seen)


def test_unknown_queue_is_refused(rt):
    result = cli("jobs", "list", "--queue", "nosuch")
    assert result.returncode == 1
    assert "unknown queue 'nosuch'" in result.stderr


def test_usage_errors_are_short_not_tracebacks(rt):
    result = cli("jobs", "list", "--bogus")
    assert result.returncode == 2
    assert "No such option: --bogus" in result.stderr and "Traceback" not in result.stderr


def test_doctor_table_shows_plain_statuses(rt):
    result = cli("doctor")
    assert "[green]" not in result.stdout and "[red]" not in result.stdout
    assert " ok " in result.stdout or "│ ok" in result.stdout
