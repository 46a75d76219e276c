"""Slots per route: across days, days of the week, time zones, DST changes, max per day, gaps, age, asap;
two posts never get one slot; `contentq schedule` / `unschedule`."""

from __future__ import annotations

import functools
import json
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, parse
from contentq.errors import ContentqError
from contentq.flow import pipeline
from contentq.flow import schedule as schedule_module
from contentq.flow.schedule import (
    ASAP_SPACING,
    HORIZON_DAYS,
    first_free,
    local_day,
    local_times,
    next_local_midnight,
    parse_at,
)
from contentq.routes import DAYS, Schedule
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime
from contentq.store.posts import get_post
from tests.publish_helpers import add_post, route_toml, write_config

MON = datetime(2030, 1, 7, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC


def schedule_n(rt: Runtime, n: int, current: datetime, **post: object) -> list[datetime]:
    slots = []
    for _ in range(n):
        post_id = add_post(rt, **post)  # type: ignore[arg-type]
        slot = pipeline.schedule_post(rt, post_id, current=current, dispatch=False)
        assert slot is not None
        assert parse(get_post(rt.store, post_id)["scheduled_at"]) == slot
        slots.append(slot)
    return slots


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_slots_fill_across_days_with_max_per_day(rt, home):
    write_config(home, route_toml(schedule='slots = ["09:00", "18:00", "12:00"]\nmax_per_day = 2'))
    slots = schedule_n(rt, 5, MON)
    # Monday 09:00 has passed; 12:00 and 18:00 are left today, then two a day.
    assert slots == [
        utc(2030, 1, 7, 12), utc(2030, 1, 7, 18),
        utc(2030, 1, 8, 9), utc(2030, 1, 8, 12),
        utc(2030, 1, 9, 9),
    ]  # fmt: skip


def test_days_of_week_are_respected(rt, home):
    write_config(home, route_toml(schedule='slots = ["09:00"]\ndays = ["mon", "thu"]'))
    slots = schedule_n(rt, 3, MON)
    assert slots == [utc(2030, 1, 10, 9), utc(2030, 1, 14, 9), utc(2030, 1, 17, 9)]
    assert [s.strftime("%a") for s in slots] == ["Thu", "Mon", "Thu"]


def test_slots_are_wall_clock_times_in_the_route_time_zone(rt, home):
    write_config(
        home,
        route_toml("tokyo", schedule='slots = ["09:00"]\ntimezone = "Asia/Tokyo"')
        + route_toml(
            "ny", target="@ny", sources='["@donor2"]', schedule='slots = ["09:00"]\ntimezone = "America/New_York"'
        ),
    )
    # Monday 10:00 UTC is Monday 19:00 in Tokyo (09:00 passed) and Monday 05:00 in New York.
    assert schedule_n(rt, 2, MON, route="tokyo") == [utc(2030, 1, 8, 0), utc(2030, 1, 9, 0)]
    assert schedule_n(rt, 2, MON, route="ny") == [utc(2030, 1, 7, 14), utc(2030, 1, 8, 14)]


def test_dst_change_keeps_the_local_time(rt, home):
    """Europe/Berlin moves to summer time on Sunday 2030-03-31: 09:00 local is 08:00 UTC before, 07:00 after."""
    write_config(home, route_toml(schedule='slots = ["09:00"]\ntimezone = "Europe/Berlin"'))
    slots = schedule_n(rt, 3, utc(2030, 3, 29, 12))
    assert slots == [utc(2030, 3, 30, 8), utc(2030, 3, 31, 7), utc(2030, 4, 1, 7)]


def test_dst_gap_and_repeated_hour(rt, home):
    """02:30 does not exist on 2030-03-31 in Berlin (moves to 03:30 CEST), and happens twice on 2030-10-27
    (the first one is taken); a 03:30 slot on the spring day is the same instant: one slot, not two."""
    write_config(
        home,
        route_toml("spring", schedule='slots = ["02:30", "03:30"]\ntimezone = "Europe/Berlin"')
        + route_toml(
            "autumn", target="@a", sources='["@donor2"]', schedule='slots = ["02:30"]\ntimezone = "Europe/Berlin"'
        ),
    )
    spring = schedule_n(rt, 2, utc(2030, 3, 30, 23), route="spring")
    assert spring == [utc(2030, 3, 31, 1, 30), utc(2030, 4, 1, 0, 30)]
    autumn = schedule_n(rt, 2, utc(2030, 10, 26, 12), route="autumn")
    assert autumn == [utc(2030, 10, 27, 0, 30), utc(2030, 10, 28, 1, 30)]


def test_min_gap_and_min_age(rt, home):
    write_config(
        home,
        route_toml(schedule='slots = ["09:00", "09:30", "10:00", "11:00"]\nmin_gap_minutes = 60\nmin_age_minutes = 90'),
    )
    current = utc(2030, 1, 7, 7)
    # The donor posted at 07:45: not before 09:15, so 09:30 is the first slot; then 10:00 is too close.
    slots = schedule_n(rt, 2, current, posted_at=iso(utc(2030, 1, 7, 7, 45)))
    assert slots == [utc(2030, 1, 7, 9, 30), utc(2030, 1, 7, 11)]


def test_asap_posts_get_distinct_times_and_honour_the_gap(rt, home):
    write_config(
        home,
        route_toml("fast")
        + route_toml("spaced", target="@s", sources='["@donor2"]', schedule="asap = true\nmin_gap_minutes = 10"),
    )
    fast = schedule_n(rt, 3, MON, route="fast")
    assert fast[0] == MON and len(set(fast)) == 3
    spaced = schedule_n(rt, 3, MON, route="spaced")
    assert spaced == [MON, MON + timedelta(minutes=10), MON + timedelta(minutes=20)]


def test_two_posts_never_get_one_slot_when_scheduled_at_once(rt, home, settings):
    """Eight workers (own SQLite connections) schedule eight posts at the same moment."""
    write_config(home, route_toml(schedule='slots = ["09:00", "12:00", "15:00", "18:00"]'))
    ids = [add_post(rt) for _ in range(8)]
    barrier = threading.Barrier(len(ids))
    results: dict[int, datetime | None] = {}
    errors: list[BaseException] = []

    def work(post_id: int) -> None:
        runtime = Runtime(settings)
        try:
            barrier.wait()
            results[post_id] = pipeline.schedule_post(runtime, post_id, current=MON, dispatch=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            runtime.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    slots = sorted(s for s in results.values() if s is not None)
    assert len(slots) == 8 and len(set(slots)) == 8
    assert slots[0] == utc(2030, 1, 7, 12) and slots[-1] == utc(2030, 1, 9, 9)


def test_no_slot_at_all_is_a_clear_error(rt, home, monkeypatch):
    # max_per_day = 0 (no slot ever) is refused when the routes are read; a full horizon is the remaining case.
    write_config(home, route_toml(schedule='slots = ["09:00"]\nmax_per_day = 0'))
    with pytest.raises(ContentqError, match=r"schedule.max_per_day: Input should be greater than or equal to 1"):
        routes_config(rt)
    write_config(home, route_toml(schedule='slots = ["09:00"]\nmax_per_day = 1'))
    monkeypatch.setattr(schedule_module, "local_times", functools.partial(schedule_module.local_times, horizon_days=3))
    post_ids = [add_post(rt) for _ in range(6)]
    with pytest.raises(ContentqError, match="no free publishing slot"):
        for post_id in post_ids:
            pipeline.schedule_post(rt, post_id, current=MON, dispatch=False)
    assert get_post(rt.store, post_ids[-1])["state"] == "rewritten"


def test_parse_at_forms():
    current = utc(2030, 1, 7, 10)
    assert parse_at("now", "UTC", current) == current
    assert parse_at("+2h", "UTC", current) == utc(2030, 1, 7, 12)
    assert parse_at("30m", "UTC", current) == utc(2030, 1, 7, 10, 30)
    assert parse_at("18:30", "Europe/Berlin", current) == utc(2030, 1, 7, 17, 30)
    assert parse_at("09:00", "UTC", current) == utc(2030, 1, 8, 9)  # passed today: tomorrow
    assert parse_at("2030-07-01 09:00", "Europe/Berlin", current) == utc(2030, 7, 1, 7)
    assert parse_at("2030-07-01T09:00Z", "Europe/Berlin", current) == utc(2030, 7, 1, 9)
    with pytest.raises(ContentqError, match="not a time"):
        parse_at("tomorrowish", "UTC", current)


def test_cli_schedule_at_list_and_unschedule(rt, home, clock):
    write_config(home, route_toml(schedule='slots = ["09:00"]\ntimezone = "Europe/Berlin"'))
    post_id = add_post(rt)
    runner = CliRunner()
    result = runner.invoke(app, ["schedule", str(post_id), "--at", "2030-07-01 18:30"])
    assert result.exit_code == 0, result.output
    post = get_post(rt.store, post_id)
    assert post["state"] == "scheduled" and post["scheduled_at"] == iso(utc(2030, 7, 1, 16, 30))

    listed = runner.invoke(app, ["schedule", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert [p["id"] for p in data["posts"]] == [post_id]
    assert data["posts"][0]["local_time"] == "2030-07-01 18:30:00 CEST"
    assert data["routes"][0]["schedule"].startswith("09:00 (Europe/Berlin")

    table = runner.invoke(app, ["schedule", "list"])
    assert table.exit_code == 0 and str(post_id) in table.output

    result = runner.invoke(app, ["unschedule", str(post_id)])
    assert result.exit_code == 0, result.output
    post = get_post(rt.store, post_id)
    assert post["state"] == "awaiting_approval" and post["scheduled_at"] is None

    result = runner.invoke(app, ["unschedule", str(post_id)])
    assert result.exit_code != 0


def test_schedule_at_bad_time_is_an_error(rt, home):
    write_config(home, route_toml(schedule='slots = ["09:00"]'))
    post_id = add_post(rt)
    result = CliRunner().invoke(app, ["schedule", str(post_id), "--at", "sometime"])
    assert result.exit_code != 0
    assert "not a time" in str(result.exception) + result.output


def test_schedule_and_generate_config_errors_name_the_field():
    from contentq.errors import ConfigError
    from contentq.routes import parse_routes

    with pytest.raises(ConfigError, match=r"route 'r': schedule.days: give at least one day"):
        parse_routes(
            {"routes": {"r": {"target": "@a", "sources": ["@b"], "schedule": {"slots": ["09:00"], "days": []}}}}
        )
    with pytest.raises(ConfigError, match=r"schedule.timezone: unknown time zone 'Mars/Base'"):
        parse_routes(
            {"routes": {"r": {"target": "@a", "sources": ["@b"], "schedule": {"asap": True, "timezone": "Mars/Base"}}}}
        )
    with pytest.raises(ConfigError, match=r"generate.times"):
        parse_routes({"routes": {"r": {"target": "@a", "generate": {"topic": "x", "times": []}}}})


def test_a_time_in_the_past_is_refused_and_nothing_is_scheduled(rt, home):
    write_config(home, route_toml(schedule='slots = ["09:00"]\ntimezone = "Europe/Berlin"'))
    post_id = add_post(rt)
    result = CliRunner().invoke(app, ["schedule", str(post_id), "--at", "2020-01-01 09:00"])
    assert result.exit_code != 0
    assert "in the past" in str(result.exception) + result.output
    assert get_post(rt.store, post_id)["state"] == "rewritten"
    with pytest.raises(ContentqError, match="in the past"):
        parse_at("2030-01-07T09:00Z", "UTC", MON)
    assert parse_at("now", "UTC", MON) == MON  # 'now' is the one way to publish at once


def test_a_local_time_in_the_dst_gap_is_moved_and_the_output_says_so(rt, home, clock):
    write_config(home, route_toml(schedule='slots = ["09:00"]\ntimezone = "Europe/Berlin"'))
    post_id = add_post(rt)
    result = CliRunner().invoke(app, ["schedule", str(post_id), "--at", "2030-03-31 02:30"])
    assert result.exit_code == 0, result.output
    assert get_post(rt.store, post_id)["scheduled_at"] == iso(utc(2030, 3, 31, 1, 30))  # 03:30 CEST
    assert "does not exist" in result.output and "03:30 CEST" in result.output


def test_a_post_half_out_in_the_channel_cannot_be_edited_or_rescheduled(rt, home, monkeypatch):
    write_config(home, route_toml(schedule='slots = ["09:00"]'))
    post_id = add_post(rt, state="failed")
    rt.store.execute(
        "INSERT INTO sends (post_id, target, round, part, kind, random_id, random_ids, status, message_ids,"
        " created_at, updated_at) VALUES (?, '@mychan', 0, 0, 'media', 1, '[1]', 'sent', '[1001]', ?, ?)",
        (post_id, iso(), iso()),
    )
    runner = CliRunner()
    monkeypatch.setattr("click.edit", lambda *a, **kw: "changed text")
    result = runner.invoke(app, ["posts", "edit", str(post_id)])
    assert result.exit_code != 0
    message = str(result.exception) + result.output
    assert "in the channel already" in message and f"contentq posts reject {post_id}" in message
    assert get_post(rt.store, post_id)["rewrite_html"] == "Hello <b>world</b>"
    result = runner.invoke(app, ["schedule", str(post_id), "--at", "+1h"])
    assert result.exit_code != 0 and "in the channel already" in str(result.exception) + result.output
    assert get_post(rt.store, post_id)["state"] == "failed"
    # Once the round is over (the parts deleted, a new round), the post can be edited again.
    rt.store.execute("UPDATE posts SET publish_round = 1 WHERE id = ?", (post_id,))
    result = runner.invoke(app, ["posts", "edit", str(post_id)])
    assert result.exit_code == 0, result.output
    assert get_post(rt.store, post_id)["rewrite_html"] == "changed text"


def test_rules_list_says_which_section_is_missing(rt, home):
    write_config(home, route_toml())
    result = CliRunner().invoke(app, ["rules", "list"])
    assert result.exit_code == 0, result.output
    assert "no route has a [generate] section" in result.output


def _first_free_by_scan(sched: Schedule, taken: list[datetime], not_before: datetime) -> datetime | None:
    """The schedule's rule written as the plain scan it was: every taken instant looked at for every step."""
    gap = timedelta(minutes=sched.min_gap_minutes)
    counts: dict[object, int] = {}
    for instant in taken:
        counts[local_day(instant, sched.timezone)] = counts.get(local_day(instant, sched.timezone), 0) + 1

    def day_full(instant: datetime) -> bool:
        return sched.max_per_day is not None and counts.get(local_day(instant, sched.timezone), 0) >= sched.max_per_day

    if not sched.asap:
        for candidate in local_times(sched.slots, sched.days, sched.timezone, not_before):
            if day_full(candidate) or any(t == candidate or abs(t - candidate) < gap for t in taken):
                continue
            return candidate
        return None
    spacing = max(gap, ASAP_SPACING)
    candidate = not_before
    while candidate < not_before + timedelta(days=HORIZON_DAYS):
        if DAYS[candidate.astimezone(ZoneInfo(sched.timezone)).weekday()] not in sched.days or day_full(candidate):
            candidate = next_local_midnight(candidate, sched.timezone)
            continue
        conflicts = [t for t in taken if abs(t - candidate) < spacing]
        if conflicts:
            candidate = max(conflicts) + spacing
            continue
        return candidate
    return None


@examples(max_examples=300, deadline=None)
@given(
    asap=st.booleans(),
    offsets=st.lists(st.integers(min_value=-3000, max_value=20_000), max_size=60),
    gap=st.sampled_from([0, 1, 5, 30, 90]),
    per_day=st.sampled_from([None, 1, 3, 20]),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kathmandu"]),
    days=st.sampled_from([list(DAYS), ["mon", "wed"], ["sun"]]),
)
def test_first_free_finds_what_the_plain_scan_finds(asap, offsets, gap, per_day, zone, days):
    """The bisecting search gives the very instant a scan of every taken time gives, on random backlogs."""
    start = datetime(2030, 3, 30, 22, 17, tzinfo=UTC)  # a DST change in Berlin that night
    sched = Schedule(asap=asap, slots=[] if asap else ["09:00", "12:30", "18:45"], days=days, timezone=zone,
                     max_per_day=per_day, min_gap_minutes=gap)  # fmt: skip
    taken = sorted(start + timedelta(minutes=m) for m in offsets)
    assert first_free(sched, taken, start) == _first_free_by_scan(sched, taken, start)


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ("collected", "has no rewrite yet, so there is nothing to publish"),
        ("rewriting", "has no rewrite yet"),
        ("published", "is published already"),
        ("filtered", "is not to be published"),
    ],
)
def test_schedule_says_why_a_post_cannot_get_a_time_and_what_to_do(rt, home, state, says):
    write_config(home, route_toml(schedule='slots = ["09:00"]'))
    post_id = add_post(rt, state=state)
    result = CliRunner().invoke(app, ["schedule", str(post_id), "--at", "+2h"])
    assert result.exit_code == 1
    message = str(result.exception)
    assert message.startswith(f"post {post_id} is") and says in message, message
    assert "only posts not yet published" not in message
    if state == "collected":
        assert f"`contentq rewrite {post_id}`" in message
    assert get_post(rt.store, post_id)["state"] == state
