"""Cost budgets hold: a route with a budget of 50 cents a day stops at it (within one post), the admin hears once
at 80 % and once at 100 %, the posts left wait with the reason on them and their jobs, and they are rewritten
when the next day begins. Under on_budget = "clean" the clean rewriter takes over; images count in budgets
and in `usage`.

The real OpenAI SDK against llmock (and tests/image_api.py for images), real Valkey and SQLite, the jobs in an
in-process worker, and the clock moved with time-machine (the `clock` fixture starts it at 2030-01-01 00:00 UTC).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.errors import ConfigError
from contentq.images.service import request_image
from contentq.rewrite.budget import period_bounds
from contentq.rewrite.usage import record_usage
from contentq.routes import parse_routes
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import enqueue
from contentq.runtime.worker import run_worker
from contentq.settings import load_settings
from contentq.store.jobs import get_job
from tests.conftest import drain
from tests.image_api import ImageAPI
from tests.rewrite_helpers import add_post, answer, make_rt, post, rewrite_job, write_routes

TEXT = "Frobnicator {n} ships today with a faster parser and half the memory use of the version before it."
ANSWER = "Frobnicator ships today: a faster parser, and it needs half the memory of the version before."

PRICES = {"openai_price_in_per_1m": 120.0, "openai_price_out_per_1m": 480.0}
"""Dear enough that a handful of posts spend 50 cents (llmock counts a few hundred prompt tokens per post)."""


def add_budget(home: Path, body: str, *, overall: str = "") -> None:
    with (home / "contentq.toml").open("a", encoding="utf-8") as f:
        f.write(f"\n[routes.news.budget]\n{body}\n" + (f"\n[budget]\n{overall}\n" if overall else ""))


@pytest.fixture
def budget_rt(
    home: Path, llmock: Any, rewritten_calls: list[int], clock: time_machine.Coordinates
) -> Iterator[Runtime]:
    write_routes(home)
    llmock.reply(answer(ANSWER), times=None)
    runtime = make_rt(home, llmock, **PRICES)
    yield runtime
    runtime.close()


def spent(rt: Runtime, since: str = "2030-01-01", until: str = "2030-01-02") -> float:
    return float(rt.store.scalar("SELECT COALESCE(SUM(cost), 0) FROM usage WHERE at >= ? AND at < ?", (since, until)))


def budget_alerts(rt: Runtime) -> list[dict[str, Any]]:
    return rt.store.query("SELECT key, level, message FROM notifications WHERE key LIKE 'budget:%' ORDER BY id")


def test_a_route_stops_at_50_cents_a_day_alerts_once_at_80_and_100_percent_and_resumes_the_next_day(
    budget_rt: Runtime, home: Path, clock: time_machine.Coordinates
) -> None:
    rt = budget_rt
    add_budget(home, 'daily = 0.50\non_budget = "wait"')
    ids = [add_post(rt, TEXT.format(n=n)) for n in range(13)]
    jobs = {post_id: rewrite_job(rt, post_id) for post_id in ids}
    run_worker(rt, ["rewrite"], burst=True)  # every job once: the budget's wait is a reschedule for tomorrow

    costs = {r["post_id"]: r["cost"] for r in rt.store.query("SELECT post_id, cost FROM usage ORDER BY id")}
    done = [i for i in ids if post(rt, i)["state"] == "rewritten"]
    waiting = [i for i in ids if i not in done]
    assert done == ids[: len(done)] and len(costs) == len(done) and waiting  # in order, one call each
    # Stopped at the budget: the last post rewritten crossed 50 cents, the one before had not.
    day_one = spent(rt)
    assert day_one >= 0.50 > day_one - costs[done[-1]]
    assert len(done) >= 3 and max(costs.values()) < 0.2

    # The posts left wait with the reason, and their jobs are rescheduled for the day's end, no try spent.
    for post_id in waiting:
        row = post(rt, post_id)
        assert row["state"] == "collected"
        assert "route news has spent $" in row["state_reason"] and "daily budget of $0.50" in row["state_reason"]
        assert "rewrites wait until 2030-01-02 00:00 UTC" in row["state_reason"]
        job = get_job(rt.store, jobs[post_id])
        assert job["status"] == "queued" and job["reschedules"] == 1 and "daily budget" in job["retry_reason"]
        assert job["next_retry_at"].startswith("2030-01-02T00:00:0")
        events = [e["event"] for e in rt.store.query("SELECT event FROM job_events WHERE job_id = ?", (job["id"],))]
        assert "budget_wait" in events

    # One alert at 80 %, one at 100 %, however many posts met the spent budget.
    alerts = budget_alerts(rt)
    assert [a["key"] for a in alerts] == ["budget:route:news:day:2030-01-01:80", "budget:route:news:day:2030-01-01:100"]
    assert "budget at 8" in alerts[0]["message"] or "budget at 9" in alerts[0]["message"]
    assert alerts[1]["level"] == "error" and "budget spent: route news has spent" in alerts[1]["message"]
    runner = CliRunner()
    shown = runner.invoke(app, ["usage"], env={"COLUMNS": "80"}).output
    assert all(len(line) <= 80 for line in shown.splitlines())
    budgets = json.loads(runner.invoke(app, ["usage", "--json"], env={"COLUMNS": "200"}).output)["budgets"]
    assert budgets == [{"budget": "route news", "period": "day", "limit": 0.5, "spent": pytest.approx(day_one),
                        "share": pytest.approx(day_one / 0.5, abs=1e-4), "on_budget": "wait", "state": "spent",
                        "ends_at": "2030-01-02T00:00:00.000+00:00"}]  # fmt: skip
    assert "budgets (this period)" in shown and f"{day_one:.2f} / 0.50" in shown

    before = len(rt.store.query("SELECT id FROM usage"))
    run_worker(rt, ["rewrite"], burst=True)  # nothing is due before midnight: nothing is called
    assert len(rt.store.query("SELECT id FROM usage")) == before and len(budget_alerts(rt)) == 2

    # The next day: the rescheduled jobs come due and the waiting posts are rewritten.
    clock.move_to(datetime(2030, 1, 2, 0, 0, 5, tzinfo=UTC))
    run_worker(rt, ["rewrite"], burst=True)
    assert all(post(rt, i)["state"] == "rewritten" for i in waiting)
    assert spent(rt, "2030-01-02", "2030-01-03") < 0.50
    assert len(budget_alerts(rt)) == 2  # a new day under 80 %: no alert


def test_on_budget_clean_rewrites_with_the_clean_rewriter_once_the_budget_is_spent(
    budget_rt: Runtime, home: Path
) -> None:
    rt = budget_rt
    add_budget(home, "daily = 0.50", overall='on_budget = "clean"')  # the route takes the [budget] default
    ids = [add_post(rt, TEXT.format(n=n) + "\n\nSubscribe to @donor") for n in range(12)]
    for post_id in ids:
        rewrite_job(rt, post_id)
    drain(rt, "rewrite")
    rows = [post(rt, i) for i in ids]
    assert all(r["state"] == "rewritten" for r in rows)  # nobody waits
    by_llm = [r for r in rows if r["rewriter"] == "llm"]
    by_clean = [r for r in rows if r["rewriter"] == "clean"]
    assert by_llm and by_clean and rows[: len(by_llm)] == by_llm
    assert spent(rt) >= 0.50 and len(rt.store.query("SELECT id FROM usage")) == len(by_llm)
    for row in by_clean:
        assert row["state_reason"].startswith("rewritten by the clean rewriter: route news has spent $")
        assert "@donor" not in row["rewrite_html"] and "Frobnicator" in row["rewrite_html"]  # cleaned, not copied
    assert [a["key"][-3:] for a in budget_alerts(rt)] == [":80", "100"]


def test_the_overall_budget_stops_every_route(budget_rt: Runtime, home: Path) -> None:
    rt = budget_rt
    add_budget(home, "monthly = 100", overall="daily = 0.20")
    ids = [add_post(rt, TEXT.format(n=n)) for n in range(8)]
    for post_id in ids:
        rewrite_job(rt, post_id)
    run_worker(rt, ["rewrite"], burst=True)
    waiting = [post(rt, i) for i in ids if post(rt, i)["state"] == "collected"]
    assert waiting and spent(rt) >= 0.20
    assert "all routes have spent" in waiting[0]["state_reason"] and "overall daily budget of $0.20" in waiting[0][
        "state_reason"]  # fmt: skip
    alerts = budget_alerts(rt)
    assert [a["key"] for a in alerts][-1] == "budget:all:day:2030-01-01:100"
    assert "every route's paid calls stop until 2030-01-02 00:00 UTC" in alerts[-1]["message"]


def test_images_count_in_usage_and_in_the_budget(
    home: Path, image_api: ImageAPI, clock: time_machine.Coordinates, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentq.flow import pipeline

    monkeypatch.setattr(pipeline, "on_image_done", lambda runtime, post_id, ok: "recorded")
    write_routes(home, images="required", image_backend="openai")
    add_budget(home, 'daily = 0.10\non_budget = "clean"')
    settings = load_settings(home=home, openai_base_url=image_api.base_url, openai_api_key="sk-test-images",
                             worker_maintenance_interval=1)  # fmt: skip
    rt = Runtime(settings)
    set_process_runtime(rt)
    try:
        ids = [add_post(rt, f"Post {n}", state="rewritten", image_prompt="a red fox in snow", title=f"Fox {n}")
               for n in range(4)]  # fmt: skip
        image_jobs = []
        for post_id in ids:
            image_jobs.append(str(request_image(rt, post_id)["id"]))
            drain(rt, "imagegen")
        # gpt-image-1, medium, 1024x1024 (the defaults): $0.042 each; the third passes 10 cents, the fourth is a card.
        rows = rt.store.query("SELECT * FROM usage ORDER BY id")
        assert [(r["kind"], r["model"], r["images"], r["detail"]) for r in rows] == [
            ("image", "gpt-image-1", 1, "1024x1024 medium")
        ] * 3
        assert [r["cost"] for r in rows] == [pytest.approx(0.042)] * 3
        assert len(image_api.requests) == 3
        media = rt.store.query("SELECT post_id, backend FROM media WHERE origin = 'generated' ORDER BY post_id")
        assert [(m["post_id"], m["backend"]) for m in media] == [*((i, "openai") for i in ids[:3]), (ids[3], "card")]
        card_job = get_job(rt.store, image_jobs[3])
        events = rt.store.query("SELECT event, message FROM job_events WHERE job_id = ?", (card_job["id"],))
        assert any(e["event"] == "budget_card" and "daily budget of $0.10" in e["message"] for e in events)

        runner = CliRunner()
        data = json.loads(runner.invoke(app, ["usage", "--json"], env={"COLUMNS": "200"}).output)
        assert data["total"]["images"] == 3 and data["total"]["image_cost"] == pytest.approx(0.126)
        assert data["total"]["calls"] == 0 and data["total"]["cost"] == pytest.approx(0.126)
        out = runner.invoke(app, ["usage"], env={"COLUMNS": "80"}).output
        assert "images: 3 for $0.1260" in out and "0.1260" in out
    finally:
        rt.close()


def test_periods_begin_at_midnight_and_on_the_first_in_the_budget_time_zone() -> None:
    instant = datetime(2030, 3, 31, 22, 30, tzinfo=UTC)  # 2030-04-01 00:30 in Berlin (summer time)
    start, end = period_bounds(instant, "day", "Europe/Berlin")
    assert (start.isoformat(), end.isoformat()) == ("2030-04-01T00:00:00+02:00", "2030-04-02T00:00:00+02:00")
    start, end = period_bounds(instant, "month", "Europe/Berlin")
    assert (start.isoformat(), end.isoformat()) == ("2030-04-01T00:00:00+02:00", "2030-05-01T00:00:00+02:00")
    start, end = period_bounds(datetime(2030, 3, 31, 12, tzinfo=UTC), "day", "Europe/Berlin")  # a 23-hour day
    assert (start.isoformat(), end.isoformat()) == ("2030-03-31T00:00:00+01:00", "2030-04-01T00:00:00+02:00")
    start, end = period_bounds(datetime(2030, 12, 31, 12, tzinfo=UTC), "month", "UTC")
    assert end == datetime(2031, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("[routes.a.budget]\ndaily = -1", "route 'a': budget.daily: Input should be greater than 0"),
        ("[routes.a.budget]\non_budget = \"stop\"", "on_budget"),
        ("[budget]\ntimezone = \"Mars/Olympus\"", "unknown time zone"),
        ("[budget]\ndayly = 5", "dayly"),
    ],
)  # fmt: skip
def test_a_bad_budget_is_refused_with_what_is_wrong(body: str, says: str) -> None:
    import tomllib

    data = tomllib.loads('[routes.a]\ntarget = "@t"\nsources = ["@s"]\n' + body)
    with pytest.raises(ConfigError, match=says):
        parse_routes(data)


def test_an_auto_post_waits_for_the_next_day_even_under_clean(
    home: Path, llmock: Any, clock: time_machine.Coordinates
) -> None:
    (home / "contentq.toml").write_text(
        '[routes.tips]\ntarget = "@mychan"\napproval = true\n\n[routes.tips.generate]\n'
        'topic = "A practical Linux tip."\ntimes = ["08:00"]\n\n'
        '[routes.tips.budget]\ndaily = 0.01\non_budget = "clean"\n',
        encoding="utf-8",
    )
    rt = make_rt(home, llmock)
    try:
        rt.store.execute(  # spent already today (an earlier call of the route)
            "INSERT INTO usage (at, route, model, tokens_in, tokens_out, cost)"
            " VALUES (?, 'tips', 'gpt-4o-mini', 1, 1, 0.02)",
            ("2030-01-01T00:00:01.000+00:00",),
        )
        job = enqueue(rt, "generate", "tips", {"route": "tips", "due": "2030-01-01T08:00:00.000+00:00"})
        run_worker(rt, ["rewrite"], burst=True)
        assert llmock.requests == []  # the gate stopped the model call
        row = get_job(rt.store, str(job["id"]))
        assert row["status"] == "queued" and "auto-posts wait until 2030-01-02 00:00 UTC" in row["retry_reason"]
        (written,) = rt.store.query("SELECT state FROM posts WHERE source = 'generate:tips'")
        assert written["state"] == "rewriting"  # its post waits for the generate job's next run
    finally:
        rt.close()


def test_a_batch_route_over_its_budget_waits_instead_of_joining_a_batch(budget_rt: Runtime, home: Path) -> None:
    # A batch line is paid for when the batch runs: the gate stands before a post joins one, not after.
    rt = budget_rt
    routes = home / "contentq.toml"
    routes.write_text(routes.read_text().replace("[routes.news]\n", '[routes.news]\nrewrite_mode = "batch"\n', 1))
    add_budget(home, 'daily = 0.50\non_budget = "wait"')
    record_usage(rt.store, rt.settings, post_id=None, route="news", job_id=None, model="gpt-4o-mini",
                 tokens_in=5_000, tokens_out=0)  # fmt: skip
    assert spent(rt) >= 0.50
    post_id = add_post(rt, TEXT.format(n=1))
    job_id = rewrite_job(rt, post_id)
    run_worker(rt, ["rewrite"], burst=True)

    assert rt.store.query("SELECT id FROM batch_items") == []
    row = post(rt, post_id)
    assert row["state"] == "collected" and "daily budget of $0.50" in row["state_reason"]
    job = get_job(rt.store, job_id)
    assert job["status"] == "queued" and job["reschedules"] == 1
    events = [e["event"] for e in rt.store.query("SELECT event FROM job_events WHERE job_id = ?", (job_id,))]
    assert "budget_wait" in events


def test_batch_lines_not_yet_answered_count_against_the_budget(budget_rt: Runtime, home: Path) -> None:
    # A batch's cost reaches `usage` only when its posts' child jobs take the answers, up to a day later: until
    # then each line's estimate counts, so a route does not put more into batches than its budget allows.
    rt = budget_rt
    routes = home / "contentq.toml"
    routes.write_text(routes.read_text().replace("[routes.news]\n", '[routes.news]\nrewrite_mode = "batch"\n', 1))
    add_budget(home, 'daily = 0.50\non_budget = "wait"')
    ids = [add_post(rt, TEXT.format(n=n) * 20) for n in range(30)]
    for post_id in ids:
        rewrite_job(rt, post_id)
    run_worker(rt, ["rewrite"], burst=True)  # the batch's own job waits to gather: not due in this burst

    lines = rt.store.query("SELECT post_id, estimate FROM batch_items WHERE status = 'queued' ORDER BY id")
    batched = [r["post_id"] for r in lines]
    assert batched and batched == ids[: len(batched)] and len(batched) < len(ids)
    estimates = [r["estimate"] for r in lines]
    assert all(e > 0 for e in estimates)
    assert sum(estimates) >= 0.50 > sum(estimates) - estimates[-1]  # stopped at the budget, within one post
    assert rt.store.query("SELECT id FROM usage") == []  # nothing answered yet: the estimates alone held it
    for post_id in ids[len(batched) :]:
        row = post(rt, post_id)
        assert row["state"] == "collected" and "daily budget of $0.50" in row["state_reason"]
