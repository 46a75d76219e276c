"""The Insights page in Debian's Chromium (Playwright): on a 390 px phone and a desktop its SVG charts show the
better donor and slot, nothing is wider than the screen, the CSP blocks nothing, axe-core finds no serious
violation; screenshots are kept in the test's temporary folder (docs/img with UPDATE_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from contentq.web.auth import load_token
from tests.insights_helpers import run_scenario, scenario_toml
from tests.publish_helpers import write_config
from tests.test_web_panel_browser import ARGS, CHROMIUM, DESKTOP, PHONE, axe_violations, overflow
from tests.web_helpers import serving

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")
sync_api = pytest.importorskip("playwright.sync_api")


def test_the_insights_page_on_a_phone_and_a_desktop(rt, clock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_config(rt.settings.home, scenario_toml())
    run_scenario(rt, clock, posts=600, weeks=1)
    shots = []
    with serving(rt) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
                context = browser.new_context(viewport=viewport, has_touch=name == "phone", base_url=url)
                tab = context.new_page()
                blocked: list[str] = []
                tab.on("console", lambda m, seen=blocked: seen.append(m.text) if "Security Policy" in m.text else None)
                tab.goto("/login")
                tab.fill("input[name=token]", load_token(rt.settings))
                tab.click("button[type=submit]")
                tab.wait_for_url(f"{url}/")
                assert tab.goto("/insights").status == 200
                charts = tab.locator("svg.chart")
                assert charts.count() == 3
                for i in range(3):
                    box = charts.nth(i).bounding_box()
                    assert box is not None and box["height"] > 40 and box["width"] <= viewport["width"]
                best = tab.locator("svg.hbars rect.best title")
                assert best.nth(0).text_content().startswith("@donor_b: ")
                assert best.nth(1).text_content().startswith("Wed 13:00: ")
                assert "Better slot for news → telegram:@mychan: Wed 13:00" in tab.locator("#findings").inner_text()
                box = overflow(tab)
                assert box["scroll"] <= box["width"], box
                assert axe_violations(tab) == []
                assert not blocked, blocked
                shots.append(_screenshot(tab, tmp_path / f"insights-{name}.png"))
                context.close()
        finally:
            browser.close()
    assert all(shot.stat().st_size > 5_000 for shot in shots)


def _screenshot(tab: Any, path: Path) -> Path:
    from PIL import Image

    image = Image.open(io.BytesIO(tab.screenshot(full_page=True))).convert("RGB").quantize(colors=64)
    image.save(path, optimize=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(path, Path(__file__).resolve().parent.parent / "docs" / "img" / path.name)
    return path
