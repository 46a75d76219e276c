"""The owner's Users page in a real headless Chromium (Debian's `chromium`, driven by Playwright, as in
test_web_people_browser.py) against uvicorn: on a 390 px phone the owner adds an editor with a generated password
(shown once, copied with the Copy button: no inline script under the panel's CSP); the editor logs in in a second
browser context and may act on the posts of their route only; the owner revokes that session on the Users page,
and the editor's next request lands on the login form."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from contentq.people import users
from contentq.runtime.context import Runtime
from tests.test_web_people_browser import ARGS, CHROMIUM, log_in, serious_axe_violations
from tests.web_helpers import PASSWORDS, add_people, serving, two_routes

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="needs Debian's chromium")
sync_api = pytest.importorskip("playwright.sync_api")

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def people(rt: Runtime) -> Iterator[tuple[Runtime, str, dict[str, Any]]]:
    ids: dict[str, Any] = two_routes(rt)
    add_people(rt)
    with serving(rt) as url:
        yield rt, url, ids


@pytest.fixture
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def fits(tab: Any) -> dict[str, Any]:
    return dict(
        tab.evaluate(
            """() => {
              const width = document.documentElement.clientWidth;
              const out = [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > width + 1).slice(0, 5)
                .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));
              return {scroll: document.documentElement.scrollWidth, width, out};
            }"""
        )
    )


def small_targets(tab: Any) -> list[Any]:
    """Visible buttons, fields and fold-outs under 44 px tall (checkboxes aside: their labels are the target)."""
    return list(
        tab.evaluate(
            "() => [...document.querySelectorAll('button, input:not([type=hidden]):not([type=checkbox]), select,"
            " summary, fieldset.routes label, label.check')].filter(e => e.offsetParent !== null)"
            ".map(e => [e.textContent.trim() || e.name, e.getBoundingClientRect().height])"
            ".filter(x => x[1] < 44)"
        )
    )


def test_owner_adds_an_editor_who_acts_on_their_route_then_revokes_their_session(chromium: Any, people: Any) -> None:
    rt, url, ids = people
    owner_context = chromium.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    owner_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    csp: list[str] = []
    owner_context.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
    owner = owner_context.new_page()
    log_in(owner, url, "olga", PASSWORDS["olga"])
    owner.wait_for_url(f"{url}/")
    owner.click(".menu-toggle")
    owner.click("#nav >> text=Users")
    owner.wait_for_url(f"{url}/users")
    assert owner.locator("section.user h2").all_inner_texts() == ["olga owner (you)", "eddie editor", "vera viewer"]
    box = fits(owner)
    assert box["scroll"] <= box["width"], box
    assert serious_axe_violations(owner) == []
    owner.locator("#user-eddie summary", has_text="Role and routes").click()
    assert small_targets(owner) == []

    # A refusal keeps what was typed and says why, with the CLI's sentence.
    owner.fill("#new-name", "nina")
    owner.select_option("#new-role", "editor")
    owner.check("#add-user input[name=routes][value=sport]")
    owner.fill("#new-password", "too-short")
    owner.fill("#new-again", "too-short")
    owner.click("#add-user button.primary")
    assert "the password is 9 characters; use at least 10" in owner.locator("#refused").inner_text()
    assert owner.input_value("#new-name") == "nina" and owner.input_value("#new-password") == ""
    assert users.find(rt, "nina") is None

    owner.fill("#new-password", "")
    owner.fill("#new-again", "")
    owner.check("#add-user input[name=generate]")
    owner.click("#add-user button.primary")
    owner.wait_for_selector("#shown-once")
    assert "user nina added: editor on routes sport" in owner.inner_text("main")
    password = owner.input_value("#secret-value")
    assert users.verify_password(users.find(rt, "nina"), password)
    owner.click("#shown-once button.copy")
    owner.wait_for_selector("button.copy[data-copied=yes]")
    assert owner.evaluate("() => navigator.clipboard.readText()") == password
    box = fits(owner)
    assert box["scroll"] <= box["width"], box

    # The editor, in a browser of their own.
    editor_context = chromium.new_context(viewport={"width": 1280, "height": 900})
    editor = editor_context.new_page()
    log_in(editor, url, "nina", password)
    editor.wait_for_url(f"{url}/")
    assert editor.locator("#who").inner_text() == "nina · editor"
    assert "Users" not in editor.locator("#nav").inner_text()
    editor.goto(f"{url}/posts/{ids['news']}")
    assert editor.locator("#approve").count() == 0
    assert "may not act on posts of route news" in editor.locator("#no-actions").inner_text()
    editor.goto(f"{url}/posts/{ids['sport']}")
    editor.click("#approve")
    editor.wait_for_selector(".flash")
    assert rt.store.scalar("SELECT state FROM posts WHERE id = ?", (ids["sport"],)) == "scheduled"
    refused = editor.goto(f"{url}/users")
    assert refused is not None and refused.status == 403

    # The owner sees that session on the Users page and revokes it.
    owner.goto(f"{url}/users")
    sessions = owner.locator("#user-nina table.sessions tr")
    assert sessions.count() == 2  # the header and the one login
    owner.locator("#user-nina table.sessions button", has_text="Revoke").click()
    owner.wait_for_selector(".flash")
    assert "revoked: that browser is logged out" in owner.locator(".flash").inner_text()
    assert owner.locator("#user-nina table.sessions").count() == 0

    editor.goto(f"{url}/posts")
    assert editor.url == f"{url}/login"
    editor_context.close()

    rows = rt.store.query("SELECT actor, kind, target, action FROM audit_events WHERE actor = 'web:olga' ORDER BY id")
    assert [(r["kind"], r["action"]) for r in rows if r["action"] != "logged_in"] == [
        ("user", "added"), ("session", "revoked"),
    ]  # fmt: skip
    assert csp == []
    owner_context.close()
