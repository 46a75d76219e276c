"""A worker stops at once, whatever the installed redis-py does when its pub/sub thread is stopped (8.2 joins it
with no time limit; the thread used to sit in a 60 s read, so every stop could take a minute)."""

from __future__ import annotations

import signal
import time

import pytest
from rq.queue import Queue

from contentq.runtime.tracking import enqueue
from contentq.runtime.worker import ContentqWorker, run_worker
from contentq.store.jobs import get_job
from tests.conftest import start_worker, wait_for

STOP_LIMIT = 5.0
"""Seconds a stop may take: the pub/sub thread's read is bounded far below this."""


def test_stop_is_bounded_when_the_pubsub_thread_already_saw_the_unsubscribe(rt):
    # The losing side of the race, made certain: the thread has read the unsubscribe reply and waits to be
    # subscribed again (for its whole read time) when stop() joins it.
    worker = ContentqWorker([Queue("maintenance", connection=rt.redis)], connection=rt.redis, runtime=rt)
    worker.subscribe()
    wait_for(lambda: worker.pubsub.subscribed, timeout=10, what="the subscription")
    worker.pubsub.unsubscribe()
    wait_for(lambda: not worker.pubsub.subscribed, timeout=10, what="the thread to read the unsubscribe reply")
    started = time.monotonic()
    worker.unsubscribe()
    took = time.monotonic() - started
    assert took < STOP_LIMIT, f"the pub/sub thread took {took:.1f} s to stop"


def test_burst_worker_returns_at_once_every_time(rt):
    # The stall was a race between the unsubscribe reply and the thread's next read: repeat to catch it.
    for i in range(8):
        if i % 2:  # with a job, and with none (the stall was seen on an empty queue)
            enqueue(rt, "call", f"quick-{i}", {"seconds": 0}, handler="tests.jobfuncs:sleep")
        started = time.monotonic()
        run_worker(rt, ["maintenance"], burst=True)
        took = time.monotonic() - started
        assert took < STOP_LIMIT, f"run {i}: the burst worker took {took:.1f} s to return"


def test_idle_worker_stops_within_seconds_of_sigterm(rt, settings):
    worker = start_worker(settings, "maintenance")
    try:
        # Busy once, so that its pub/sub thread is up and reading.
        row = enqueue(rt, "call", "warmup", {"seconds": 0}, handler="tests.jobfuncs:sleep")
        wait_for(lambda: get_job(rt.store, row["id"])["status"] == "succeeded", what="the warm-up job")
        time.sleep(1.0)
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        took = time.monotonic() - started
    finally:
        if worker.poll() is None:
            worker.kill()
    assert took < STOP_LIMIT, f"the idle worker took {took:.1f} s to stop"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_in_process_worker_gives_the_signal_handlers_back(rt, signum):
    # RQ installs its own SIGINT/SIGTERM handlers in work() and never restores them: after one in-process
    # worker, Ctrl-C in pytest (or in any program embedding a burst worker) only asked a dead worker to stop.
    before = signal.getsignal(signum)
    run_worker(rt, ["maintenance"], burst=True)
    assert signal.getsignal(signum) is before
