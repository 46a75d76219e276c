"""Cancel means stop (issue 28): a running job that is cancelled stops at its next safe point, Retry is refused
(API 409, the page, `contentq jobs retry`) until it has, and two runs of one job never overlap. Two real worker
processes on the test's Valkey and SQLite; the job records each run's start and end in a file. Then the safe
points of the real jobs: a publish stops before its first part, or completes its batch once a part is out; a
collect stops between two messages."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contentq.clock import iso, now
from contentq.flow.dispatch import dispatch
from contentq.integrations.telegram.gateway import MediaInfo
from contentq.publish.ledger import sends_of
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import cancel, enqueue, new_generation
from contentq.settings import Settings
from contentq.store.jobs import get_job, job_events
from contentq.store.posts import get_post
from tests.collect_helpers import ROUTES, channel, posts
from tests.conftest import drain, start_worker, subprocess_env, wait_for
from tests.fake_telegram import FakeTelegram
from tests.publish_helpers import add_post, fake, route_toml, write_config
from tests.web_helpers import client, login


@pytest.fixture
def two_workers(settings: Settings) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_worker(settings, "maintenance") for _ in range(2)]
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def runs(log: Path) -> dict[str, tuple[float, float | None]]:
    """Each run (RQ id) of the job: (start, end) as the job recorded them."""
    spans: dict[str, tuple[float, float | None]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        what, run, at = line.split()
        if what == "start":
            spans[run] = (float(at), None)
        else:
            spans[run] = (spans[run][0], float(at))
    return spans


def assert_never_overlap(spans: dict[str, tuple[float, float | None]]) -> None:
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    for (first, (_, end)), (second, (start, _)) in zip(ordered, ordered[1:], strict=False):
        assert end is not None and end <= start, f"{second} started at {start} while {first} ran (ended {end})"


def events(rt: Runtime, job_id: str) -> list[str]:
    return [e["event"] for e in job_events(rt.store, job_id)]


def long_job(rt: Runtime, tmp_path: Path) -> tuple[str, Path, Path, Path]:
    log, gate, finish = tmp_path / "runs.log", tmp_path / "gate", tmp_path / "finish"
    payload = {"log": str(log), "gate": str(gate), "finish": str(finish)}
    job_id = enqueue(rt, "call", "long", payload, handler="tests.jobfuncs:in_steps")["id"]
    wait_for(lambda: len(runs(log)) == 1, timeout=30, what="run 1 to start")
    return job_id, log, gate, finish


def test_cancel_stops_the_running_job_and_retry_waits_until_it_has(rt, settings, tmp_path, two_workers):
    job_id, log, gate, finish = long_job(rt, tmp_path)
    api = client(rt)
    cancelled = api.post(f"/api/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["job"]["status"] == "cancelled"

    # Run 1 is inside a step (waiting for `gate`): it has not stopped, so Retry is refused everywhere.
    refused = api.post(f"/api/jobs/{job_id}/retry")
    assert refused.status_code == 409, refused.text
    assert "has not stopped yet" in refused.json()["error"]
    assert api.get(f"/api/jobs/{job_id}").json()["stopping_on"]
    browser = client(rt, token=False)
    csrf = login(browser, rt)
    page = browser.get(f"/jobs/{job_id}", headers={"Accept": "text/html"})
    assert "is stopping on worker" in page.text and 'data-after-stop="' in page.text and " hidden>" in page.text
    posted = browser.post(f"/jobs/{job_id}/retry", data={"csrf": csrf}, headers={"Accept": "text/html"})
    assert posted.status_code == 409 and "has not stopped yet" in posted.text
    typed = subprocess.run([sys.executable, "-m", "contentq", "jobs", "retry", job_id], env=subprocess_env(settings),
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert typed.returncode == 1 and "has not stopped yet" in typed.stderr + typed.stdout
    assert get_job(rt.store, job_id)["status"] == "cancelled" and len(runs(log)) == 1

    gate.touch()  # run 1 finishes its step and meets its safe point
    wait_for(lambda: "stopped" in events(rt, job_id), timeout=15, what="run 1 to stop")
    assert all(end is not None for _, end in runs(log).values())
    stopped = [e for e in job_events(rt.store, job_id) if e["event"] == "stopped"][0]
    assert "stop-job received" in stopped["message"]  # RQ's command reached the worker over its pub/sub
    assert api.get(f"/api/jobs/{job_id}").json()["stopping_on"] is None

    again = api.post(f"/api/jobs/{job_id}/retry")
    assert again.status_code == 200, again.text
    wait_for(lambda: len(runs(log)) == 2, timeout=30, what="run 2 to start")
    finish.touch()
    wait_for(lambda: get_job(rt.store, job_id)["status"] == "succeeded", timeout=30, what="run 2 to succeed")
    spans = runs(log)
    assert len(spans) == 2 and all(end is not None for _, end in spans.values())
    assert_never_overlap(spans)


def test_a_new_run_waits_while_the_cancelled_one_goes_on(rt, settings, tmp_path, two_workers):
    """The guard in SQLite: even when a new generation is queued at once (as `jobs retry` did before), the other
    worker does not start it while run 1 goes on; it waits ('held') and starts once run 1 has stopped."""
    job_id, log, gate, finish = long_job(rt, tmp_path)
    cancel(rt, job_id)
    assert new_generation(rt, job_id, event="restarted", reason="queued at once by the test", expect=("cancelled",))
    wait_for(lambda: "held" in events(rt, job_id), timeout=15, what="the other worker to hold run 2 back")
    assert len(runs(log)) == 1 and get_job(rt.store, job_id)["status"] == "queued"

    gate.touch()
    wait_for(lambda: len(runs(log)) == 2, timeout=30, what="the held run to start")
    finish.touch()
    wait_for(lambda: get_job(rt.store, job_id)["status"] == "succeeded", timeout=30, what="the held run to succeed")
    held = [e["message"] for e in job_events(rt.store, job_id) if e["event"] == "held"]
    assert "still going on worker" in held[0]
    assert_never_overlap(runs(log))


@pytest.fixture
def prt(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    for key, value in {"PUBLISH_BACKOFF_BASE": "1", "PUBLISH_MIN_INTERVAL": "0", "PUBLISH_ACCOUNT_BUDGET": "0",
                       "WORKER_MAINTENANCE_INTERVAL": "1"}.items():  # fmt: skip
        monkeypatch.setenv(f"CONTENTQ_{key}", value)
    from contentq.runtime.context import set_process_runtime
    from contentq.settings import get_settings, load_settings

    get_settings.cache_clear()
    write_config(home, route_toml())
    runtime = Runtime(load_settings(home=home))
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


def long_post(rt: Runtime) -> int:
    """A text over Telegram's limit: three or more messages of one batch."""
    html = "\n\n".join(f"<b>Paragraph {n}.</b> " + "Some <i>formatted</i> words. " * 12 for n in range(30))
    return add_post(rt, html, state="scheduled", scheduled_at=iso(now()))


