"""What keeps a deployment small at rest (bench/footprint.py measures it): long-running processes import a heavy
SDK only when a job or a request needs it, and an idle worker's scheduler sleeps until a delayed job is due
instead of looking every second, without making any delayed job late."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rq import Queue, Worker

from contentq.runtime import worker as worker_module
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.runtime.worker import ContentqWorker
from contentq.settings import Settings
from contentq.store.jobs import get_job
from tests.conftest import subprocess_env, wait_for

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("telethon", "openai", "numpy", "PIL", "sqlite_utils", "prometheus_client", "fastapi", "httpx")
"""Libraries of several MiB each that a process should import only when it uses them."""


def imported(stderr: str) -> set[str]:
    """Top-level packages of the modules `python -X importtime` reported as imported."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":
                names.add(name.split(".")[0])
    return names


def run_worker_process(settings: Settings, rt: Runtime, queues: list[str], then: Any = None) -> set[str]:
    """A real `contentq worker QUEUES` (as supervisor starts it) until it is registered and its threads have run a
    round, then `then()`; what it imported by its stop (TERM). The database is migrated already (the process
    that migrates a new one imports sqlite-utils for that)."""
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs") == 0
    args = [sys.executable, "-X", "importtime", "-m", "contentq", "worker", *queues]
    proc = subprocess.Popen(args, env=subprocess_env(settings), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: any(w.pid == proc.pid for w in Worker.all(connection=rt.redis)), 60,
                 what=f"worker {' '.join(queues)} registered")  # fmt: skip
        time.sleep(2.5)  # its housekeeping and dequeue loops have gone round at least once
        if then is not None:
            then()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    return imported(err)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("queues", [["rewrite"], ["publish", "collect"], ["imagegen", "maintenance"]])
def test_an_idle_worker_has_imported_no_heavy_library(settings: Settings, rt: Runtime, queues: list[str]) -> None:
    loaded = run_worker_process(settings, rt, queues)
    assert "rq" in loaded  # the probe sees the worker's imports
    assert sorted(loaded & set(HEAVY)) == []


@pytest.mark.timeout(240)
def test_the_rewrite_worker_imports_the_openai_sdk_at_its_first_rewrite_job(settings: Settings, rt: Runtime) -> None:
    def first_job() -> None:
        row = enqueue(rt, "rewrite", "1", {"post_id": 1})  # no such post: the job ends at once, its module loaded
        wait_for(lambda: get_job(rt.store, row["id"])["attempts"] >= 1, 60, what="the rewrite job started")
        time.sleep(1.0)

    assert "openai" in run_worker_process(settings, rt, ["rewrite"], then=first_job)


