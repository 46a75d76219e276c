"""The panel on a phone and on a desktop (issue 25), in Debian's Chromium driven by Playwright: every page at
390 × 844 and 1280 × 900 is no wider than the screen, passes axe-core with no serious or critical violation,
weighs under 100 KB; on the phone the menu folds, buttons are 44 px tall, a post is approved from its preview
(by touch and by keyboard alone), failed jobs are retried in bulk and posts are found by their words.

One seeded panel (uvicorn in a thread) and one browser for the whole module; a context per screen size.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contentq.runtime.context import Runtime
from contentq.store.jobs import get_job
from contentq.store.posts import get_post
from contentq.web.auth import load_token
from tests.panel_helpers import seeded_panel

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
AXE = Path(__file__).parent / "assets" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
PAGE_BUDGET = 100_000
"""Bytes a page may transfer (HTML, CSS, scripts, images): the panel has no framework and no CDN."""

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")
sync_api = pytest.importorskip("playwright.sync_api")

Panel = tuple[Runtime, str, dict[str, int]]


SHOTS: list[Path] = []
"""Where this module's screenshots go (the panel's temporary folder)."""


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[Panel]:
    SHOTS[:] = [tmp_path_factory.mktemp("screenshots")]
    with seeded_panel(tmp_path_factory.mktemp("panel"), valkey_url) as served:
        yield served


@pytest.fixture(scope="module")
def browser(panel: Panel) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def open_tab(browser: Any, panel: Panel, viewport: dict[str, int], *, touch: bool = False) -> Any:
    """A logged-in tab of its own context (cookies and all) at this screen size."""
    rt, url, _ = panel
    context = browser.new_context(viewport=viewport, has_touch=touch, is_mobile=touch, base_url=url)
    tab = context.new_page()
    tab.csp_errors = []
    tab.on("console", lambda m: tab.csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    tab.goto("/login")
    tab.fill("input[name=token]", load_token(rt.settings))
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{url}/")
    return tab


@pytest.fixture(scope="module")
def phone(browser: Any, panel: Panel) -> Iterator[Any]:
    tab = open_tab(browser, panel, PHONE, touch=True)
    yield tab
    assert not tab.csp_errors, tab.csp_errors  # nothing the page needs is blocked by the CSP
    tab.context.close()


@pytest.fixture(scope="module")
def desktop(browser: Any, panel: Panel) -> Iterator[Any]:
    tab = open_tab(browser, panel, DESKTOP)
    yield tab
    assert not tab.csp_errors, tab.csp_errors
    tab.context.close()


def pages(panel: Panel) -> list[str]:
    rt, _, ids = panel
    job = rt.store.scalar("SELECT id FROM jobs WHERE status = 'failed' ORDER BY id LIMIT 1")
    return [
        "/", "/jobs", "/jobs?status=failed", f"/jobs/{job}", "/jobs/bulk?action=retry&status=failed", "/posts",
        "/posts?search=ракеты", f"/posts/{ids['album']}", f"/posts/{ids['published']}", "/schedule", "/workers",
        "/sources", "/insights", "/usage", "/users", "/posts/999999",
    ]  # fmt: skip


def axe_violations(tab: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page. The panel's CSP refuses inline scripts, so axe is
    evaluated through the DevTools protocol (which no page policy governs) rather than added as a <script>."""
    if not tab.evaluate("() => typeof window.axe !== 'undefined'"):
        tab.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = tab.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["html"][:120] for n in v["nodes"][:3]]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def transferred(tab: Any) -> int:
    """Bytes this page load took over the network: the document and every resource it fetched."""
    return int(
        tab.evaluate(
            "() => performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
            ".reduce((sum, e) => sum + (e.transferSize || e.encodedBodySize || 0), 0)"
        )
    )