def publish_job_of(rt: Runtime, post_id: int) -> str:
    dispatch(rt)
    row = rt.store.one("SELECT id FROM jobs WHERE kind = 'publish' AND post_id = ?", (post_id,))
    assert row is not None
    return str(row["id"])


def test_a_publish_cancelled_before_its_first_part_sends_nothing(prt):
    tg = fake(prt)
    post_id = long_post(prt)
    job_id = publish_job_of(prt, post_id)
    ready = tg.ensure_ready

    def operator_cancels_meanwhile() -> None:
        cancel(prt, job_id)  # while the job prepares (connects, renders): before anything is sent
        ready()

    tg.ensure_ready = operator_cancels_meanwhile  # type: ignore[method-assign]
    drain(prt, "publish")
    assert tg.sent == [] and sends_of(prt.store, post_id) == []
    assert get_post(prt.store, post_id)["state"] == "scheduled"  # where a cancelled queued job leaves it
    assert get_job(prt.store, job_id)["status"] == "cancelled"
    assert events(prt, job_id)[-1] == "stopped"


def test_a_publish_cancelled_after_its_first_part_completes_the_batch_exactly_once(prt):
    tg = fake(prt)
    post_id = long_post(prt)
    job_id = publish_job_of(prt, post_id)
    send = tg.send

    def operator_cancels_after_part_one(target, part, random_ids):  # type: ignore[no-untyped-def]
        ids = send(target, part, random_ids)
        if len(tg.sent) == 1:
            cancel(prt, job_id)
        return ids

    tg.send = operator_cancels_after_part_one  # type: ignore[method-assign]
    drain(prt, "publish")
    texts = [m.html for m in tg.sent]
    assert len(texts) >= 3 and len(set(texts)) == len(texts)  # the whole post, each part once: never half of it
    assert [m.html for m in tg.visible("@mychan")] == texts
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and json.loads(post["message_ids"]) == [m.message_id for m in tg.sent]
    assert get_job(prt.store, job_id)["status"] == "cancelled"
    assert "discarded" in events(prt, job_id)  # the run's success came after the cancel


def test_a_collect_cancelled_midway_stops_between_two_messages(rt):
    (rt.settings.home / "contentq.toml").write_text(ROUTES)
    tg = FakeTelegram()
    rt.services["telegram"] = tg
    tg.add_message("@donor_a", 1, "first")
    tg.add_message("@donor_a", 2, "with a photo", media=MediaInfo("photo"))
    tg.add_message("@donor_a", 3, "third")
    job_id = enqueue(rt, "collect", "@donor_a", {"source": "@donor_a"})["id"]
    download = tg.download_media

    def operator_cancels_during_download(ch, message_id):  # type: ignore[no-untyped-def]
        cancel(rt, job_id)  # while message 2 is stored: it is stored whole, message 3 is left for the next run
        return download(ch, message_id)

    tg.download_media = operator_cancels_during_download  # type: ignore[method-assign]
    drain(rt, "collect")
    assert [p["source_msg_id"] for p in posts(rt)] == [1, 2]
    assert channel(rt)["last_message_id"] == 2
    stopped = [e for e in job_events(rt.store, job_id) if e["event"] == "stopped"]
    assert stopped and "after 2 of 3" in stopped[0]["message"]
    assert get_job(rt.store, job_id)["status"] == "cancelled"
