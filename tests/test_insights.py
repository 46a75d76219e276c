"""`contentq insights`: the answers on 2,000 posts whose views grow over time, and the analysis's rules."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.insights.analysis import Options, PostFigures, analyse, slot_label
from tests.insights_helpers import add_usage, hours_ago, publish, run_scenario, scenario_toml
from tests.publish_helpers import write_config

runner = CliRunner()


def test_on_2000_growing_posts_insights_names_the_better_donor_and_slot_with_figures(rt, clock):
    write_config(rt.settings.home, scenario_toml())
    run_scenario(rt, clock)
    assert rt.store.scalar("SELECT COUNT(*) FROM insight_items") == 2000
    assert rt.store.scalar("SELECT COUNT(*) FROM insight_items WHERE views_24h IS NULL") == 0

    result = runner.invoke(app, ["insights", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["posts"] == report["measured"] == 2000
    donors = {d["source"]: d for d in report["donors"]}
    assert donors["@donor_b"]["posts"] == 500 and donors["@donor_b"]["suggestion"] == "keep"
    assert donors["@donor_b"]["ratio"] > 1.4 and all(donors[d]["ratio"] < 1 for d in donors if d != "@donor_b")
    slots = {s["label"]: s for s in report["slots"]}
    assert set(slots) == {"Mon 09:00", "Wed 13:00", "Fri 18:00"}  # in the route's time zone (Berlin, UTC+1)
    assert {a["better"] for a in report["better_slots"]} == {"Wed 13:00"}
    assert {a["worse"] for a in report["better_slots"]} == {"Mon 09:00", "Fri 18:00"}
    assert all(a["ratio"] >= 1.3 for a in report["better_slots"])
    (target,) = report["targets"]
    assert target["subscribers"][0]["subscribers"] == 5037 and target["subscribers_change"] == 37 * 11

    result = runner.invoke(app, ["insights"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    b = donors["@donor_b"]
    assert (
        f"Best donor of news → telegram:@mychan: @donor_b, median {b['median_views_24h']:,.0f} views at 24 h "
        f"over 500 posts = {b['ratio']:.2f}× the route's {b['route_median']:,.0f}"
    ) in text
    wed = slots["Wed 13:00"]
    assert "Wed 13:00 gets" in text and f"(median {wed['median_views_24h']:,.0f} over {wed['posts']} posts" in text
    assert "move posts from Mon 09:00 to Wed 13:00" in text
    assert max(len(line) for line in result.output.splitlines()) <= 80

    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["insights", "--csv"]).output)))
    donor_rows = {r["name"]: r for r in rows if r["section"] == "donor"}
    assert donor_rows["@donor_b"]["suggestion"] == "keep" and donor_rows["@donor_b"]["posts"] == "500"
    assert any(r["section"] == "better_slot" and r["name"] == "Mon 09:00 -> Wed 13:00" for r in rows)


def test_insights_fetch_enqueues_a_round_on_the_maintenance_queue(rt):
    result = runner.invoke(app, ["insights", "fetch", "--json"])
    assert result.exit_code == 0, result.output
    job = rt.store.one("SELECT * FROM jobs WHERE id = ?", (json.loads(result.output)["job_id"],))
    assert job is not None and job["kind"] == "insights" and job["queue"] == "maintenance"
    assert json.loads(job["payload"])["round"] == json.loads(result.output)["round"]


def test_bad_options_say_what_to_give(rt):
    for args, message in (
        (["--days", "0"], "--days 0: give 1 to 3650 days"),
        (["--route", "nope"], "unknown route 'nope' (routes: none configured)"),
        (["--json", "--csv"], "give --json or --csv, not both"),
        (["--min-posts", "0"], "--min-posts 0: give at least 1"),
        (["fetch", "--days", "400"], "--days 400: give 1 to 365"),
    ):
        result = runner.invoke(app, ["insights", *args])
        assert result.exit_code != 0 and str(result.exception) == message


def test_without_figures_insights_says_how_to_collect_them(rt):
    publish(rt, hours_ago(2))
    result = runner.invoke(app, ["insights"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "run `contentq insights fetch` hourly" in " ".join(result.output.split())


# -- the analysis's rules -----------------------------------------------------------------------------

BASE = datetime(2030, 1, 7, 9, tzinfo=UTC)


def post(i: int, views: float | None, *, source: str = "@a", slot: int = 9, cost: float = 0.0,
         rewriter: str = "none", route: str = "news", days: float = 0) -> PostFigures:  # fmt: skip
    return PostFigures(i, route, "telegram:@c", source, rewriter, BASE + timedelta(days=days, minutes=i), slot,
                       views, views and views * 0.02, views and views * 0.05, llm_cost=cost)  # fmt: skip


def test_no_suggestion_rests_on_fewer_posts_than_the_minimum():
    posts = [post(i, 1000, source="@a", slot=9) for i in range(10)]
    posts += [post(100 + i, 3000, source="@b", slot=33) for i in range(9)]  # 9 posts: one short
    report = analyse(posts, options=Options(min_posts=10))
    donors = {d.source: d for d in report.donors}
    assert (
        donors["@b"].suggestion == "too few posts" and "9 posts measured; a suggestion needs 10" in donors["@b"].reason
    )
    assert report.better_slots == []
    report = analyse(posts, options=Options(min_posts=9))
    assert [(a.better, a.worse, a.better_posts, a.worse_posts) for a in report.better_slots] == [
        ("Tue 09:00", "Mon 09:00", 9, 10)
    ]


def test_a_slot_under_the_ratio_is_not_suggested_and_a_weak_donor_is():
    posts = [post(i, 1000, source="@a", slot=9) for i in range(10)]
    posts += [post(20 + i, 1250, source="@a", slot=10) for i in range(10)]  # 1.25×: not enough
    posts += [post(40 + i, 500, source="@weak", slot=11) for i in range(10)]
    report = analyse(posts)
    assert [a.worse for a in report.better_slots] == ["Mon 11:00"]  # 1,250 / 500
    weak = next(d for d in report.donors if d.source == "@weak")
    assert weak.suggestion == "drop" and weak.ratio == pytest.approx(0.5)
    assert any(f.startswith("Drop @weak from news") for f in report.findings)


def test_posts_without_figures_at_24h_count_as_posts_but_not_in_medians():
    report = analyse([post(1, 100), post(2, None), post(3, 300)])
    (target,) = report.targets
    assert (target.posts, target.measured, target.median_views_24h) == (3, 2, 200)
    assert target.forwards_per_view == pytest.approx(0.02) and target.reactions_per_view == pytest.approx(0.05)


def test_llm_cost_per_post_and_per_1000_views_side_by_side_with_clean():
    posts = [post(i, 2000, rewriter="llm", cost=0.01, route="ai") for i in range(10)]
    posts += [post(20 + i, 1000, rewriter="clean", route="plain") for i in range(10)]
    report = analyse(posts)
    llm = next(r for r in report.rewriters if r.rewriter == "llm")
    assert llm.cost_per_post == pytest.approx(0.01) and llm.cost_per_1000_views == pytest.approx(0.005)
    clean = next(r for r in report.rewriters if r.rewriter == "clean")
    assert clean.llm_cost == 0 and clean.cost_per_1000_views == 0
    assert any("LLM rewrite: $0.0100 per published post, $0.0050 per 1,000 views (10 posts)" in f
               and "clean 1,000 (10 posts)" in f for f in report.findings)  # fmt: skip


def test_best_and_worst_of_the_week_rank_against_the_target_median_with_donor_slot_and_link():
    posts = [post(i, 1000 + i, source=f"@d{i % 2}") for i in range(10)]
    posts.append(post(50, 9000, days=-10))  # older than the week: not named
    report = analyse(posts, options=Options(now=BASE + timedelta(days=1)))
    assert [p.post_id for p in report.best] == [9, 8, 7] and [p.post_id for p in report.worst] == [0, 1, 2]
    assert report.best[0].source == "@d1" and report.best[0].slot == slot_label(9) == "Mon 09:00"


def test_the_llm_cost_of_a_post_is_read_with_its_figures(rt, clock):
    write_config(rt.settings.home, scenario_toml())
    post_id, _ = publish(rt, hours_ago(30), rewriter="llm")
    add_usage(rt, post_id, "news", 0.004)
    add_usage(rt, post_id, "news", 0.001)
    from contentq.store.insights import sync_items

    assert sync_items(rt.store, "2000-01-01") == 1
    assert rt.store.scalar("SELECT llm_cost FROM insight_items") == pytest.approx(0.005)