def probe_imports(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return imported(done.stderr)


def test_the_panel_imports_neither_telethon_nor_pillow_nor_the_llm_sdk() -> None:
    loaded = probe_imports("import contentq.web.app, contentq.web.api")
    assert "fastapi" in loaded
    assert sorted(loaded & {"telethon", "PIL", "openai", "numpy", "sqlite_utils", "prometheus_client"}) == []


def test_redis_serve_imports_rq_only_when_stopping() -> None:
    assert "rq" not in probe_imports("import contentq.cli.redis_server, contentq.ops.redis_serve")


@pytest.mark.timeout(120)
def test_a_delayed_job_runs_when_due_while_the_scheduler_sleeps(
    rt: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle scheduler sleeps up to HOUSEKEEPING_IDLE_SECONDS; a delayed job enqueued meanwhile (and a retry the
    worker schedules) is announced, so it runs when due, not at the next round."""
    monkeypatch.setattr(worker_module, "HOUSEKEEPING_IDLE_SECONDS", 600.0)
    worker = ContentqWorker(
        [Queue("maintenance", connection=rt.redis)], connection=rt.redis, runtime=rt, heartbeat_ttl=1800,
        reconcile_interval=3600, default_result_ttl=60,
    )  # fmt: skip
    ran: dict[str, float] = {}

    def scenario() -> None:
        try:
            wait_for(lambda: worker.pubsub_thread is not None and worker.pubsub.subscribed, 30, what="subscribed")
            time.sleep(2.0)  # the scheduler's first round is over: it sleeps, with nothing due
            delayed = enqueue(rt, "call", "later", {}, handler="tests.jobfuncs:ok", delay=1.0)
            retried = enqueue(rt, "call", "retried", {"seconds": 1}, handler="tests.jobfuncs:retry_deferred")
            for name, row, runs in (("delayed", delayed, 1), ("retried", retried, 2)):
                wait_for(lambda row=row, runs=runs: get_job(rt.store, row["id"])["attempts"] >= runs, 60,
                         what=f"the {name} job run")  # fmt: skip
                ran[name] = time.monotonic()
        finally:
            worker._stop_requested = True

    helper = threading.Thread(target=scenario)
    helper.start()
    worker.work(burst=False, with_scheduler=False)
    helper.join(10)
    assert set(ran) == {"delayed", "retried"}  # within a minute, not at the next round ten minutes later


def test_programs_opening_a_new_database_at_once_leave_the_migration_and_sqlite_utils_to_one(tmp_path: Path) -> None:
    db = tmp_path / "contentq.db"
    code = (
        "import sys\nfrom pathlib import Path\nfrom contentq.store.db import open_store\n"
        f"open_store(Path({str(db)!r})).close()\nprint('sqlite_utils' in sys.modules)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outputs) == ["False", "False", "True"]


@pytest.mark.timeout(180)
def test_the_running_panel_loads_prometheus_client_at_the_first_scrape_and_no_websockets(settings: Settings) -> None:
    """`contentq web` as supervisor starts it: up and answering without prometheus_client (its /api/metrics
    imports it when scraped) nor the websockets library (the panel has no WebSocket route)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = subprocess_env(settings, CONTENTQ_WEB_PORT=str(port))
    errors = (settings.home / "web.err").open("w+")  # importtime's lines would fill a pipe nobody reads yet
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "contentq", "web"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=errors, text=True)  # fmt: skip
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/login"), 60, what="the panel")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    errors.seek(0)
    loaded = imported(errors.read())
    assert "uvicorn" in loaded and "fastapi" in loaded
    assert sorted(loaded & {"prometheus_client", "websockets"}) == []


def _answers(url: str) -> bool:
    try:
        return bool(urllib.request.urlopen(url, timeout=5).status == 200)
    except OSError:
        return False


def _in_a_fresh_process(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_the_process_that_migrates_imports_sqlite_utils_without_numpy_and_can_still_dedup(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\nfrom contentq.store.db import open_store\n"
        f"store = open_store(Path({str(tmp_path / 'contentq.db')!r}))\n"
        "print('sqlite_utils' in sys.modules, 'numpy' in sys.modules)\n"
        "from contentq.content.dedup import normalize_text, shingle_hashes\n"  # dedup later: numpy as usual
        "print('numpy' in sys.modules, len(shingle_hashes(normalize_text('news from the harbour ' * 4))) > 0)\n"
    )
    assert _in_a_fresh_process(code) == ["True", "False", "True", "True"]


def test_sqlite_utils_keeps_its_numpy_types_in_a_process_that_has_numpy(tmp_path: Path) -> None:
    code = (
        "import numpy\nfrom pathlib import Path\nfrom contentq.store.db import open_store\n"
        f"store = open_store(Path({str(tmp_path / 'contentq.db')!r}))\n"
        "from sqlite_utils import db\nprint(db.np is numpy, numpy.int64 in db.COLUMN_TYPE_MAPPING)\n"
    )
    assert _in_a_fresh_process(code) == ["True", "True"]


def test_numpy_is_hidden_only_from_the_thread_importing_sqlite_utils() -> None:
    code = """
import importlib, sys, threading
from contentq.store.sqlite_utils_loader import _NumpyHidden
hidden = _NumpyHidden()
sys.meta_path.insert(0, hidden)
try:
    import numpy  # noqa: F401
    here = "imported"
except ImportError:
    here = "refused"
other = {}
thread = threading.Thread(target=lambda: other.setdefault("numpy", importlib.import_module("numpy").__name__))
thread.start()
thread.join()
sys.meta_path.remove(hidden)
print(here, other.get("numpy"))
"""
    assert _in_a_fresh_process(code) == ["refused", "numpy"]
