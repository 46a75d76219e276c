"""Hostile and careless CLI input: every case ends in exit 1 or 2, exactly one `error:` line, no traceback, and
nothing stored (the database and Redis are byte-for-byte what they were)."""

from __future__ import annotations

import difflib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from contentq.cli import app as app_module
from contentq.cli.app import main
from contentq.runtime.context import Runtime
from tests.conftest import REPO
from tests.fake_telegram import FakeTelegram
from tests.publish_helpers import add_post, route_toml, write_config

Setup = Callable[[Path, pytest.MonkeyPatch], None]

ROUTES = route_toml()  # route "news": @donor → @mychan


def unreachable_gateway(runtime: Any) -> FakeTelegram:
    """CONTENTQ_TG_GATEWAY factory: a Telegram that cannot be reached."""
    fake = FakeTelegram()
    fake.dead = True
    return fake


def _env(**values: str) -> Setup:
    def setup(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)

    return setup


def _routes(text: str) -> Setup:
    def setup(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        write_config(home, text)

    return setup


def _file(name: str, data: bytes) -> Setup:
    def setup(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        write_config(home, ROUTES)
        (home.parent / name).write_bytes(data)

    return setup


def _export(messages: Any) -> Setup:
    return _file("result.json", json.dumps({"name": "Donor", "messages": messages}).encode())


def _message(msg_id: int, text: str = "hello") -> dict[str, Any]:
    return {"id": msg_id, "type": "message", "date": "2024-05-01T10:00:00", "date_unixtime": "1714557600", "text": text}


def _mkdir(name: str) -> Setup:
    def setup(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        write_config(home, ROUTES)
        (home.parent / name).mkdir(parents=True)

    return setup


def _fifo(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(home.parent / "fifo")


def _deep_export(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(home, ROUTES)
    depth = 100_000
    text = '{"messages": [{"id": 1, "type": "message", "text": ' + "[" * depth + "]" * depth + "}]}"
    (home.parent / "result.json").write_text(text, encoding="utf-8")


def _binary_toml(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "contentq.toml").write_bytes(b"\xff\xfe\x00[routes.\x80\x81]\n" + bytes(range(256)))


def _binary_env(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / ".env").write_bytes(b"CONTENTQ_LOG_LEVEL=\xff\xfe\x00\x80\n")


def _toml_is_a_folder(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "contentq.toml").mkdir()


def _home_is_a_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home.parent / "plainfile").write_text("x")


def _no_telegram(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTENTQ_TG_SESSION", "1AAAA-not-a-real-session")
    monkeypatch.setenv("CONTENTQ_TG_GATEWAY", "tests.test_hostile_cli:unreachable_gateway")


def _routes_with(extra: str = "", schedule: str = "asap = true", **kwargs: str) -> Setup:
    return _routes(route_toml(extra=extra, schedule=schedule, **kwargs))


@dataclass
class Case:
    name: str
    args: list[str]
    setup: Setup | None = None
    says: str = ""  # a fragment of the error line
    codes: tuple[int, ...] = (1,)
    needs_post: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    # Rich markup in arguments that are echoed back.
    Case("markup job id", ["jobs", "show", "[/bold]"], says="no job '[/bold]'"),
    Case("markup status", ["jobs", "list", "--status", "[/bold]"], says="unknown status '[/bold]'"),
    Case("markup queue", ["jobs", "list", "--queue", "[/x]"], says="unknown queue '[/x]'"),
    Case("markup pause", ["queue", "pause", "[/bold]"], says="unknown queue '[/bold]'"),
    Case("markup post state", ["posts", "list", "--state", "[red]x[/red]"], says="[red]x[/red]"),
    Case("markup retry", ["jobs", "retry", "[/red]"], says="[/red]"),
    Case(
        "markup import source",
        ["import", "{tmp}/result.json", "--source", "[/b]"],
        _export([_message(1)]),
        says="@[/b] is not a source",
    ),  # fmt: skip
    # Numbers beyond SQLite's signed 64 bits, and durations beyond the calendar.
    Case("huge post id", ["posts", "show", "99999999999999999999"], codes=(2,), says="9223372036854775807"),
    Case("negative post id", ["posts", "show", "-1"], codes=(2,)),
    Case("huge image id", ["images", "show", "99999999999999999999"], codes=(2,)),
    Case("huge limit", ["jobs", "list", "--limit", "99999999999999999999"], codes=(2,)),
    Case("zero limit", ["posts", "list", "--limit", "0"], codes=(2,)),
    Case("huge since", ["jobs", "list", "--since", "99999999999d"], says="too long a duration"),
    Case("hundreds of digits", ["stats", "--since", "9" * 400 + "d"], says="too long a duration"),
    Case("huge prune age", ["images", "prune", "--older-than", "99999999999w"], says="too long a duration"),
    Case(
        "schedule far off",
        ["schedule", "set", "{post}", "--at", "+99999999999h"],
        needs_post=True,
        says="too long a duration",
    ),  # fmt: skip
    Case(
        "schedule off the calendar",
        ["schedule", "set", "{post}", "--at", "0001-01-01T00:00+14:00"],
        needs_post=True,
        says="out of the calendar's range",
    ),  # fmt: skip
    Case(
        "schedule year 9999",
        ["schedule", "set", "{post}", "--at", "9999-12-31T00:00:00+00:00"],
        needs_post=True,
        says="days ahead",
    ),  # fmt: skip
    Case("nan timeout", ["doctor", "--timeout", "nan"], codes=(2,)),
    Case("port out of range", ["metrics", "serve", "--port", "70000"], codes=(2,)),
    # Config files that are binary, folders or not there as files.
    Case("binary contentq.toml", ["collect"], _binary_toml, says="not UTF-8"),
    Case("binary .env", ["jobs", "list"], _binary_env, says=".env: not UTF-8"),
    Case("contentq.toml is a folder", ["collect"], _toml_is_a_folder, says="is a folder"),
    Case("--config is a folder", ["--config", "{tmp}/cfg", "collect"], _mkdir("cfg"), says="is a folder"),
    Case(
        "--home is a file",
        ["--home", "{tmp}/plainfile", "jobs", "list"],
        _home_is_a_file,
        says="cannot create CONTENTQ_HOME",
    ),  # fmt: skip
    # Exports that are not what they claim.
    Case(
        "export folder with a folder result.json",
        ["import", "{tmp}/exp", "--source", "@donor"],
        _mkdir("exp/result.json"),
        says="is a folder",
    ),  # fmt: skip
    Case(
        "import /dev/zero", ["import", "/dev/zero", "--source", "@donor"], _routes(ROUTES), says="not a regular file"
    ),  # fmt: skip
    Case(
        "export 100,000 deep",
        ["import", "{tmp}/result.json", "--source", "@donor"],
        _deep_export,
        says="nested too deeply",
    ),  # fmt: skip
    Case(
        "export id 10^23",
        ["import", "{tmp}/result.json", "--source", "@donor"],
        _export([_message(10**23)]),
        says="out of range",
    ),  # fmt: skip
    Case(
        "export repeated id",
        ["import", "{tmp}/result.json", "--source", "@donor"],
        _export([_message(7), _message(8), _message(7, "again")]),
        says="message id 7 appears twice",
    ),  # fmt: skip
    Case(
        "export not UTF-8",
        ["import", "{tmp}/result.json", "--source", "@donor"],
        _file("result.json", b'{"messages": [{"id": 1, "text": "\xff"}]}'),
        says="not UTF-8",
    ),  # fmt: skip
    Case(
        "export lone surrogate",
        ["import", "{tmp}/result.json", "--source", "@donor"],
        _export([_message(1, "\ud800")]),
        says="lone UTF-16 surrogate",
    ),  # fmt: skip
    Case(
        "export date out of range",
        ["import", "{tmp}/result.json", "--source", "@donor"],
        _export([{**_message(1), "date_unixtime": "9" * 19}]),
        says="out of range",
    ),  # fmt: skip
    Case(
        "export a megabyte in one field",
        ["import", "{tmp}/result.json", "--source", "@donor"],
        _export([{**_message(1), "type": "x" * 1_000_000}]),
        says="unknown type",
    ),  # fmt: skip
    # Telegram not reachable.
    Case("login --status unreachable", ["login", "--status"], _no_telegram, says="cannot reach Telegram"),
    # Settings out of range: refused before any job record is written.
    Case("attempts 2000", ["collect"], _env(CONTENTQ_COLLECT_ATTEMPTS="2000"), says="CONTENTQ_COLLECT_ATTEMPTS"),
    Case(
        "backoff 1e308", ["collect"], _env(CONTENTQ_COLLECT_BACKOFF_BASE="1e308"), says="CONTENTQ_COLLECT_BACKOFF_BASE"
    ),  # fmt: skip
    Case("backoff nan", ["collect"], _env(CONTENTQ_COLLECT_BACKOFF_BASE="nan"), says="finite number"),
    Case("negative concurrency", ["collect"], _env(CONTENTQ_REWRITE_CONCURRENCY="-4"), says="CONCURRENCY"),
    Case("timeout 0", ["collect"], _env(CONTENTQ_PUBLISH_TIMEOUT="0"), says="CONTENTQ_PUBLISH_TIMEOUT"),
    Case("unknown log level", ["jobs", "list"], _env(CONTENTQ_LOG_LEVEL="LOUD"), says="CONTENTQ_LOG_LEVEL"),
    # Routes out of range or ambiguous.
    Case(
        "huge min_gap",
        ["collect"],
        _routes_with(schedule="asap = true\nmin_gap_minutes = 99999999"),
        says="schedule.min_gap_minutes",
    ),  # fmt: skip
    Case(
        "negative max_length",
        ["collect"],
        _routes_with(extra="[routes.news.filters]\nmax_length = -1"),
        says="filters.max_length",
    ),  # fmt: skip
    Case(
        "max below min length",
        ["collect"],
        _routes_with(extra="[routes.news.filters]\nmin_length = 50\nmax_length = 10"),
        says="every post",
    ),  # fmt: skip
    Case(
        "negative max_per_day",
        ["collect"],
        _routes_with(schedule="asap = true\nmax_per_day = -3"),
        says="schedule.max_per_day",
    ),  # fmt: skip
    Case("empty target", ["collect"], _routes_with(target=""), says="target"),
    Case("blank target", ["collect"], _routes_with(target="   "), says="target"),
    Case(
        "unknown top-level table",
        ["collect"],
        _routes(ROUTES + "\n[route.typo]\ntarget = '@x'\n"),
        says="unknown top-level table(s) route",
    ),  # fmt: skip
    Case(
        "a donor in two routes",
        ["collect"],
        _routes(ROUTES + route_toml("other", target="@other", sources='["https://t.me/Donor"]')),
        says="source @donor is in routes 'news' and 'other'",
    ),  # fmt: skip
    # Writes to user-given paths.
    Case("render to a folder", ["supervisor", "render", "-o", "{tmp}/adir"], _mkdir("adir"), says="is a folder"),
    Case("render to a FIFO", ["supervisor", "render", "-o", "{tmp}/fifo"], _fifo, says="not a regular file"),
    Case("render to /dev/null", ["supervisor", "render", "-o", "/dev/null"], says="not a regular file"),
    Case(
        "render env newline", ["supervisor", "render", "--env", "A=x\n[program:evil]\ncommand=/bin/sh"], says="newline"
    ),  # fmt: skip
    Case("render env bad name", ["supervisor", "render", "--env", "A B=1"], says="variable name"),
    Case("render env comment", ["supervisor", "render", "--env", "A=x ;y"], says="read this value back"),
    Case("metrics to a folder", ["metrics", "dump", "{tmp}/adir"], _mkdir("adir"), says="is a folder"),
    Case("metrics to a FIFO", ["metrics", "dump", "{tmp}/fifo"], _fifo, says="not a regular file"),
]


def _snapshot(home: Path, redis_url: str) -> tuple[str, list[bytes]]:
    conn = sqlite3.connect(home / "contentq.db")
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    return dump, sorted(redis.Redis.from_url(redis_url).keys("*"))


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., Any]]:
    """Run `contentq ARGS` through the real entry point, in this process; (exit code, stdout, stderr)."""
    umask = os.umask(0o022)
    os.umask(umask)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["contentq", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main()
            sys.exit(0)
        out, err = capsys.readouterr()
        return int(info.value.code or 0), out, err

    yield run
    os.umask(umask)
    getattr(app_module, "_state", {})["debug"] = False


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_one_error_line(case: Case, rt: Runtime, home: Path, valkey_url: str, monkeypatch, run_cli):
    assert rt.store is not None  # the database exists (migrated) before the command: its dump must not change
    post_id = add_post(rt) if case.needs_post else 0
    if case.needs_post:
        write_config(home, ROUTES)
    if case.setup is not None:
        case.setup(home, monkeypatch)
    before = _snapshot(home, valkey_url)
    args = [a.replace("{tmp}", str(home.parent)).replace("{post}", str(post_id)) for a in case.args]
    code, out, err = run_cli(*args)
    assert code in case.codes, (code, out, err)
    assert "Traceback" not in out + err
    error_lines = [line for line in err.splitlines() if line.lower().startswith("error:")]
    assert len(error_lines) == 1, err
    assert case.says in error_lines[0], error_lines[0]
    after = _snapshot(home, valkey_url)
    changed = list(difflib.unified_diff(before[0].splitlines(), after[0].splitlines(), lineterm="", n=0))
    assert not changed and after[1] == before[1], "a refused command stored something:\n" + "\n".join(changed[:20])
    assert not list(home.parent.glob("**/*.tmp")), "a temporary file was left behind"


def test_an_unexpected_exception_is_one_line_and_its_traceback_is_logged(rt, home, monkeypatch, run_cli):
    def broken(runtime: Runtime) -> list[dict[str, Any]]:
        raise RuntimeError("the [bold]unexpected[/bold] happened\nsecond line")

    monkeypatch.setattr("contentq.runtime.queues.queue_status", broken)
    code, out, err = run_cli("queue", "status")
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: unexpected RuntimeError: the [bold]unexpected[/bold] happened")
    log = (home / "logs" / "contentq.log").read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError" in log and "`contentq queue status`" in log
    assert str(home / "logs" / "contentq.log") in err

    code, out, err = run_cli("--debug", "queue", "status")
    assert code == 1 and "Traceback (most recent call last)" in err
    assert [line for line in err.splitlines() if line.startswith("error:")] != []


def test_donor_escape_sequences_never_reach_the_terminal(rt, home, run_cli):
    hostile = "Buy\x1b[2J\x1b]0;pwned\x07 now \x1b[31mred\x1b[0m [bold]x[/bold] \u202eevil\x9b6n"
    post_id = add_post(rt, hostile, state="rewritten")
    rt.store.execute("UPDATE posts SET state_reason = ? WHERE id = ?", (hostile, post_id))
    for args in (["posts", "show", str(post_id)], ["posts", "list"]):
        code, out, err = run_cli(*args)
        assert code == 0, err
        assert not any(c in out for c in "\x1b\x07\x9b\u202e"), repr(out)
        assert "[bold]x[/bold]" in out or args[1] == "list"  # shown literally, not as markup


def test_the_entry_point_in_a_real_process(tmp_path: Path, valkey_url: str):
    """`python -m contentq` itself: home and database private, one line for a crash-prone argument."""
    home = tmp_path / "fresh-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
    env.update(PYTHONPATH=str(REPO), CONTENTQ_HOME=str(home), CONTENTQ_REDIS_URL=valkey_url)

    def contentq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "contentq", *args], env=env, capture_output=True, text=True,
                              cwd=tmp_path, timeout=60)  # fmt: skip

    done = contentq("db", "migrate")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("contentq.db", "contentq.db-wal", "contentq.db-shm"):
        path = home / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    done = contentq("jobs", "show", "[/bold]")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("setup", "rejected"),
    [
        (_env(CONTENTQ_COLLECT_ATTEMPTS="0"), "CONTENTQ_COLLECT_ATTEMPTS"),
        (_env(CONTENTQ_MAINTENANCE_BACKOFF_BASE="inf"), "CONTENTQ_MAINTENANCE_BACKOFF_BASE"),
        (_routes_with(schedule="asap = true\nmin_gap_minutes = 99999999"), "schedule.min_gap_minutes"),
        (_routes_with(target=""), "target"),
    ],
)
def test_doctor_reports_what_it_rejects(setup: Setup, rejected: str, home, monkeypatch, run_cli):
    write_config(home, ROUTES)
    setup(home, monkeypatch)
    code, out, err = run_cli("doctor", "--json")
    assert code == 1, err
    config = next(p for p in json.loads(out) if p["check"] == "config")
    assert config["status"] == "fail" and rejected in config["detail"]


