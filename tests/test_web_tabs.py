"""Eight tabs of the panel in one real Chromium (issue 28): a browser opens at most 6 connections per host over
HTTP/1.1, and a live connection per tab left tabs 7 and 8 loading forever. Now the tabs share one: a
SharedWorker, else a tab elected by a Web Lock over a BroadcastChannel, else short polls. Each way: all eight
tabs load and all see a job's status change live."""

from __future__ import annotations

from pathlib import Path

import pytest

from contentq.runtime.context import Runtime
from contentq.runtime.tracking import cancel, enqueue
from contentq.store.jobs import log_event
from contentq.store.workers import register_worker, release_job
from contentq.web.auth import load_token
from tests.test_web_browser import ARGS, CHROMIUM, page, server  # noqa: F401 - its fixtures and Chromium's setup
from tests.web_helpers import client

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")

TABS = 8

WITHOUT = {
    "shared-worker": "",
    "leader": "delete window.SharedWorker;",  # as in browsers without SharedWorker (Chrome on Android)
    "polling": "delete window.SharedWorker; delete Navigator.prototype.locks;",
}
"""What each way of sharing needs the browser to lack (an init script run before the page's own)."""


@needs_chromium
@pytest.mark.parametrize("via", list(WITHOUT))
def test_eight_tabs_all_load_and_all_see_a_job_change_live(server: str, rt: Runtime, via: str) -> None:  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api")
    job = enqueue(rt, "noop", "watched")["id"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context()
        if WITHOUT[via]:
            context.add_init_script(WITHOUT[via])
        errors: list[str] = []
        first = context.new_page()
        first.goto(f"{server}/login")
        first.fill("input[name=token]", load_token(rt.settings))
        first.click("button[type=submit]")
        first.wait_for_url(f"{server}/")
        tabs = [first] + [context.new_page() for _ in range(TABS - 1)]
        for number, tab in enumerate(tabs, start=1):
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.goto(f"{server}/jobs/{job}", timeout=15_000)  # tabs 7 and 8 never loaded
            assert tab.locator("h1").inner_text().startswith(f"Job {job}"), f"tab {number}"
        for tab in tabs:
            tab.wait_for_selector("#live.on", timeout=15_000)
            assert tab.locator("#live").get_attribute("data-via") == via
        cancel(rt, job)  # the core the CLI's `jobs cancel` calls, from outside the browser
        for number, tab in enumerate(tabs, start=1):
            status = tab.locator(f'span[data-job="{job}"][data-field="status"]')
            sync_api.expect(status).to_have_text("cancelled", timeout=15_000)
            sync_api.expect(tab.locator("#events tr").last).to_contain_text("cancelled by the operator")
            assert tab.evaluate("document.readyState") == "complete", f"tab {number}"
        browser.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_once_answers_what_is_new_and_closes_so_an_event_source_polls(rt: Runtime) -> None:
    """The last fallback: each answer ends at once, with the cursor as its last id and a `retry:`; the browser
    comes back with that id as Last-Event-ID and gets what happened in between, nothing twice."""
    api = client(rt)
    first = api.get("/api/events", params={"once": 1})
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/event-stream")
    lines = first.text.splitlines()
    assert "retry: 3000" in lines and not any(line.startswith("event:") for line in lines)
    cursor = [line[4:] for line in lines if line.startswith("id: ")][-1]
    job = enqueue(rt, "noop", "polled")["id"]
    cancel(rt, job)
    second = api.get("/api/events", params={"once": 1}, headers={"Last-Event-ID": cursor})
    data = [line for line in second.text.splitlines() if line.startswith("data: ")]
    assert [job in d for d in data] == [True, True] and '"event": "cancelled"' in data[-1]
    cursor = [line[4:] for line in second.text.splitlines() if line.startswith("id: ")][-1]
    third = api.get("/api/events", params={"once": 1}, headers={"Last-Event-ID": cursor})
    assert not [line for line in third.text.splitlines() if line.startswith("data: ")]


@needs_chromium
def test_retry_shows_once_the_cancelled_run_has_stopped(page, server: str, rt: Runtime) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A job cancelled while a live worker still runs it: its page offers no Retry but says the run is stopping;
    the run's `stopped` event brings the Retry button, live, and it works."""
    sync_api = pytest.importorskip("playwright.sync_api")
    job = enqueue(rt, "noop", "stopping")["id"]
    register_worker(rt.store, "busy-worker", ["maintenance"])  # this process: alive, beating
    rt.store.execute("UPDATE jobs SET status = 'in_progress', worker = 'busy-worker' WHERE id = ?", (job,))
    rt.store.execute("UPDATE workers SET current_job = ? WHERE name = 'busy-worker'", (job,))
    cancel(rt, job)
    page.goto(f"{server}/jobs/{job}")
    sync_api.expect(page.locator("#stopping")).to_contain_text("stopping on worker busy-worker")
    assert not page.locator("#retry").is_visible()
    page.wait_for_selector("#live.on")
    log_event(rt.store, job, "stopped", "the cancelled run stopped at a safe point")  # what the run writes, with:
    release_job(rt.store, "busy-worker", job)
    sync_api.expect(page.locator("#retry")).to_be_visible(timeout=10_000)
    assert page.locator("#stopping").count() == 0
    page.click("#retry")
    page.wait_for_selector(".flash")
    assert "queued again" in page.inner_text(".flash")