def overflow(tab: Any) -> dict[str, Any]:
    """The document's width against the screen's, and the widest elements sticking out (to name the culprit)."""
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


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_every_page_fits_the_screen_passes_axe_and_is_light(request, panel: Panel, size: str) -> None:  # type: ignore[no-untyped-def]
    tab = request.getfixturevalue(size)
    problems = []
    for path in pages(panel):
        response = tab.goto(path)
        assert response.status in (200, 404), (path, response.status)
        tab.wait_for_load_state("load")
        box = overflow(tab)
        if box["scroll"] > box["width"]:
            problems.append(f"{path}: document {box['scroll']} px wide on a {box['width']} px screen: {box['out']}")
        violations = axe_violations(tab)
        if violations:
            problems.append(f"{path}: axe: {violations}")
        weight = transferred(tab)
        if weight > PAGE_BUDGET:
            problems.append(f"{path}: {weight} bytes transferred (budget {PAGE_BUDGET})")
    assert not problems, "\n".join(problems)


def test_the_login_page_fits_a_phone_and_passes_axe(browser: Any, panel: Panel) -> None:
    context = browser.new_context(viewport=PHONE, base_url=panel[1])
    tab = context.new_page()
    tab.goto("/login")
    box = overflow(tab)
    assert box["scroll"] <= box["width"], box
    assert axe_violations(tab) == []
    buttons = tab.locator("button[type=submit]")  # the shared token's form and the user's (no owner user yet)
    assert buttons.count() == 2
    assert all(buttons.nth(n).bounding_box()["height"] >= 44 for n in range(2))
    context.close()


def test_on_a_phone_the_menu_folds_and_every_button_is_44_px_tall(phone: Any, panel: Panel) -> None:
    phone.goto(f"/posts/{panel[2]['album']}")
    nav = phone.locator("#nav")
    assert not nav.is_visible()
    menu = phone.locator(".menu-toggle")
    assert menu.get_attribute("aria-expanded") == "false"
    menu.click()
    assert nav.is_visible() and menu.get_attribute("aria-expanded") == "true"
    assert phone.locator("#nav a", has_text="Workers").bounding_box()["height"] >= 44
    menu.click()
    assert not nav.is_visible()
    for path in ("/", f"/posts/{panel[2]['album']}", "/jobs", "/jobs/bulk?action=retry&status=failed"):
        phone.goto(path)
        heights = phone.evaluate(
            "() => [...document.querySelectorAll('button, .button, input:not([type=hidden]), select')]"
            ".filter(e => e.offsetParent !== null)"
            ".map(e => [e.textContent.trim() || e.name, e.getBoundingClientRect().height])"
        )
        assert heights and all(h >= 44 for _, h in heights), (path, [x for x in heights if x[1] < 44])


def test_on_a_phone_the_post_shows_preview_and_actions_first_and_is_approved(phone: Any, panel: Panel) -> None:
    rt, _, ids = panel
    phone.goto(f"/posts/{ids['album']}")
    preview = phone.locator("#preview").bounding_box()
    approve = phone.locator("#approve").bounding_box()
    original = phone.locator("h2", has_text="Original").bounding_box()
    assert preview["y"] < approve["y"] < original["y"], (preview, approve, original)
    assert approve["y"] + approve["height"] < 3 * PHONE["height"]  # within a few thumb scrolls of the top
    assert preview["width"] <= PHONE["width"]
    _keep_for_docs(phone, "post-phone.png")
    phone.locator("#approve").tap()
    phone.wait_for_selector(".flash")
    assert "approved" in phone.inner_text(".flash")
    assert get_post(rt.store, ids["album"])["state"] == "scheduled"


def test_a_post_is_approved_with_the_keyboard_alone(desktop: Any, panel: Panel) -> None:
    rt, _, ids = panel
    desktop.goto(f"/posts/{ids['awaiting_approval']}")
    for _ in range(40):  # the skip link, the menu, then the actions: Tab until Approve has the focus
        desktop.keyboard.press("Tab")
        if desktop.evaluate("() => document.activeElement.id") == "approve":
            break
    else:
        pytest.fail("Approve never took the focus with Tab")
    focus = desktop.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert focus != "none"  # the focus is visible
    desktop.keyboard.press("Enter")
    desktop.wait_for_selector(".flash")
    assert "approved" in desktop.inner_text(".flash")
    assert get_post(rt.store, ids["awaiting_approval"])["state"] == "scheduled"


