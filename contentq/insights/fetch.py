"""One fetch round of insights: a sample of every post published in the last N days, on each destination.

Telegram: one channels.getMessages per 100 messages of a channel (views, forwards, replies, reactions per emoji)
and one channels.getFullChannel per channel (subscribers). X: one GET /2/tweets per 100 tweets (public
metrics). Instagram: one multiple-ID read per 50 media (likes, comments, views, shares).

A round is named when it is enqueued (`round_`); each sample is stored with it, and an item that has a sample
of the round is not asked for again. So a round interrupted by a wait (a FLOOD_WAIT too long to sleep through,
X's 429, Meta's request limit) raises `Reschedule`, keeps what it stored, and when it runs again fetches only
what is missing: no sample lost, none taken twice.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from telethon import errors as tg_errors

from contentq import accounts
from contentq.clock import iso, now, parse
from contentq.errors import FatalJobError, Reschedule
from contentq.flow.channels import resolve_channel
from contentq.insights.series import AT_AGE_S, Point, at_age
from contentq.integrations.instagram import MULTI_ID_BATCH
from contentq.integrations.telegram.access import gateway_of
from contentq.integrations.telegram.gateway import STATS_BATCH, MessageStats
from contentq.integrations.x import LOOKUP_BATCH
from contentq.redact import redact
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime
from contentq.store import insights as sql

PLATFORMS = ("telegram", "x", "instagram")

Log = Callable[..., None]


@dataclass
class FetchReport:
    round: str
    since: str
    platforms: tuple[str, ...]
    items: int = 0
    sampled: int = 0
    gone: int = 0
    new_items: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    subscribers: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    checkpoint: Callable[[str], None] | None = field(default=None, repr=False)

    def request(self, platform: str) -> None:
        """Before each request: the run's safe point, then the count."""
        if self.checkpoint is not None:
            self.checkpoint(f"insights: before a {platform} request")
        self.requests[platform] = self.requests.get(platform, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "round": self.round, "since": self.since, "platforms": list(self.platforms), "items": self.items,
            "sampled": self.sampled, "gone": self.gone, "new_items": self.new_items, "requests": self.requests,
            "subscribers": self.subscribers, "notes": self.notes,
        }  # fmt: skip


def telegram_due(runtime: Runtime, days: int | None = None) -> bool:
    """Whether a round has Telegram posts or channels to read (the Telegram job is enqueued only then)."""
    days = days if days is not None else runtime.settings.insights_fetch_days
    since = iso(now() - timedelta(days=days))
    sql.sync_items(runtime.store, since)
    return bool(runtime.store.scalar(
        "SELECT 1 FROM insight_items WHERE platform = 'telegram' AND published_at >= ? LIMIT 1", (since,)))  # fmt: skip


def new_round() -> str:
    """A round's name: when it was asked for (to the second), so two rounds never share one."""
    return iso()


def fetch_round(
    runtime: Runtime,
    round_: str,
    *,
    days: int | None = None,
    platforms: Iterable[str] = PLATFORMS,
    log: Log | None = None,
    checkpoint: Callable[[str], None] | None = None,
) -> FetchReport:
    """Sample every item published in the last `days` days (default insights_fetch_days) on these platforms
    that has no sample of this round yet; raises Reschedule when a platform asks for a wait. `checkpoint` is
    called between requests (a job's safe point: a cancelled run stops there, what it stored stays)."""
    days = days if days is not None else runtime.settings.insights_fetch_days
    since = iso(now() - timedelta(days=days))
    report = FetchReport(round_, since, tuple(platforms), checkpoint=checkpoint)
    store = runtime.store
    report.new_items = sql.sync_items(store, since)
    rows = [r for r in sql.items_to_fetch(store, since, round_) if r["platform"] in report.platforms]
    report.items = len(rows)
    for destination, group in groupby(rows, key=lambda r: str(r["destination"])):
        items = list(group)
        platform = items[0]["platform"]
        try:
            if platform == "telegram":
                _telegram(runtime, destination, items, report, log)
            elif platform == "x":
                _x(runtime, destination, items, report)
            elif platform == "instagram":
                _instagram(runtime, destination, items, report)
        except (tg_errors.RPCError, FatalJobError) as exc:
            _skip(report, destination, exc, log)  # one unreadable destination does not hold up the others
    if "telegram" in report.platforms:
        _subscribers(runtime, report, log)
    return report


def _skip(report: FetchReport, destination: str, exc: BaseException, log: Log | None) -> None:
    """A destination that refuses (no longer an admin, revoked keys): noted, the round goes on without it."""
    note = f"{destination} skipped: {type(exc).__name__}: {redact(str(exc))}"
    report.notes.append(note)
    if log is not None:
        log("destination_skipped", note, level="warning")


def chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- Telegram -----------------------------------------------------------------------------------------


def _telegram(runtime: Runtime, destination: str, items: list[dict[str, Any]], report: FetchReport,
              log: Log | None) -> None:  # fmt: skip
    target = str(items[0]["account"])  # a Telegram destination's "account" is its channel
    poster = _poster(runtime, str(items[0]["route"]), target)
    gateway = gateway_of(runtime, poster)
    try:
        channel = resolve_channel(runtime.store, gateway, target, role="target", account=poster)
        for batch in chunks(items, STATS_BATCH):
            ids = [int(r["platform_id"]) for r in batch]
            report.request("telegram")
            found = {s.id: s for s in gateway.message_stats(channel, ids)}
            at = now()
            record(runtime, report, at, [(r, _telegram_values(found.get(int(r["platform_id"])))) for r in batch])
    except (tg_errors.FloodWaitError, tg_errors.FloodPremiumWaitError) as exc:
        flood_wait(report, destination, int(exc.seconds), log)


