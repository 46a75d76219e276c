"""Published posts put straight into the store, and a Telegram whose views grow with time (insights tests)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