def test_a_refused_enqueue_leaves_no_record_behind(rt, home, monkeypatch, run_cli):
    """The orphan `queued` record of issue 11: a collect refused for its settings, then the same collect fixed."""
    write_config(home, ROUTES)
    with monkeypatch.context() as env:
        env.setenv("CONTENTQ_COLLECT_BACKOFF_BASE", "1e308")
        code, _, err = run_cli("collect")
        assert code == 1 and "CONTENTQ_COLLECT_BACKOFF_BASE" in err
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs") == 0
    code, out, err = run_cli("collect", "--json")
    assert code == 0, err
    (job,) = json.loads(out)
    assert job["status"] == "queued" and not job["already"]


def test_a_refused_write_leaves_the_old_file_and_no_temporary(home, tmp_path, run_cli):
    target = tmp_path / "conf" / "contentq.conf"
    code, _, err = run_cli("supervisor", "render", "-o", str(target))
    assert code == 0, err
    first = target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # --env values may be credentials
    link = tmp_path / "link.conf"
    link.symlink_to(target)
    code, _, err = run_cli("supervisor", "render", "-o", str(link), "--env", "EXTRA=1")
    assert code == 0, err
    assert link.is_symlink() and 'EXTRA="1"' in target.read_text() and first != target.read_text()
    code, _, err = run_cli("supervisor", "render", "-o", str(target), "--env", "BAD=a\nb")
    assert code == 1 and 'EXTRA="1"' in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["contentq.conf"]


def test_a_fifo_given_to_import_is_refused_at_once(rt, home, tmp_path, run_cli):  # type: ignore[no-untyped-def]
    write_config(home, ROUTES)
    fifo = tmp_path / "result.json"
    os.mkfifo(fifo)
    code, _out, err = run_cli("import", str(fifo), "--source", "@donor")
    assert code == 1 and "not a regular file" in err  # opening a FIFO with no writer would block forever


@pytest.mark.parametrize("variable", ["CONTENTQ_OPENAI_BASE_URL", "CONTENTQ_REDIS_URL"])
def test_a_url_without_a_scheme_is_refused_without_echoing_its_password(rt, monkeypatch, variable, run_cli):  # type: ignore[no-untyped-def]
    monkeypatch.setenv(variable, "bob:hunter2secret@llm.example.com/v1")
    code, out, err = run_cli("doctor", "--json")
    assert "hunter2secret" not in out + err
    assert variable in out + err and "scheme" in out + err
