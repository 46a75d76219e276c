"""Insights fetch rounds: batched requests, flood waits, figures at 24 h, deleted messages, thinning by purge."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from telethon import errors

from contentq.clock import iso, now, parse
from contentq.errors import Reschedule
from contentq.insights.fetch import fetch_round, new_round
from contentq.ops.purge import purge
from contentq.runtime.tracking import enqueue
from contentq.runtime.worker import run_worker
from tests.insights_helpers import growing_telegram, hours_ago, publish, samples
from tests.publish_helpers import route_toml, write_config


@pytest.fixture
def channel(rt):  # type: ignore[no-untyped-def]
    write_config(rt.settings.home, route_toml())
    return growing_telegram(rt, "@mychan", subscribers=1500)


def _publish_many(rt, views, n: int, hours: float = 30.0) -> list[int]:  # type: ignore[no-untyped-def]
    mids = []
    for i in range(n):
        at = hours_ago(hours + i * 0.01)
        _, mid = publish(rt, at)
        views.add("@mychan", mid, at, 1000 + i)
        mids.append(mid)
    return mids


def test_a_round_reads_100_messages_per_request_and_the_subscribers_once(rt, channel):
    tg, views = channel
    _publish_many(rt, views, 250)
    publish(rt, now() - timedelta(days=20))  # older than the 14 days measured
    report = fetch_round(rt, new_round())
    calls = [c for c in tg.calls if c[0] in ("message_stats", "subscriber_count")]
    assert [len(c[1][1]) for c in calls if c[0] == "message_stats"] == [100, 100, 50]
    assert [c[0] for c in calls].count("subscriber_count") == 1
    assert (
        report.sampled == 250
        and report.requests == {"telegram": 4}
        and report.subscribers == {"telegram:@mychan": 1500}
    )
    first = samples(rt)[0]
    assert first["views"] > 0 and json.loads(first["reactions_json"]).keys() == {"👍", "🔥"}
    assert first["reactions"] == sum(json.loads(first["reactions_json"]).values())
    fetch_round(rt, new_round())  # a new round: a new sample of each
    assert len(samples(rt)) == 500
    assert rt.store.scalar("SELECT COUNT(*) FROM channel_samples") == 2


def test_a_flood_wait_mid_round_reschedules_and_the_round_loses_and_doubles_nothing(rt, channel):
    tg, views = channel
    mids = _publish_many(rt, views, 250)
    round_ = new_round()
    tg.fail_next("message_stats", None, errors.FloodWaitError(request=None, capture=300))
    with pytest.raises(Reschedule) as waited:
        fetch_round(rt, round_)
    assert waited.value.delay >= 300 and "FLOOD_WAIT of 300 s" in waited.value.reason
    assert len(samples(rt)) == 100  # the first batch is kept
    tg.calls.clear()
    fetch_round(rt, round_)  # the rescheduled run of the same round
    asked = [mid for c in tg.calls if c[0] == "message_stats" for mid in c[1][1]]
    assert sorted(asked) == sorted(mids[100:])  # only what was missing
    per_item = Counter(s["item_id"] for s in samples(rt))
    assert len(per_item) == 250 and set(per_item.values()) == {1}
    tg.calls.clear()
    assert fetch_round(rt, round_).sampled == 0  # once more: nothing left, nothing asked
    assert not [c for c in tg.calls if c[0] in ("message_stats", "subscriber_count")]
    assert rt.store.scalar("SELECT COUNT(*) FROM channel_samples") == 1


def test_a_flood_wait_before_the_subscriber_count_keeps_every_sample(rt, channel):
    tg, views = channel
    _publish_many(rt, views, 30)
    round_ = new_round()
    tg.fail_next("subscriber_count", errors.FloodWaitError(request=None, capture=120))
    with pytest.raises(Reschedule):
        fetch_round(rt, round_)
    assert len(samples(rt)) == 30 and not rt.store.scalar("SELECT COUNT(*) FROM channel_samples")
    fetch_round(rt, round_)
    assert len(samples(rt)) == 30 and rt.store.scalar("SELECT subscribers FROM channel_samples") == 1500


def test_the_telegram_job_reschedules_itself_on_a_flood_wait(rt, channel):
    tg, views = channel
    _publish_many(rt, views, 150)
    tg.fail_next("message_stats", None, errors.FloodWaitError(request=None, capture=600))
    job = enqueue(rt, "insights", "round", {"round": new_round()})
    run_worker(rt, ["maintenance"], burst=True)
    run_worker(rt, ["collect"], burst=True)  # the child: it stores a batch, then Telegram asks for a wait
    child = rt.store.one("SELECT * FROM jobs WHERE kind = 'insights_telegram'")
    assert child is not None and child["parent_id"] == job["id"] and child["queue"] == "collect"
    assert child["status"] == "queued" and child["reschedules"] == 1 and child["attempts"] <= 1
    events = rt.store.query("SELECT event, message FROM job_events WHERE job_id = ?", (child["id"],))
    assert any(e["event"] == "flood_wait" and "100 samples stored" in e["message"] for e in events)
    assert len(samples(rt)) == 100


def test_views_at_24_hours_are_interpolated_between_the_samples_around_that_age(rt, channel, clock):
    tg, views = channel
    start = now()
    _, mid = publish(rt, start)
    views.add("@mychan", mid, start, 1000)
    for hours in (20, 26, 30):
        clock.move_to(start + timedelta(hours=hours))
        fetch_round(rt, new_round())
    item = rt.store.one("SELECT * FROM insight_items")
    assert item is not None and item["samples"] == 3
    at_20 = views.views_at("@mychan", mid, start + timedelta(hours=20))
    at_26 = views.views_at("@mychan", mid, start + timedelta(hours=26))
    expected = at_20 + (at_26 - at_20) * 4 / 6
    assert item["views_24h"] == pytest.approx(expected, abs=1)
    assert item["views"] == views.views_at("@mychan", mid, start + timedelta(hours=30)) or item["views"] > at_26


def test_no_figure_at_24_hours_from_samples_too_far_apart(rt, channel, clock):
    tg, views = channel
    start = now()
    _, mid = publish(rt, start)
    views.add("@mychan", mid, start, 1000)
    clock.move_to(start + timedelta(hours=40))  # first sample at 40 h: 0 → 40 h is no bracket for 24 h
    fetch_round(rt, new_round())
    assert rt.store.scalar("SELECT views_24h FROM insight_items") is None


def test_a_deleted_message_is_marked_gone_and_no_longer_asked_for(rt, channel):
    tg, views = channel
    mids = _publish_many(rt, views, 3)
    views.deleted.add(("@mychan", mids[1]))
    report = fetch_round(rt, new_round())
    assert report.sampled == 2 and report.gone == 1
    tg.calls.clear()
    fetch_round(rt, new_round())
    asked = [mid for c in tg.calls if c[0] == "message_stats" for mid in c[1][1]]
    assert sorted(asked) == sorted([mids[0], mids[2]])


def test_purge_thins_samples_to_hourly_for_two_days_then_daily(rt, channel):
    tg, views = channel
    _, mid = publish(rt, hours_ago(24 * 10))
    item_id = None
    fetch_round(rt, new_round())
    item_id = rt.store.scalar("SELECT id FROM insight_items")
    # Samples every 20 minutes over ten days (age since publication), as if fetched that often.
    with rt.store.transaction() as conn:
        conn.execute("DELETE FROM insight_samples")
        for k in range(0, 10 * 72):
            conn.execute(
                "INSERT INTO insight_samples (item_id, round, at, age_s, views) VALUES (?, ?, ?, ?, ?)",
                (item_id, f"r{k}", iso(hours_ago(240 - k / 3)), k * 1200, k),
            )
    dry = purge(rt, dry_run=True)
    removed = purge(rt)
    kept = rt.store.query("SELECT age_s FROM insight_samples ORDER BY age_s")
    assert len(kept) == 48 + 8  # each hour of days 1–2, each day of days 3–10
    assert dry.removed["insight samples"] == removed.removed["insight samples"] == 720 - len(kept)
    assert [k["age_s"] for k in kept[:3]] == [0, 3600, 7200]
    assert {k["age_s"] % 86400 for k in kept[48:]} == {0}


def test_purge_thins_subscriber_counts_to_hourly_for_two_days_then_daily(rt, channel):
    with rt.store.transaction() as conn:
        for k in range(0, 4 * 24 * 4):  # every 15 minutes over four days
            conn.execute(
                "INSERT INTO channel_samples (destination, round, at, subscribers) VALUES (?, ?, ?, ?)",
                ("telegram:@mychan", f"r{k}", iso(hours_ago(k / 4)), 1000 + k),
            )
    purge(rt)
    kept = [parse(r["at"]) for r in rt.store.query("SELECT at FROM channel_samples ORDER BY at")]
    recent = [at for at in kept if at >= now() - timedelta(hours=47)]
    assert len({at.strftime("%Y-%m-%d %H") for at in recent}) == len(recent) >= 47  # one an hour
    older = [at for at in kept if at < now() - timedelta(hours=49)]
    assert len({at.date() for at in older}) == len(older) <= 3  # one a day


def test_a_channel_that_refuses_is_skipped_with_a_note_and_the_others_are_read(rt, channel):
    tg, views = channel
    tg.add_channel("@lost", 7_777_777)
    _publish_many(rt, views, 5)
    at = hours_ago(30)
    _, mid = publish(rt, at, target="@lost")
    views.add("@lost", mid, at, 100)
    tg.fail_next("message_stats", errors.ChannelPrivateError(request=None))  # @lost is read first (by name)
    tg.fail_next("subscriber_count", errors.ChannelPrivateError(request=None))
    report = fetch_round(rt, new_round())
    assert report.sampled == 5 and report.subscribers == {"telegram:@mychan": 1500}
    assert [n.split(":")[0] + ":" + n.split(":")[1] for n in report.notes] == ["telegram:@lost skipped"] * 2
    assert "ChannelPrivateError" in report.notes[0]


def test_a_round_without_telegram_posts_enqueues_no_telegram_job(rt, channel):
    enqueue(rt, "insights", "round", {"round": new_round()})
    run_worker(rt, ["maintenance"], burst=True)
    assert rt.store.scalar("SELECT status FROM jobs WHERE kind = 'insights'") == "succeeded"
    assert not rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'insights_telegram'")