def test_failed_jobs_are_retried_in_bulk_from_the_phone_after_a_count(phone: Any, panel: Panel) -> None:
    rt = panel[0]
    failed = [r["id"] for r in rt.store.query("SELECT id FROM jobs WHERE status = 'failed'")]
    assert len(failed) == 3
    phone.goto("/jobs?status=failed&queue=maintenance")
    phone.locator("#retry-all").tap()
    phone.wait_for_url("**/jobs/bulk?**")
    assert phone.inner_text("#bulk-count") == "3"
    assert "failed jobs of queue maintenance" in phone.inner_text(".confirm")
    _keep_for_docs(phone, "bulk-phone.png")
    phone.locator("#bulk-confirm").tap()
    phone.wait_for_selector(".flash")
    assert "3 failed job(s) queued again" in phone.inner_text(".flash")
    assert {get_job(rt.store, job_id)["status"] for job_id in failed} == {"queued"}


def test_posts_are_found_by_their_words_in_either_text(desktop: Any, panel: Panel) -> None:
    ids = panel[2]
    desktop.goto("/posts")
    desktop.fill("input[name=search]", "ракеты пятниц")  # the original's words; the last one as a prefix
    desktop.keyboard.press("Enter")
    desktop.wait_for_url("**/posts?search=**")
    found = [
        int(x) for x in desktop.locator("#posts tr[data-post]").evaluate_all("rows => rows.map(r => r.dataset.post)")
    ]
    assert found == [ids["awaiting_approval"]]
    desktop.goto("/posts?search=Friday+weather")
    found = desktop.locator("#posts tr[data-post]").evaluate_all("rows => rows.map(r => r.dataset.post)")
    assert [int(x) for x in found] == [ids["rewritten"]]


def test_the_workers_and_sources_pages_say_what_operators_look_for(phone: Any, desktop: Any) -> None:
    desktop.goto("/workers")
    alive = desktop.locator('tr[data-worker="host.1234"]')
    assert "alive" in alive.inner_text() and "noop-waiting" in alive.inner_text() and "MB" in alive.inner_text()
    assert "dead" in desktop.locator('tr[data-worker="host.999"]').inner_text()
    assert "stopped" in desktop.locator('tr[data-worker="host.42"]').inner_text()
    _keep_for_docs(desktop, "workers-desktop.png")
    phone.goto("/sources")
    donor = phone.locator('tr[data-source="@donor"]').inner_text()
    assert "5120" in donor and "connected" in donor and "Subscribe: @donor" in donor
    assert "ChannelPrivateError" in phone.locator('tr[data-source="@other"]').inner_text()
    _keep_for_docs(phone, "sources-phone.png")


def test_screenshots_of_both_sizes(phone: Any, desktop: Any) -> None:
    for tab, suffix in ((phone, "phone"), (desktop, "desktop")):
        for path, name in (("/", "dashboard"), ("/jobs", "jobs")):
            tab.goto(path)
            if name == "dashboard":
                tab.wait_for_selector("#live.on")
            shot = _keep_for_docs(tab, f"{name}-{suffix}.png")
            assert shot.stat().st_size > 5_000


def _keep_for_docs(tab: Any, name: str) -> Path:
    """A screenshot of the whole page, in few colours (small PNGs); with UPDATE_DOCS_SCREENSHOTS=1 also kept in
    docs/img for docs/web.md."""
    from PIL import Image

    raw = tab.screenshot(full_page=True)
    image = Image.open(io.BytesIO(raw)).convert("RGB").quantize(colors=64)
    folder = SHOTS[0]
    shot = folder / name
    image.save(shot, optimize=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(shot, Path(__file__).resolve().parent.parent / "docs" / "img" / name)
    return shot
