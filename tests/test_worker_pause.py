"""A paused queue's job is not run, even when a worker's block on Redis began before the pause (issue 28)."""

from __future__ import annotations

import time

from contentq.runtime.context import Runtime
from contentq.runtime.queues import pause, resume
from contentq.runtime.tracking import enqueue
from contentq.settings import Settings
from contentq.store.jobs import get_job
from tests.conftest import start_worker, wait_for


def _blocked_on_redis(rt: Runtime) -> bool:
    """The worker sits in its block on the queue (BLMOVE for one queue, BLPOP for several), as it does almost
    all the time while idle."""
    return any(c.get("cmd") in ("blmove", "blpop") for c in rt.redis.client_list())


def test_a_job_enqueued_right_after_its_queue_is_paused_is_not_run(rt: Runtime, settings: Settings) -> None:
    worker = start_worker(settings, "maintenance")
    try:
        warm = enqueue(rt, "noop", "warm-up")["id"]
        wait_for(lambda: get_job(rt.store, warm)["status"] == "succeeded", what="the worker to run a job")
        for n in range(3):
            wait_for(lambda: _blocked_on_redis(rt), timeout=10, what="the worker's block on Redis")
            pause(rt.redis, "maintenance")  # the BLPOP in flight began before this
            job = enqueue(rt, "noop", f"after-pause-{n}")["id"]
            time.sleep(2.5)  # longer than the worker's block and its next look at the pause set
            assert get_job(rt.store, job)["status"] == "queued", f"round {n}: a paused queue's job ran"
            assert rt.redis.lrange("rq:queue:maintenance", 0, -1) == [get_job(rt.store, job)["rq_id"].encode()]
            assert rt.redis.llen("rq:queue:maintenance:intermediate") == 0  # RQ's cleanup would fail it there
            resume(rt.redis, "maintenance")
            wait_for(lambda j=job: get_job(rt.store, j)["status"] == "succeeded", what="the job after resume")
    finally:
        worker.terminate()
        worker.wait(30)
