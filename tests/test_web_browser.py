"""The panel in a real headless Chromium (Debian's `chromium`, driven by Playwright) against uvicorn serving the app."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from contentq.runtime.context import Runtime
from contentq.runtime.queues import paused_queues
from contentq.runtime.tracking import cancel, enqueue
from contentq.store.jobs import get_job
from contentq.store.posts import get_post
from contentq.web.app import create_app
from contentq.web.auth import load_token
from tests.conftest import wait_for
from tests.web_helpers import album_post, failed_job

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def server(rt: Runtime) -> Iterator[str]:
    """`contentq web`'s app on uvicorn in a thread, on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(rt.settings, rt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for(lambda: srv.started, timeout=20, what="uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(server: str, rt: Runtime) -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.goto(f"{server}/")
        assert tab.url.endswith("/login")
        tab.fill("input[name=token]", load_token(rt.settings))
        tab.click("button[type=submit]")
        tab.wait_for_url(f"{server}/")
        yield tab
        assert not [e for e in errors if "Content Security Policy" in e], errors  # nothing blocked by the CSP
        browser.close()


def test_a_job_changes_state_live_and_a_failed_one_is_retried(page, server: str, rt: Runtime) -> None:  # type: ignore[no-untyped-def]
    queued = enqueue(rt, "noop", "live")["id"]
    failed = failed_job(rt, "broken")
    page.goto(f"{server}/jobs")
    cell = page.locator(f'tr[data-job="{queued}"] [data-field="status"]')
    assert cell.inner_text() == "queued"
    page.wait_for_selector("#live.on")  # the EventSource is connected
    page.evaluate("window.__notReloaded = true")
    cancel(rt, queued)  # the core the CLI's `jobs cancel` calls, from outside the browser
    sync_api.expect(cell).to_have_text("cancelled", timeout=10_000)
    assert page.evaluate("window.__notReloaded") is True

    page.goto(f"{server}/jobs/{failed}")
    page.click("#retry")
    page.wait_for_selector(".flash")
    assert "queued again" in page.inner_text(".flash")
    assert get_job(rt.store, failed)["status"] == "queued"
    assert page.locator("#events tr").last.inner_text().split("\t")[2] == "restarted"


def test_approve_a_post_from_its_preview(page, server: str, rt: Runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    post_id = album_post(rt)
    page.goto(f"{server}/posts/{post_id}")
    preview = page.locator("#preview")
    album = preview.locator("svg.tg-album")
    assert album.get_attribute("data-items") == "5"
    sync_api.expect(preview.locator("image")).to_have_count(5)
    assert preview.locator(".tg-message").count() == 2  # the caption is too long: media first, then the text
    spoiler = preview.locator(".tg-spoiler").first
    hidden = spoiler.evaluate("e => getComputedStyle(e).color")
    assert hidden == "rgba(0, 0, 0, 0)"
    assert preview.locator(".tg-hashtag", has_text="#launch").count() == 1
    assert preview.locator("a.tg-mention").first.get_attribute("href") == "https://t.me/contentq_team"
    shot = tmp_path / "post-preview.png"
    preview.screenshot(path=str(shot))
    spoiler.click()
    assert spoiler.evaluate("e => getComputedStyle(e).color") != hidden
    page.click("#approve")
    page.wait_for_selector(".flash")
    assert "approved" in page.inner_text(".flash")
    assert get_post(rt.store, post_id)["state"] == "scheduled"
    assert shot.stat().st_size > 10_000
    _keep_for_docs(shot)


def test_pause_and_resume_a_queue_from_the_dashboard(page, server: str, rt: Runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    failed_job(rt, "f1")
    enqueue(rt, "noop", "waiting")
    page.goto(f"{server}/")
    row = page.locator('tr[data-queue="rewrite"]')
    assert row.locator(".paused").inner_text() == "no"
    row.locator("button").click()
    page.wait_for_selector(".flash")
    assert "rewrite" in paused_queues(rt.redis)
    assert page.locator('tr[data-queue="rewrite"] .paused').inner_text() == "yes"
    page.locator('tr[data-queue="rewrite"] button').click()
    page.wait_for_selector(".flash")
    assert "rewrite" not in paused_queues(rt.redis)
    page.wait_for_selector("#live.on")
    cancel(rt, enqueue(rt, "noop", "shown-live")["id"])
    sync_api.expect(page.locator("#feed")).to_contain_text("shown-live", timeout=10_000)
    time.sleep(0.2)
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    _keep_for_docs(shot)


def _keep_for_docs(shot: Path) -> None:
    """With UPDATE_DOCS_SCREENSHOTS=1 the screenshots also go to docs/img (done once, for docs/web.md)."""
    import os

    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        target = Path(__file__).resolve().parent.parent / "docs" / "img"
        target.mkdir(exist_ok=True)
        shutil.copyfile(shot, target / shot.name)
