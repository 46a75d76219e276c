"""`contentq dispatch`: due posts go to the publish queue exactly once, even with dispatchers running at once;
posts due soon are enqueued with a delay and go out at their slot, never before."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta

from rq.registry import ScheduledJobRegistry
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, now, parse
from contentq.flow import pipeline
from contentq.flow.dispatch import STALE_CLAIM_SECONDS, dispatch
from contentq.runtime.context import Runtime
from contentq.store.posts import get_post
from tests.conftest import drain, start_worker, subprocess_env, wait_for
from tests.publish_helpers import add_post, fake, route_toml, write_config


def due_post(rt: Runtime, in_seconds: float = 0.0, html: str = "post") -> int:
    return add_post(rt, html, state="scheduled", scheduled_at=iso(now() + timedelta(seconds=in_seconds)))


def publish_jobs(rt: Runtime) -> list[dict]:
    return rt.store.query("SELECT * FROM jobs WHERE kind = 'publish' ORDER BY post_id")


def test_due_posts_are_enqueued_once(rt, home):
    write_config(home, route_toml())
    ids = [due_post(rt, -60 * i) for i in range(3)]
    later = due_post(rt, 3600)
    first = dispatch(rt)
    assert first["now"] == 3 and first["delayed"] == 0
    assert dispatch(rt)["dispatched"] == []  # claimed: not again
    assert [j["post_id"] for j in publish_jobs(rt)] == ids
    assert get_post(rt.store, later)["dispatched_at"] is None


def test_limit(rt, home):
    write_config(home, route_toml())
    for _ in range(3):
        due_post(rt, -5)
    result = CliRunner().invoke(app, ["dispatch", "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["dispatched"]) == 2
    assert len(publish_jobs(rt)) == 2


def test_two_dispatcher_processes_at_once_never_double_dispatch(rt, home, settings):
    write_config(home, route_toml())
    ids = [due_post(rt, -1) for _ in range(60)] + [due_post(rt, 20) for _ in range(20)]
    args = [sys.executable, "-m", "contentq", "dispatch", "--json"]
    procs = [
        subprocess.Popen(args, env=subprocess_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-2000:] for o in outputs]
    handed = [d["post_id"] for out, _ in outputs for d in json.loads(out)["dispatched"]]
    assert sorted(handed) == sorted(ids)  # every post by exactly one dispatcher
    jobs = publish_jobs(rt)
    assert sorted(j["post_id"] for j in jobs) == sorted(ids)
    assert {j["id"] for j in jobs} == {f"publish-{i}" for i in ids}


def test_concurrent_dispatcher_threads_never_double_dispatch(rt, home, settings):
    write_config(home, route_toml())
    ids = [due_post(rt, -1) for _ in range(40)]
    barrier = threading.Barrier(4)
    handed: list[int] = []

    def run() -> None:
        runtime = Runtime(settings)
        try:
            barrier.wait()
            handed.extend(d["post_id"] for d in dispatch(runtime)["dispatched"])
        finally:
            runtime.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(handed) == ids
    assert len(publish_jobs(rt)) == 40


def test_post_due_soon_is_enqueued_with_a_delay_up_to_its_slot(rt, home):
    write_config(home, route_toml())
    post_id = due_post(rt, 45)
    result = dispatch(rt)
    assert result["delayed"] == 1 and 40 < result["dispatched"][0]["delay_s"] <= 45
    (job,) = publish_jobs(rt)
    registry = ScheduledJobRegistry("publish", connection=rt.redis)
    assert registry.get_job_ids() == [job["rq_id"]]
    due = parse(get_post(rt.store, post_id)["scheduled_at"])
    assert abs((registry.get_scheduled_time(job["rq_id"]) - due).total_seconds()) < 1.01


def test_live_worker_publishes_at_the_slot_not_before(rt, home, settings, tmp_path):
    """A worker subprocess (scheduler on) with the fake gateway selected by CONTENTQ_TG_GATEWAY."""
    write_config(home, route_toml())
    log = tmp_path / "sends.jsonl"
    posts = {due_post(rt, 2.5 + i * 0.7, html=f"post {i}"): i for i in range(4)}
    dispatch(rt)
    worker = start_worker(
        settings, "publish",
        CONTENTQ_TG_GATEWAY="tests.fake_telegram:gateway_from_env", CONTENTQ_FAKE_SEND_LOG=str(log),
        CONTENTQ_PUBLISH_MIN_INTERVAL="0",
    )  # fmt: skip
    try:
        wait_for(lambda: all(get_post(rt.store, p)["state"] == "published" for p in posts), 30, what="published")
    finally:
        worker.terminate()
        worker.wait(30)
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(sent) == 4
    for line in sent:
        post_id = next(p for p, i in posts.items() if line["html"] == f"post {i}")
        due = parse(get_post(rt.store, post_id)["scheduled_at"]).timestamp()
        assert line["t"] >= due  # never early


def test_a_claim_whose_dispatcher_died_is_taken_again(rt, home):
    write_config(home, route_toml())
    post_id = due_post(rt, -600)
    stale = iso(now() - timedelta(seconds=STALE_CLAIM_SECONDS + 60))
    rt.store.execute("UPDATE posts SET dispatched_at = ? WHERE id = ?", (stale, post_id))
    result = dispatch(rt)
    assert [d["post_id"] for d in result["dispatched"]] == [post_id] and result["dispatched"][0]["reclaimed"]
    assert dispatch(rt)["dispatched"] == []


def test_new_time_for_a_dispatched_post_replaces_its_queued_job(rt, home):
    write_config(home, route_toml())
    tg = fake(rt)
    post_id = due_post(rt, 60)
    dispatch(rt)
    (old,) = publish_jobs(rt)
    pipeline.reschedule_at(rt, post_id, now() - timedelta(seconds=1))
    jobs = {j["id"]: j["status"] for j in publish_jobs(rt)}
    assert jobs[old["id"]] == "cancelled" and jobs[f"publish-{post_id}-2"] == "queued"
    drain(rt, "publish")
    assert len(tg.visible("@mychan")) == 1
