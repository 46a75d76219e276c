"""What a new user meets in the first hour: a mistyped --config, doctor on a home that only imports, the
embedded Valkey left running, and `worker --burst` with posts due seconds later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contentq.ops.doctor import FAIL, SKIP, WARN, check_telegram
from contentq.routes import load_routes
from contentq.settings import load_settings

REPO = Path(__file__).resolve().parent.parent

ROUTE = """
[routes.tech]
target = "@my_tech_channel"
sources = ["@techdigest_demo"]
rewriter = "clean"
publisher = "{publisher}"

[routes.tech.schedule]
asap = true
"""


def contentq(home: Path, *args: str, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
    env.update(CONTENTQ_HOME=str(home), PYTHONPATH=str(REPO), COLUMNS="100")
    if redis_url:
        env["CONTENTQ_REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "contentq", *args], capture_output=True, text=True, env=env, cwd=home, timeout=120
    )


def test_a_missing_config_file_is_no_such_file(tmp_path: Path) -> None:
    result = contentq(tmp_path, "--config", "nope.toml", "collect")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: nope.toml: no such file; give the path of your routes file (contentq.toml) to --config"
    )
    doctor = contentq(tmp_path, "--config", "nope.toml", "doctor")
    assert doctor.returncode == 1 and "nope.toml: no such file" in doctor.stdout


@pytest.mark.parametrize(
    ("publisher", "admin_chat", "level"),
    [("outbox", None, WARN), ("telegram", None, FAIL), ("outbox", "@me", FAIL)],
)
def test_doctor_judges_telegram_by_what_the_routes_need(
    tmp_path: Path, publisher: str, admin_chat: str | None, level: str
) -> None:
    (tmp_path / "contentq.toml").write_text(ROUTE.format(publisher=publisher))
    settings = load_settings(home=tmp_path, tg_admin_chat=admin_chat)
    probe = check_telegram(settings, load_routes(settings.config_path))
    assert probe.status == level, probe
    if level == WARN:  # sources alone: collect needs Telegram, the import of README step 3 does not
        assert "`contentq collect` needs it for the sources of tech (imports do not)" in probe.detail


def test_doctor_skips_telegram_without_routes_that_use_it(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    assert check_telegram(settings, None).status == SKIP


@pytest.mark.timeout(120)
def test_a_command_that_starts_the_embedded_valkey_says_it_keeps_running(tmp_path: Path) -> None:
    home = Path("/tmp") / f"cq-{os.getpid()}"  # short: the socket lives under it
    home.mkdir()
    try:
        first = contentq(home, "queue", "status")
        assert first.returncode == 0, first.stderr
        assert "keeps running in the background" in first.stderr and "`contentq redis stop`" in first.stderr
        again = contentq(home, "queue", "status")
        assert "keeps running" not in again.stderr  # said once, by the command that started it
        status = contentq(home, "redis", "status")
        assert "until `contentq redis stop`" in status.stdout
    finally:
        stopped = contentq(home, "redis", "stop")
        subprocess.run(["rm", "-rf", str(home)], check=False)
    assert "stopped" in stopped.stdout
