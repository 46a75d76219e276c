"""Shared fixtures: a private embedded Valkey per test session, a fresh CONTENTQ_HOME per test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import time_machine

from contentq import actors, notify
from contentq.flow import pipeline
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.redis import EmbeddedServer
from contentq.settings import Settings, get_settings, load_settings
from tests.rewrite_helpers import make_rt, write_routes

REPO = Path(__file__).resolve().parent.parent

notify.install()  # what the CLI and the web app do for their runtimes; tests build runtimes of their own too

_CLEAR = [k for k in os.environ if k.startswith("CONTENTQ_")]
for _k in _CLEAR:  # the developer's own settings must not leak into tests
    del os.environ[_k]


@pytest.fixture(autouse=True)
def _no_leaking_global_flags() -> Iterator[None]:
    """`contentq --home X …` remembers X for the process and exports it; undo that after every test."""
    from contentq import settings as settings_module

    before = {k: v for k, v in os.environ.items() if k.startswith("CONTENTQ_")}
    yield
    settings_module._overrides.clear()
    actors.set_process_actor(None)  # a CLI command run in-process names the OS user for the process
    for key in [k for k in os.environ if k.startswith("CONTENTQ_")]:
        if key not in before:
            del os.environ[key]
    os.environ.update(before)
    get_settings.cache_clear()


TEST_EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
"""Where the `clock` fixture puts the tests' clock: the fixed dates of schedule tests (in 2030) stay ahead of it."""


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    """The tests' clock: the real one moved to TEST_EPOCH and ticking from there, so a test that names fixed
    dates never starts failing once the real calendar passes them."""
    with time_machine.travel(TEST_EPOCH, tick=True) as traveller:
        yield traveller


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A real Valkey server for this test session, on a unix socket (never the shared :6379)."""
    server = EmbeddedServer(tmp_path_factory.mktemp("valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_url(valkey: EmbeddedServer) -> str:
    return valkey.url


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, valkey_url: str) -> Path:
    """A fresh CONTENTQ_HOME with the session's Valkey, flushed, as CONTENTQ_REDIS_URL."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("CONTENTQ_HOME", str(h))
    monkeypatch.setenv("CONTENTQ_REDIS_URL", valkey_url)
    monkeypatch.chdir(tmp_path)
    redis.Redis.from_url(valkey_url).flushall()
    get_settings.cache_clear()
    yield h
    get_settings.cache_clear()


@pytest.fixture
def settings(home: Path) -> Settings:
    return load_settings(
        home=home,
        maintenance_backoff_base=1.0,
        worker_maintenance_interval=1,
        worker_heartbeat_ttl=3,
    )


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(settings)
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


def subprocess_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a `python -m contentq …` child that sees this checkout and these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["CONTENTQ_HOME"] = str(settings.home)
    if settings.redis_url:
        env["CONTENTQ_REDIS_URL"] = settings.redis_url
    for name in ("worker_maintenance_interval", "worker_heartbeat_ttl", "maintenance_backoff_base"):
        env[f"CONTENTQ_{name.upper()}"] = str(getattr(settings, name))
    env.update(extra)
    return env


def start_worker(settings: Settings, *queues: str, burst: bool = False, **env: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "contentq", "worker", *queues] + (["--burst"] if burst else [])
    return subprocess.Popen(args, env=subprocess_env(settings, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def drain(rt: Runtime, *queues: str, timeout: float = 30.0) -> None:
    """Run burst workers in-process until no job of these queues is queued or running (retries included)."""
    from contentq.runtime.worker import run_worker

    names = list(queues) or None
    deadline = time.monotonic() + timeout
    while True:
        run_worker(rt, names, burst=True)
        where = "status IN ('queued', 'in_progress')"
        params: list[str] = []
        if names:
            where += f" AND queue IN ({','.join('?' for _ in names)})"
            params = names
        if not rt.store.scalar(f"SELECT COUNT(*) FROM jobs WHERE {where}", params):
            return
        if time.monotonic() > deadline:
            raise AssertionError("jobs still pending after drain timeout")
        time.sleep(0.2)


@pytest.fixture
def rewritten_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Stands in for the publish area's pipeline step, recording which posts reached it."""
    calls: list[int] = []

    def on_rewritten(runtime: Runtime, post_id: int) -> str:
        calls.append(post_id)
        return "rewritten"

    monkeypatch.setattr(pipeline, "on_rewritten", on_rewritten)
    return calls


@pytest.fixture
def llm_rt(home, llmock, rewritten_calls) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    write_routes(home)
    runtime = make_rt(home, llmock)
    yield runtime
    runtime.close()
