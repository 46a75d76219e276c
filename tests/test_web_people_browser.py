"""Users in a real headless Chromium (Debian's `chromium`, driven by Playwright) against uvicorn: the login form
with a name and password, and what an editor sees — only the actions their role and routes allow — then the
owner's Audit page naming what the editor did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contentq.runtime.context import Runtime
from tests.web_helpers import PASSWORDS, add_people, failed_job, serving, two_routes

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
AXE = Path(__file__).parent / "assets" / "axe-core" / "axe.min.js"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def people(rt: Runtime) -> Iterator[tuple[Runtime, str, dict[str, Any]]]:
    ids: dict[str, Any] = two_routes(rt)
    ids["job"] = failed_job(rt, "seen-by-editor")
    add_people(rt)
    with serving(rt) as url:
        yield rt, url, ids


@pytest.fixture
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def serious_axe_violations(tab: Any) -> list[str]:
    """axe-core's serious and critical violations (evaluated over DevTools: the panel's CSP refuses inline script)."""
    tab.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    found = tab.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [v["id"] for v in found if v["impact"] in ("serious", "critical")]


def log_in(tab: Any, url: str, name: str, password: str) -> None:
    tab.goto(f"{url}/login")
    tab.fill("#name", name)
    tab.fill("#password", password)
    tab.click("#user-login button[type=submit]")


def test_an_editor_logs_in_and_sees_only_what_they_may_do(chromium: Any, people: Any) -> None:
    rt, url, ids = people
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    csp: list[str] = []
    context.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
    tab = context.new_page()
    tab.goto(f"{url}/")
    assert tab.url == f"{url}/login"
    assert tab.locator("#token").count() == 0  # an owner user exists: the shared token's form is gone
    assert serious_axe_violations(tab) == []

    log_in(tab, url, "eddie", "not-his-password")
    assert tab.locator("p.error").inner_text() == "wrong user name or password"
    assert tab.input_value("#name") == "eddie"
    log_in(tab, url, "eddie", PASSWORDS["eddie"])
    tab.wait_for_url(f"{url}/")
    assert tab.locator("#who").inner_text() == "eddie · editor"
    nav = tab.locator("#nav").inner_text()
    assert "Posts" in nav and "Usage" not in nav and "Audit" not in nav and "Sessions" not in nav
    assert tab.locator("button[name=queue-action]").count() == 0  # no Pause for an editor

    tab.goto(f"{url}/jobs/{ids['job']}")
    assert tab.locator("#retry").count() == 0
    tab.goto(f"{url}/posts/{ids['sport']}")
    assert tab.locator("#approve").count() == 0 and tab.locator("textarea[name=html]").count() == 0
    assert "may not act on posts of route sport" in tab.locator("#no-actions").inner_text()
    tab.goto(f"{url}/posts/{ids['news']}")
    tab.click("#approve")
    tab.wait_for_selector(".flash")
    assert f"post {ids['news']} approved" in tab.locator(".flash").inner_text()
    assert rt.store.scalar("SELECT state FROM posts WHERE id = ?", (ids["news"],)) == "scheduled"

    refused = tab.goto(f"{url}/usage")
    assert refused is not None and refused.status == 403
    assert "forbidden: eddie is an editor and may not see LLM usage and costs" in tab.inner_text("main")
    assert csp == []
    context.close()

    owner = chromium.new_context().new_page()
    log_in(owner, url, "olga", PASSWORDS["olga"])
    owner.wait_for_url(f"{url}/")
    assert "Audit" in owner.locator("#nav").inner_text()
    owner.click("#nav >> text=Audit")
    owner.fill("input[name=actor]", "web:eddie")
    owner.click("form.filters button")
    rows = owner.locator("#audit tr").all_inner_texts()
    assert any("web:eddie" in r and "approved" in r for r in rows), rows
    assert any("web:eddie" in r and "logged_in" in r for r in rows), rows
    owner.context.close()