def _poster(runtime: Runtime, route_name: str, target: str) -> str:
    """Read a channel's figures with the account that posts to it (an access hash is one account's): the
    route's poster, or the default account when the route is gone from the routes file."""
    route = routes_config(runtime).routes.get(route_name)
    return accounts.poster_of(runtime.store, route, target) if route else accounts.default_account(runtime.store)


def _telegram_values(stats: MessageStats | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {
        "views": stats.views, "forwards": stats.forwards, "replies": stats.replies,
        "reactions": sum(stats.reactions.values()),
        "reactions_json": json.dumps(stats.reactions, ensure_ascii=False, sort_keys=True),
    }  # fmt: skip


def flood_wait(report: FetchReport, destination: str, seconds: int, log: Log | None) -> None:
    """Never sleep through a long wait in a worker: what is stored stays, the round runs again after it."""
    delay = seconds + random.uniform(1.0, max(2.0, seconds * 0.05))
    message = (
        f"FLOOD_WAIT of {seconds} s from Telegram while reading {destination}: {report.sampled} samples stored, "
        f"the round resumes in {delay:.0f} s"
    )
    if log is not None:
        log("flood_wait", message, level="warning", seconds=seconds, sampled=report.sampled)
    raise Reschedule(delay, f"FLOOD_WAIT of {seconds} s from Telegram while reading insights of {destination}")


def _subscribers(runtime: Runtime, report: FetchReport, log: Log | None) -> None:
    """Each Telegram target's subscriber count, once per round."""
    store = runtime.store
    for destination, route in sql.telegram_destinations(store, report.since):
        target = destination.partition(":")[2]
        poster = _poster(runtime, route, target)
        gateway = gateway_of(runtime, poster)
        if sql.channel_sampled(store, destination, report.round):
            continue
        try:
            channel = resolve_channel(store, gateway, target, role="target", account=poster)
            report.request("telegram")
            count = gateway.subscriber_count(channel)
        except (tg_errors.FloodWaitError, tg_errors.FloodPremiumWaitError) as exc:
            flood_wait(report, destination, int(exc.seconds), log)
        except tg_errors.RPCError as exc:
            _skip(report, destination, exc, log)
            continue
        sql.record_subscribers(store, destination, report.round, iso(), count)
        report.subscribers[destination] = count


# -- X and Instagram ----------------------------------------------------------------------------------


def _x(runtime: Runtime, destination: str, items: list[dict[str, Any]], report: FetchReport) -> None:
    from contentq.publish.deliver_x import x_client  # the X client (httpx) only when an X destination is measured

    client = x_client(runtime, str(items[0]["account"]))
    for batch in chunks(items, LOOKUP_BATCH):
        report.request("x")
        found = client.tweet_metrics([str(r["platform_id"]) for r in batch])
        at = now()
        record(runtime, report, at, [(r, _x_values(found.get(str(r["platform_id"])))) for r in batch])


def _x_values(metrics: dict[str, int] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    likes = metrics.get("like_count", 0)
    return {
        "views": metrics.get("impression_count"),
        "forwards": metrics.get("retweet_count", 0) + metrics.get("quote_count", 0),
        "replies": metrics.get("reply_count"), "reactions": likes,
        "reactions_json": json.dumps({"like": likes, "bookmark": metrics.get("bookmark_count", 0)}),
    }  # fmt: skip


def _instagram(runtime: Runtime, destination: str, items: list[dict[str, Any]], report: FetchReport) -> None:
    from contentq.publish.deliver_instagram import instagram_client

    client = instagram_client(runtime, str(items[0]["account"]))
    for batch in chunks(items, MULTI_ID_BATCH):
        report.request("instagram")
        found = client.media_metrics([str(r["platform_id"]) for r in batch])
        at = now()
        record(runtime, report, at, [(r, _instagram_values(found.get(str(r["platform_id"])))) for r in batch])


def _instagram_values(metrics: dict[str, int] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    likes = metrics.get("like_count", 0)
    return {
        "views": metrics.get("views"), "forwards": metrics.get("shares"),
        "replies": metrics.get("comments_count"), "reactions": likes,
        "reactions_json": json.dumps({"like": likes}),
    }  # fmt: skip


# -- storing ------------------------------------------------------------------------------------------


def record(
    runtime: Runtime, report: FetchReport, at: datetime, batch: list[tuple[dict[str, Any], dict[str, Any] | None]]
) -> None:
    """One batch's samples in one transaction; an item the platform no longer has is marked gone. A sample that
    completes the bracket around 24 h sets the item's figures at 24 h."""
    stamp = iso(at)
    gone = []
    with runtime.store.transaction() as conn:
        for item, values in batch:
            if values is None:
                gone.append(int(item["id"]))
                continue
            age = max(0, int((at - parse(str(item["published_at"]))).total_seconds()))
            if not sql.insert_sample(conn, int(item["id"]), report.round, stamp, age, values):
                continue  # this round has it already
            report.sampled += 1
            at_24h = None
            if age >= AT_AGE_S and item.get("open_24h"):
                before = sql.sample_before(conn, int(item["id"]), AT_AGE_S)
                lower = Point(before["age_s"], before) if before else None
                at_24h = at_age(lower, Point(age, values))
            sql.update_item(conn, int(item["id"]), stamp, values, at_24h)
        if gone:
            sql.mark_gone(conn, gone)
    report.gone += len(gone)
