"""The Insights page and GET /api/insights: the same report as `contentq insights`, with SVG charts."""

from __future__ import annotations

import re

from contentq.insights.report import build
from tests.insights_helpers import run_scenario, scenario_toml
from tests.publish_helpers import write_config
from tests.web_helpers import client, json_of, login


def test_the_api_and_the_page_show_the_better_donor_and_slot(rt, clock):
    write_config(rt.settings.home, scenario_toml())
    run_scenario(rt, clock, posts=400, weeks=1)
    tc = client(rt)
    data = json_of(tc.get("/api/insights", params={"days": 30}))
    assert data == build(rt, days=30).as_dict() | {"since": data["since"], "until": data["until"]}
    assert {a["better"] for a in data["better_slots"]} == {"Wed 13:00"}
    best = max(data["donors"], key=lambda d: d["ratio"])
    assert best["source"] == "@donor_b" and best["posts"] == 100

    page = client(rt, token=False)
    login(page, rt)
    html = page.get("/insights", headers={"Accept": "text/html"}).text
    assert '<a href="/insights" class="active" aria-current="page">Insights</a>' in html
    assert html.count('<svg class="chart') == 3  # donors, slots, subscribers
    assert re.search(r'<rect class="best"[^>]*><title>@donor_b: [\d,]+ \(100 posts\)</title>', html)
    assert re.search(r'<rect class="best"[^>]*><title>Wed 13:00: [\d,]+ \(133 posts\)</title>', html)
    assert "<polyline" in html and "style=" not in html  # the CSP allows no inline style
    assert "Best donor of news → telegram:@mychan: @donor_b" in html


def test_an_unknown_route_is_a_404_and_bad_numbers_a_422(rt):
    tc = client(rt)
    response = tc.get("/api/insights", params={"route": "nope"})
    assert response.status_code == 404 and "unknown route 'nope'" in json_of(response)["error"]
    assert tc.get("/api/insights", params={"days": 0}).status_code == 422
    assert tc.get("/api/insights", params={"min_posts": 0}).status_code == 422


def test_an_empty_page_says_how_to_collect_figures(rt):
    page = client(rt, token=False)
    login(page, rt)
    html = page.get("/insights", headers={"Accept": "text/html"}).text
    assert "run <code>contentq insights fetch</code> hourly from cron" in html
