"""Workers as separate processes: SIGKILL mid-job, warm shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal

from contentq.runtime.tracking import enqueue
from contentq.store.jobs import get_job, job_events
from tests.conftest import start_worker, wait_for


def test_sigkilled_worker_job_runs_again_and_succeeds(rt, settings, tmp_path):
    marker = tmp_path / "running"
    row = enqueue(
        rt, "call", "victim", {"marker": str(marker), "seconds": 120}, handler="tests.jobfuncs:slow_first_time"
    )
    first = start_worker(settings, "maintenance")
    try:
        wait_for(marker.exists, timeout=30, what="the job to start")
        assert get_job(rt.store, row["id"])["status"] == "in_progress"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    second = start_worker(settings, "maintenance")
    try:
        # heartbeat TTL 3 s + maintenance every 1 s in the test settings; ~a minute with the defaults
        wait_for(lambda: get_job(rt.store, row["id"])["status"] == "succeeded", timeout=60, what="the rerun")
    finally:
        second.terminate()
        second.wait(30)
    job = get_job(rt.store, row["id"])
    assert job["attempts"] == 2
    assert [e["event"] for e in job_events(rt.store, row["id"])].count("started") == 2


def test_sigterm_lets_the_running_job_finish(rt, settings):
    row = enqueue(rt, "call", "napper", {"seconds": 2}, handler="tests.jobfuncs:sleep")
    worker = start_worker(settings, "maintenance")
    try:
        wait_for(lambda: get_job(rt.store, row["id"])["status"] == "in_progress", what="the job to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert get_job(rt.store, row["id"])["status"] == "succeeded"
