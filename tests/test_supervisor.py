"""The rendered supervisor config: its content from settings, and supervisord really running the workers with it."""

from __future__ import annotations

import configparser
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rq import Worker
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.ops import supervisor as sv
from contentq.runtime.context import Runtime
from contentq.runtime.redis import EmbeddedServer, connect
from contentq.runtime.tracking import enqueue
from contentq.settings import QUEUES, Settings, load_settings
from tests.conftest import REPO, wait_for

SUPERVISORD = Path(sys.executable).with_name("supervisord")

SOURCES = '[routes.tech]\ntarget = "@mine"\nsources = ["@donor"]\nrewriter = "clean"\npublisher = "outbox"\n'
"""A route that reads a donor: the listener has work."""
SUPERVISORCTL = Path(sys.executable).with_name("supervisorctl")


def _parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return parser


def test_programs_follow_the_concurrency_and_timeout_settings(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTENTQ_REDIS_URL")
    (home / "contentq.toml").write_text(SOURCES)
    settings = load_settings(home=home, rewrite_concurrency=3, publish_concurrency=4,
                             maintenance_timeout=900)  # fmt: skip
    conf = _parse(sv.render(settings, python="/venv/bin/python"))
    programs = conf["group:contentq"]["programs"].split(",")
    # compact (the default): the listener runs inside the telegram worker, not as a program of its own
    assert programs == ["contentq-telegram", "contentq-work", "contentq-web"]
    # compact (the default): the queues without Telegram share one program, maintenance first (its short jobs never
    # wait behind a backlog); as many processes as the largest concurrency; a stop waits for the longest job.
    rewrite = conf["program:contentq-work"]
    assert rewrite["command"] == "/venv/bin/python -m contentq worker maintenance rewrite imagegen"
    assert rewrite["numprocs"] == "3"
    assert rewrite["stopsignal"] == "TERM" and rewrite["autorestart"] == "true"
    assert int(rewrite["stopwaitsecs"]) > 900
    # One Telegram session, one process, whatever the publish concurrency says.
    telegram = conf["program:contentq-telegram"]
    assert telegram["numprocs"] == "1"
    assert telegram["command"].endswith("worker publish collect --host listen")
    assert int(telegram["stopwaitsecs"]) > max(settings.publish_timeout, settings.collect_timeout)
    # spread: rewrite on its own, the light queues share one program; its stop waits for the longest of their jobs.
    spread = _parse(sv.render(load_settings(home=home, rewrite_concurrency=3, maintenance_timeout=900,
                                            process_layout="spread"), python="/venv/bin/python"))  # fmt: skip
    assert spread["group:contentq"]["programs"].split(",")[1:3] == ["contentq-rewrite", "contentq-light"]
    assert "program:contentq-work" not in spread
    assert spread["group:contentq"]["programs"].split(",") == [
        "contentq-telegram", "contentq-rewrite", "contentq-light", "contentq-listen", "contentq-web"]  # fmt: skip
    listen = spread["program:contentq-listen"]
    assert listen["command"] == "/venv/bin/python -m contentq listen" and "numprocs" not in listen
    assert spread["program:contentq-telegram"]["command"].endswith("worker publish collect")
    alone = spread["program:contentq-rewrite"]
    assert alone["numprocs"] == "3" and alone["command"] == "/venv/bin/python -m contentq worker rewrite"
    assert int(settings.rewrite_timeout) < int(alone["stopwaitsecs"]) < 900
    light = spread["program:contentq-light"]
    assert light["command"].endswith("worker imagegen maintenance") and light["numprocs"] == "1"
    assert int(light["stopwaitsecs"]) > 900
    more = load_settings(home=home, imagegen_concurrency=3, process_layout="spread")
    assert _parse(sv.render(more, python="/venv/bin/python"))["program:contentq-light"]["numprocs"] == "3"
    assert _parse(sv.render(load_settings(home=home, imagegen_concurrency=4), python="/venv/bin/python"))[
        "program:contentq-work"]["numprocs"] == "4"  # fmt: skip
    # The embedded Valkey, a group of its own, starts first and stops last; it outwaits the slowest worker's stop,
    # and only its keeper gets the TERM (it shuts Valkey down once the workers are gone).
    redis_prog = conf["program:contentq-redis"]
    grace = max(
        int(conf[s]["stopwaitsecs"]) for s in conf if s.startswith("program:contentq-") and "numprocs" in conf[s]
    )
    assert redis_prog["command"] == (
        f"/venv/bin/python -m contentq.runtime.valkey_keeper {settings.redis_dir} --grace {grace}"
    )  # the keeper (standard library only) waits for the workers at most as long as supervisor does
    assert int(redis_prog["priority"]) < int(conf["group:contentq"]["priority"]) <= int(rewrite["priority"])
    assert int(redis_prog["stopwaitsecs"]) > max(int(conf[s]["stopwaitsecs"]) for s in conf if "contentq-" in s
                                                 and s != "program:contentq-redis")  # fmt: skip
    assert redis_prog["stopasgroup"] == "false" and redis_prog["killasgroup"] == "true"
    assert "CONTENTQ_REDIS_URL" not in redis_prog["environment"]
    assert f'CONTENTQ_REDIS_URL="unix://{EmbeddedServer(settings.redis_dir).socket}"' in rewrite["environment"]
    assert f'CONTENTQ_HOME="{home}"' in rewrite["environment"]
    assert rewrite["stdout_logfile"].startswith(str(home / "logs"))
    # The panel: after the workers, on the supervised Valkey, never a server of its own.
    web = conf["program:contentq-web"]
    assert web["command"] == "/venv/bin/python -m contentq web"
    assert int(web["priority"]) > int(rewrite["priority"])
    assert f'CONTENTQ_REDIS_URL="unix://{EmbeddedServer(settings.redis_dir).socket}"' in web["environment"]


def test_the_listener_is_rendered_only_when_a_route_has_sources(home: Path) -> None:
    generated = '\n[routes.tech.generate]\ntopic = "news"\ntimes = ["09:00"]\n'  # a route without donors
    (home / "contentq.toml").write_text(SOURCES.replace('sources = ["@donor"]\n', "") + generated)
    spread = load_settings(home=home, process_layout="spread")
    assert "contentq-listen" not in sv.render(spread)
    assert "--host" not in sv.render(load_settings(home=home))
    (home / "contentq.toml").write_text(SOURCES)
    assert "contentq-listen" in _parse(sv.render(spread))["group:contentq"]["programs"]


def test_compact_layout_hosts_the_listeners_and_the_bot_in_the_telegram_worker(home: Path) -> None:
    (home / "contentq.toml").write_text(SOURCES)
    token = "987654:very-secret-bot-token"
    for layout, bot in (("compact", None), ("compact", token), ("spread", token)):
        settings = load_settings(home=home, process_layout=layout, bot_token=bot, bot_admins="1")
        text = sv.render(settings, python="/venv/bin/python")
        conf = _parse(text)
        programs = conf["group:contentq"]["programs"].split(",")
        command = conf["program:contentq-telegram"]["command"]
        assert token not in text
        if layout == "spread":  # today's programs: a listener and a bot of their own
            assert command == "/venv/bin/python -m contentq worker publish collect"
            assert "contentq-listen" in programs and "contentq-bot" in programs
            continue
        assert "contentq-listen" not in programs and "contentq-bot" not in programs
        assert "program:contentq-listen" not in conf and "program:contentq-bot" not in conf
        assert conf["program:contentq-telegram"]["numprocs"] == "1"
        hosted = "listen,bot" if bot else "listen"
        assert command == f"/venv/bin/python -m contentq worker publish collect --host {hosted}"
        assert sv.compare(text, settings) == []


def test_external_redis_means_no_redis_program_and_no_password_in_the_file(home: Path) -> None:
    settings = load_settings(home=home, redis_url="redis://:s3cretpass@db.internal:6379/2")
    text = sv.render(settings)
    conf = _parse(text)
    assert "program:contentq-redis" not in conf
    assert "contentq-redis" not in conf["group:contentq"]["programs"]
    assert "s3cretpass" not in text
    assert ".env" in text  # the note says where the URL goes instead
    plain = sv.render(load_settings(home=home, redis_url="redis://db.internal:6379/2"))
    assert 'CONTENTQ_REDIS_URL="redis://db.internal:6379/2"' in plain


def test_committed_config_is_the_default_rendering() -> None:
    settings = Settings(_env_file=None, home=Path("/var/lib/contentq"))  # type: ignore[call-arg]
    committed = (REPO / "supervisor" / "contentq.conf").read_text()
    assert committed == sv.render(settings, python="/opt/contentq/.venv/bin/python"), (
        "supervisor/contentq.conf is stale: re-render it (see 'Workers under supervisor' in README.md)"
    )


def test_render_command_writes_the_file_and_doctor_compares_it(home: Path) -> None:
    runner = CliRunner()
    out = home / "supervisor" / "contentq.conf"
    result = runner.invoke(app, ["supervisor", "render", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert (home / "logs").is_dir()
    settings = load_settings()
    assert sv.compare(out.read_text(), settings) == []
    changed = load_settings(rewrite_concurrency=5)
    assert sv.compare(out.read_text(), changed) == ["contentq-work: numprocs is '1', settings give '5'"]
    printed = runner.invoke(app, ["supervisor", "render"])
    assert "[group:contentq]" in printed.output


def _ctl(conf: Path, *args: str) -> str:
    result = subprocess.run([str(SUPERVISORCTL), "-c", str(conf), *args], capture_output=True, text=True, timeout=60)
    return result.stdout


def _states(conf: Path) -> dict[str, str]:
    """Every contentq program's state: the contentq group's, and the embedded Valkey's (a group of its own)."""
    states = {}
    for line in _ctl(conf, "status").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("contentq"):
            states[parts[0]] = parts[1]
    return states


def _ppid(pid: int | None) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _run_supervisord(settings: Settings, tmp_path: Path) -> tuple[Path, subprocess.Popen[bytes]]:
    with socket.socket() as probe:  # the panel on a free port: never a clash with another run's 8700
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    extra = {"PYTHONPATH": str(REPO), "CONTENTQ_WEB_PORT": str(port)}
    conf = sv.write(settings, tmp_path / "supervisord.conf", standalone=True, extra_env=extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
    proc = subprocess.Popen([str(SUPERVISORD), "-n", "-c", str(conf)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return conf, proc


def _stop_supervisord(conf: Path, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        _ctl(conf, "shutdown")
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(180)
def test_supervisord_runs_the_workers_and_stops_them_cleanly(home: Path, tmp_path: Path) -> None:
    (home / "contentq.toml").write_text(SOURCES)  # the listener too (not logged in: it waits, RUNNING)
    settings = load_settings(home=home, worker_maintenance_interval=1)
    conf, proc = _run_supervisord(settings, tmp_path)
    try:
        # The compact layout: the listener runs inside the telegram worker; rewrite, imagegen and maintenance share
        # one program.
        expected = {"contentq:contentq-telegram-0", "contentq:contentq-work-0", "contentq:contentq-web"}
        wait_for(lambda: _states(conf) == dict.fromkeys(expected, "RUNNING"), timeout=60,
                 what=f"every worker RUNNING (log: {home / 'logs'})")  # fmt: skip
        telegram_pid = int(_ctl(conf, "pid", "contentq:contentq-telegram-0").strip())
        reader = Runtime(settings)
        try:
            wait_for(lambda: reader.store.query("SELECT pid, state FROM listeners WHERE name = 'listen'")
                     == [{"pid": telegram_pid, "state": "not_logged_in"}], 30,
                     what="the listener hosted by the telegram worker, waiting for a login")  # fmt: skip
        finally:
            reader.close()
        conn = connect(settings)
        workers = wait_for(lambda: len(Worker.all(connection=conn)) == 2 and Worker.all(connection=conn), 30,
                           what="2 workers registered in Redis")  # fmt: skip
        assert {q for w in workers for q in w.queue_names()} == set(QUEUES)

        # The supervised workers do the work.
        rt = Runtime(settings)
        try:
            row = enqueue(rt, "call", "under-supervisor", handler="tests.jobfuncs:ok")
            wait_for(lambda: rt.store.scalar("SELECT status FROM jobs WHERE id = ?", (row["id"],)) == "succeeded",
                     30, what="the job done by a supervised worker")  # fmt: skip
        finally:
            rt.close()

        # Stop: TERM, a warm shutdown, every process STOPPED (not EXITED or FATAL), and gone from Redis.
        _ctl(conf, "stop", "contentq:*")
        assert _states(conf) == dict.fromkeys(expected, "STOPPED")
        wait_for(lambda: Worker.all(connection=conn) == [], 30, what="workers unregistered")
        log = (home / "logs" / "contentq-work-0.log").read_text()
        assert "warm shut down" in log.lower() or "stopping on request" in log.lower()
    finally:
        _stop_supervisord(conf, proc)


@pytest.mark.timeout(180)
def test_supervisord_runs_the_embedded_valkey_first(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONTENTQ_REDIS_URL")
    settings = load_settings(home=home, rewrite_concurrency=1)
    server = EmbeddedServer(settings.redis_dir)
    conf, proc = _run_supervisord(settings, tmp_path)
    try:
        # Valkey, telegram, work (rewrite, imagegen, maintenance), web (no route reads a donor: no listener)
        wait_for(lambda: set(_states(conf).values()) == {"RUNNING"} and len(_states(conf)) == 4, timeout=60,
                 what=f"Valkey and the workers RUNNING (log: {home / 'logs'})")  # fmt: skip
        assert "contentq-redis" in _states(conf)
        # RUNNING means "up for startsecs"; the interpreter may still be importing before it starts Valkey.
        wait_for(server.ping, 60, what="the supervised Valkey answering")
        # The server is the child of supervisor's keeper, not a daemon a worker started on its own.
        assert _ppid(server.pid()) == int(_ctl(conf, "pid", "contentq-redis").strip())
        conn = connect(load_settings(home=home, redis_url=server.url))
        wait_for(lambda: len(Worker.all(connection=conn)) == 2, 30, what="2 workers on the embedded Valkey")

        # Valkey killed: supervisor starts it again, and the workers wait for it instead of exiting.
        workers_before = {
            name: _ctl(conf, "pid", name).strip() for name in _states(conf) if "redis" not in name
        }  # web too
        old_pid = server.pid()
        assert old_pid
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: server.ping() and server.pid() != old_pid, 60, what="supervisor restarting Valkey")
        rt = Runtime(load_settings(home=home, redis_url=server.url))
        try:
            row = enqueue(rt, "call", "after-valkey-restart", handler="tests.jobfuncs:ok")
            wait_for(lambda: rt.store.scalar("SELECT status FROM jobs WHERE id = ?", (row["id"],)) == "succeeded",
                     60, what="a job done after the restart")  # fmt: skip
        finally:
            rt.close()
        wait_for(lambda: set(_states(conf).values()) == {"RUNNING"}, 30, what="every program RUNNING again")
        assert {name: _ctl(conf, "pid", name).strip() for name in workers_before} == workers_before
        _ctl(conf, "stop", "all")
        assert set(_states(conf).values()) == {"STOPPED"}
        assert not server.ping()
    finally:
        _stop_supervisord(conf, proc)
        server.stop()


def _worker_logs(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((home / "logs").glob("contentq-*-*.log")))


def _registered(settings: Settings, server: EmbeddedServer) -> list[str]:
    """The workers Redis lists, read from the embedded Valkey's append-only file (started on its own)."""
    server.start()
    try:
        return [w.name for w in Worker.all(connection=connect(load_settings(home=settings.home, redis_url=server.url)))]
    finally:
        server.stop()


@pytest.mark.timeout(300)
def test_stop_all_and_shutdown_stop_valkey_last_so_every_worker_unregisters(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONTENTQ_REDIS_URL")
    settings = load_settings(home=home, rewrite_concurrency=1)
    server = EmbeddedServer(settings.redis_dir)
    conf, proc = _run_supervisord(settings, tmp_path)
    try:
        wait_for(lambda: server.ping(), 60, what="the supervised Valkey answering")
        conn = connect(load_settings(home=home, redis_url=server.url))
        wait_for(lambda: len(Worker.all(connection=conn)) == 2, 60, what="2 workers registered")
        conn.close()

        # `stop all` signals every program at once (supervisor's stopAllProcesses does not wait between
        # priorities): Valkey must outlive the workers by itself.
        _ctl(conf, "stop", "all")
        assert set(_states(conf).values()) == {"STOPPED"}
        assert "without unregistering" not in _worker_logs(home)
        assert _registered(settings, server) == []

        # `shutdown` stops the groups in reverse priority order, waiting for each.
        _ctl(conf, "start", "all")
        wait_for(lambda: server.ping(), 60, what="Valkey again")
        conn = connect(load_settings(home=home, redis_url=server.url))
        wait_for(lambda: len(Worker.all(connection=conn)) == 2, 60, what="2 workers registered again")
        conn.close()
        _stop_supervisord(conf, proc)
        assert proc.returncode == 0
        assert "without unregistering" not in _worker_logs(home)
        assert _registered(settings, server) == []
    finally:
        _stop_supervisord(conf, proc)
        server.stop()


def test_the_compact_program_takes_a_maintenance_job_before_a_backlog_of_rewrites(rt: Runtime) -> None:
    """The order of `contentq worker Q1 Q2 …` is the order of the pop: the compact program's maintenance first."""
    from contentq.runtime.worker import run_worker

    queues = next(g.queues for g in sv.worker_groups(rt.settings) if g.name == "work")
    assert queues[0] == "maintenance"
    backlog = [enqueue(rt, "call", f"rewrite-{n}", handler="tests.jobfuncs:ok", queue="rewrite") for n in range(3)]
    late = enqueue(rt, "call", "maintenance-late", handler="tests.jobfuncs:ok")  # queued after the backlog
    run_worker(rt, list(queues), burst=True, horizon=0)
    # The order the jobs ran in: their first events (job_events ids grow as they are written).
    ran = [r["job_id"] for r in rt.store.query("SELECT job_id FROM job_events WHERE event = 'started' ORDER BY id")]
    assert [row["status"] for row in (*backlog, late)] == ["queued"] * 4  # as enqueued, before the worker ran
    assert ran[0] == late["id"] and sorted(ran[1:]) == sorted(b["id"] for b in backlog)
    assert {rt.store.scalar("SELECT status FROM jobs WHERE id = ?", (j,)) for j in ran} == {"succeeded"}
