"""Live workers come from contentq's own heartbeats (the `workers` table), not from RQ's registry, which lists a
killed worker for 8 minutes: `health`, `doctor`, `queue status` and the panel's core agree within the TTL."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from rq import Worker
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.runtime.context import Runtime
from contentq.runtime.liveness import worker_overview
from contentq.runtime.queues import queue_status
from contentq.runtime.reconcile import reconcile
from contentq.settings import QUEUES
from tests.conftest import start_worker, wait_for

runner = CliRunner()


@pytest.fixture
def ttl_env(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> int:
    """The CLI commands of this test read the same short heartbeat TTL as the workers it starts."""
    ttl = rt.settings.worker_heartbeat_ttl
    monkeypatch.setenv("CONTENTQ_WORKER_HEARTBEAT_TTL", str(ttl))
    return ttl


def _health() -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["health", "--json"])
    return result.exit_code, json.loads(result.output)


@pytest.mark.timeout(120)
def test_a_killed_worker_fails_health_within_the_ttl_though_redis_still_lists_it(rt: Runtime, ttl_env: int) -> None:
    rt.store  # noqa: B018 - creates the database
    worker = start_worker(rt.settings, *QUEUES)
    try:
        wait_for(lambda: _health()[0] == 0, 30, what="health ok with the worker running")
        assert [w["state"] for w in worker_overview(rt)] == ["alive"]
        assert {row["queue"]: row["workers"] for row in queue_status(rt)} == dict.fromkeys(QUEUES, 1)

        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)  # reaped, as supervisor does
        killed = time.monotonic()
        wait_for(lambda: _health()[0] == 1, ttl_env + 10, what="health failing after the kill")
        assert time.monotonic() - killed <= ttl_env + 10
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    code, data = _health()
    workers_probe = next(p for p in data["probes"] if p["check"] == "workers")  # type: ignore[union-attr]
    assert code == 1 and workers_probe["status"] == "fail" and "no live worker" in workers_probe["detail"]
    # RQ still lists it (for worker_ttl + 60 s): that list is not what decides.
    assert len(Worker.all(connection=rt.redis)) == 1
    assert {row["queue"]: row["workers"] for row in queue_status(rt)} == dict.fromkeys(QUEUES, 0)
    assert [w["state"] for w in worker_overview(rt)] == ["dead"]
    doctor = json.loads(runner.invoke(app, ["doctor", "--json"]).output)
    probe = next(p for p in doctor if p["check"] == "workers")
    assert probe["status"] == "warn" and "no worker is running" in probe["detail"]
    assert "Redis still lists 1 dead one(s) (`contentq queue reconcile` removes them)" in probe["detail"]


@pytest.mark.timeout(120)
def test_reconcile_removes_the_redis_registration_of_a_dead_worker_only(rt: Runtime, ttl_env: int) -> None:
    rt.store  # noqa: B018
    doomed = start_worker(rt.settings, "maintenance")
    survivor = start_worker(rt.settings, *QUEUES)
    try:
        wait_for(lambda: len(Worker.all(connection=rt.redis)) == 2, 30, what="two workers registered")
        wait_for(lambda: len([w for w in worker_overview(rt) if w["state"] == "alive"]) == 2, 30, what="two alive")
        dead_name = next(w.name for w in Worker.all(connection=rt.redis) if w.queue_names() == ["maintenance"])
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
        reconcile(rt)  # what `queue reconcile` and the live workers' light reconcile run
        names = [w.name for w in Worker.all(connection=rt.redis)]
        assert dead_name not in names and len(names) == 1  # the live worker keeps its registration
        assert _health()[0] == 0  # every queue still has the survivor
    finally:
        for proc in (doomed, survivor):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def test_doctor_counts_no_worker_before_the_database_exists(home: Path) -> None:
    doctor = json.loads(runner.invoke(app, ["doctor", "--json"]).output)
    probe = next(p for p in doctor if p["check"] == "workers")
    assert probe["status"] == "warn" and "no worker has run yet" in probe["detail"]
