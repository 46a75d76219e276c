"""Issue 28 in a real headless Chromium (Debian's `chromium`, driven by Playwright) against uvicorn: a hostile
export's documents are downloads that run nothing; /api/docs renders OpenAPI 3.1 offline and "Try it out" works
with the bearer token and with the session; tracebacks keep their lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contentq.intake.collect import ForegroundContext
from contentq.intake.imports import import_export
from contentq.runtime.context import Runtime
from contentq.runtime.queues import paused_queues
from contentq.store.jobs import log_event
from contentq.web.auth import load_token
from tests.web_helpers import HOSTILE_TYPES, failed_job, hostile_export, serving

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def server(rt: Runtime) -> Iterator[str]:
    with serving(rt) as base:
        yield base


@pytest.fixture
def browser_context(server: str, rt: Runtime, tmp_path: Path) -> Iterator[Any]:
    """A logged-in browser; afterwards, nothing the page did was blocked by the CSP."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, downloads_path=str(tmp_path / "dl"))
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        errors: list[str] = []
        context.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page = context.new_page()
        page.goto(f"{server}/login")
        page.fill("input[name=token]", load_token(rt.settings))
        page.click("button[type=submit]")
        page.wait_for_url(f"{server}/")
        yield context
        assert not [e for e in errors if "Content Security Policy" in e], errors
        browser.close()


def test_a_hostile_exports_documents_are_downloads_and_run_nothing(
    browser_context: Any, server: str, rt: Runtime, tmp_path: Path
) -> None:
    (rt.settings.home / "contentq.toml").write_text(
        '[routes.news]\ntarget = "@mine"\nsources = ["@hostile"]\nrewriter = "none"\n'
    )
    export = hostile_export(tmp_path / "export")
    import_export(ForegroundContext(rt), export, "@hostile")
    posts = rt.store.query("SELECT id, source_msg_id FROM posts ORDER BY source_msg_id")
    assert len(posts) == len(HOSTILE_TYPES)
    page = browser_context.pages[0]
    downloads: list[Any] = []
    for post in posts:
        page.goto(f"{server}/posts/{post['id']}")
        link = page.locator("#preview a.tg-document")
        assert link.count() == 1 and link.get_attribute("target") == "_blank"
        with page.expect_download(timeout=10_000) as download:  # Chromium reports it to the opener too
            link.click()  # as an approver would: the link opens in a new tab
        downloads.append(download.value)
    sent = sorted(Path(d.path()).read_bytes() for d in downloads)
    assert sent == sorted((export.parent / "files" / name).read_bytes() for name in HOSTILE_TYPES)
    for popup in browser_context.pages[1:]:
        assert popup.evaluate("document.title") != "hostile"  # no tab rendered a donor page
    page.goto(f"{server}/")
    page.wait_for_timeout(500)
    assert page.evaluate("localStorage.getItem('pwned')") is None  # no donor script ran in the panel's origin
    assert paused_queues(rt.redis) == set()  # …nor paused the publish queue


def _try_it_out(page: Any, operation: str, fill: dict[str, str] | None = None) -> str:
    """Expand an operation of Swagger UI, "Try it out", fill its parameters, Execute: the status it shows."""
    block = page.locator(f"#operations-default-{operation}")
    block.locator(".opblock-summary").first.click()
    block.locator("button.try-out__btn").click()
    for name, value in (fill or {}).items():
        field = block.locator(f'tr[data-param-name="{name}"]')
        if field.locator("select").count():  # an enum (the queue's name): Swagger UI offers its values
            field.locator("select").select_option(value)
        else:
            field.locator("input").fill(value)
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table td.response-col_status:not(.col_header)").first
    sync_api.expect(status).to_have_text(re.compile(r"^\d{3}"), timeout=10_000)
    return str(status.inner_text()).strip()


def test_the_api_docs_list_the_operations_and_try_them_with_the_token(
    browser_context: Any, server: str, rt: Runtime
) -> None:
    page = browser_context.pages[0]
    page.goto(f"{server}/api/docs")
    page.wait_for_selector(".opblock", timeout=15_000)  # Swagger UI 5 read the OpenAPI 3.1 document
    assert page.locator(".version-stamp").inner_text().strip() == "OAS 3.1"
    summaries = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/api/jobs", "/api/jobs/{job_id}/retry", "/api/queues/{name}/pause", "/api/events"} <= {
        s.replace("\u200b", "") for s in summaries
    }
    assert len(summaries) >= 20
    # With the session the page was opened in: the CSRF token goes along.
    assert _try_it_out(page, "pause_queue_api_queues__name__pause_post", {"name": "publish"}) == "200"
    assert paused_queues(rt.redis) == {"publish"}
    # Authorize with the token: sent as `Authorization: Bearer …`, in a browser without a session.
    fresh = browser_context.browser.new_context()
    try:
        docs = fresh.new_page()
        docs.goto(f"{server}/api/docs")
        assert docs.url == f"{server}/login"  # the docs page itself needs a login …
        docs.fill("input[name=token]", load_token(rt.settings))
        docs.click("button[type=submit]")
        docs.goto(f"{server}/api/docs")
        docs.wait_for_selector(".opblock", timeout=15_000)
        docs.context.clear_cookies()  # … then only the token: "Try it out" must work with the bearer scheme
        docs.click("button.authorize")
        docs.fill(".auth-container input", load_token(rt.settings))
        docs.click(".auth-btn-wrapper button.authorize")
        docs.click("button.btn-done")
        assert _try_it_out(docs, "resume_queue_api_queues__name__resume_post", {"name": "publish"}) == "200"
        assert paused_queues(rt.redis) == set()
        assert _try_it_out(docs, "list_queues_api_queues_get") == "200"
    finally:
        fresh.close()


def test_a_traceback_keeps_its_lines(browser_context: Any, server: str, rt: Runtime) -> None:
    trace = 'Traceback (most recent call last):\n  File "x.py", line 3, in run\n    boom()\nValueError: boom'
    job = failed_job(rt, "traced", error=trace)
    log_event(rt.store, job, "failed", trace, level="error")
    page = browser_context.pages[0]
    page.goto(f"{server}/jobs/{job}")
    error_cell = page.locator("table.kv tr", has_text="error").locator("td")
    assert error_cell.inner_text().splitlines() == trace.splitlines()
    assert page.locator("#events tr").last.locator("td").last.inner_text().splitlines() == trace.splitlines()
