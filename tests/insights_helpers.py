"""Published posts put straight into the store, and a Telegram whose views grow with time (insights tests)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contentq.clock import iso, now
from contentq.integrations.telegram.gateway import MessageStats
from contentq.runtime.context import Runtime
from tests.fake_telegram import FakeTelegram
from tests.publish_helpers import add_post

_message_ids = itertools.count(10_000)


def publish(
    rt: Runtime,
    at: datetime,
    *,
    route: str = "news",
    target: str = "@mychan",
    source: str = "@donor",
    rewriter: str = "none",
    message_id: int | None = None,
) -> tuple[int, int]:
    """A post published to `target` at `at` (message ids as the publish job records them); (post id, msg id)."""
    mid = message_id if message_id is not None else next(_message_ids)
    post_id = add_post(
        rt, route=route, state="published", source=source, target=target, published_at=iso(at),
        message_ids=json.dumps([mid]), link=f"https://t.me/{target.lstrip('@')}/{mid}", rewriter=rewriter,
    )  # fmt: skip
    return post_id, mid


def add_usage(rt: Runtime, post_id: int, route: str, cost: float) -> None:
    with rt.store.transaction() as conn:
        conn.execute(
            "INSERT INTO usage (at, post_id, route, model, tokens_in, tokens_out, cost) VALUES (?, ?, ?, 'm', 1, 1, ?)",
            (iso(), post_id, route, cost),
        )


@dataclass
class GrowingViews:
    """Views of a message follow peak × (1 − e^(−age/6 h)): most arrive in the first day, like a channel's.
    Forwards are 2 % of views, reactions 5 % (👍 and 🔥), replies 1 %."""

    published: dict[tuple[str, int], tuple[datetime, float]] = field(default_factory=dict)
    deleted: set[tuple[str, int]] = field(default_factory=set)

    def add(self, ref: str, message_id: int, at: datetime, peak: float) -> None:
        self.published[(ref, message_id)] = (at, peak)

    def views_at(self, ref: str, message_id: int, at: datetime) -> int:
        published, peak = self.published[(ref, message_id)]
        age_h = max(0.0, (at - published).total_seconds() / 3600)
        return int(peak * (1 - math.exp(-age_h / 6)))

    def __call__(self, ref: str, message_id: int) -> MessageStats | None:
        if (ref, message_id) not in self.published or (ref, message_id) in self.deleted:
            return None
        views = self.views_at(ref, message_id, now())
        thumbs, fire = int(views * 0.04), int(views * 0.01)
        return MessageStats(message_id, views, int(views * 0.02), int(views * 0.01), {"👍": thumbs, "🔥": fire})


def growing_telegram(rt: Runtime, *channels: str, subscribers: int = 1000) -> tuple[FakeTelegram, GrowingViews]:
    views = GrowingViews()
    tg = FakeTelegram(stats=views)
    for i, ref in enumerate(channels or ("@mychan",)):
        tg.add_channel(ref, 1_234_567 + i, title=ref)
        tg.subscribers[ref] = subscribers
    rt.services["telegram"] = tg
    return tg, views


def samples(rt: Runtime) -> list[dict[str, Any]]:
    return rt.store.query("SELECT * FROM insight_samples ORDER BY item_id, age_s")


def hours_ago(hours: float) -> datetime:
    return now() - timedelta(hours=hours)


MONDAY = datetime(2030, 1, 7, tzinfo=UTC)
"""A Monday (UTC) inside the tests' clock (TEST_EPOCH)."""

DONORS = ("@donor_a", "@donor_b", "@donor_c", "@donor_d")
SLOTS_UTC = ((0, 8), (2, 12), (4, 17))
"""(weekday, hour UTC) of the three publishing slots: Mon 09:00, Wed 13:00 and Fri 18:00 in Europe/Berlin."""

BETTER_DONOR, BETTER_SLOT = "@donor_b", (2, 12)


def scenario_toml() -> str:
    from tests.publish_helpers import route_toml

    sources = "[" + ", ".join(f'"{d}"' for d in DONORS) + "]"
    schedule = 'slots = ["09:00", "13:00", "18:00"]\ntimezone = "Europe/Berlin"'
    return route_toml(sources=sources, schedule=schedule)


def run_scenario(rt: Runtime, clock: Any, posts: int = 2000, weeks: int = 2) -> GrowingViews:
    """`posts` posts published over `weeks` weeks in three slots by four donors, in time order, with two fetch
    rounds around each slot's 24 h mark (20 h and 26 h after it): @donor_b's posts get 1.8× the views of the
    others and the Wednesday slot 1.6× the other slots; every post ±20 % of noise."""
    from contentq.insights.fetch import fetch_round, new_round

    _, views = growing_telegram(rt, "@mychan", subscribers=5000)
    tg = rt.services["telegram"]
    occurrences = [MONDAY + timedelta(weeks=w, days=day, hours=hour) for w in range(weeks) for day, hour in SLOTS_UTC]
    per = [posts // len(occurrences) + (1 if i < posts % len(occurrences) else 0) for i in range(len(occurrences))]
    serial = 0
    for occurrence, count in zip(occurrences, per, strict=True):
        clock.move_to(occurrence + timedelta(hours=1))
        for k in range(count):
            donor = DONORS[serial % len(DONORS)]
            at = occurrence + timedelta(seconds=10 * k)
            _, mid = publish(rt, at, source=donor)
            noise = 0.8 + 0.4 * ((serial * 7919) % 101) / 100
            peak = 1000 * noise * (1.8 if donor == BETTER_DONOR else 1.0)
            peak *= 1.6 if (occurrence.weekday(), occurrence.hour) == BETTER_SLOT else 1.0
            views.add("@mychan", mid, at, peak)
            serial += 1
        for hours in (20, 26):
            clock.move_to(occurrence + timedelta(hours=hours))
            tg.subscribers["@mychan"] += 37
            fetch_round(rt, new_round())
    return views
