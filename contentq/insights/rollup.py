"""The report's per-post rows, kept by the process between reports (docs/insights.md).

A report reads every item published in its window (16,666 at a million samples); reading those rows and placing
each post in its route's time zone was most of a rebuild. An item's columns never change once its figures at 24 h
are set (`store.insights.update_item` sets them once; the latest figures, which change each round, are not read),
so the process keeps them: a rebuild reads the items added since (ids only grow) and the figures at 24 h of the
items it holds without. It reads everything again when an item was deleted (a trigger counts deletions, migration
220), when a route's time zone changed, or for a wider window than it holds.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contentq.clock import iso, now
from contentq.insights.analysis import PostFigures, slot_of
from contentq.runtime.context import Runtime
from contentq.store import insights as sql

SERVICE_KEY = "insights_rollup"
"""Where the process keeps its rollup (runtime.services)."""

_UTC = ZoneInfo("UTC")


@dataclass
class Rollup:
    since: str = ""
    """The items published since this are held."""
    zones: dict[str, str] = field(default_factory=dict)
    """Route → time zone name the slots were placed with."""
    deletions: int = -1
    last_id: int = 0
    keys: list[tuple[str, int]] = field(default_factory=list)
    """(published_at, id) of the items held, sorted: the order a report reads them in."""
    posts: dict[int, PostFigures] = field(default_factory=dict)
    open: set[int] = field(default_factory=set)
    """Items held without figures at 24 h yet."""
    width: timedelta = timedelta(0)
    """The widest window asked for: what is older (by a day) is let go."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def posts_since(runtime: Runtime, zones: dict[str, str], since: str, route: str | None = None) -> list[PostFigures]:
    """Every item published since `since` (of one route, or all) as the analysis reads them, by publication then
    id; the rollup is brought up to date first."""
    rollup = runtime.services.get(SERVICE_KEY)
    if not isinstance(rollup, Rollup):
        rollup = runtime.services.setdefault(SERVICE_KEY, Rollup())
    with rollup.lock:
        _refresh(runtime, rollup, zones, since)
        start = bisect_left(rollup.keys, (since,))
        held = rollup.posts
        posts = [held[item_id] for _, item_id in rollup.keys[start:]]
    return posts if route is None else [p for p in posts if p.route == route]


def _refresh(runtime: Runtime, rollup: Rollup, zones: dict[str, str], since: str) -> None:
    rollup.width = max(rollup.width, now() - datetime.fromisoformat(since))
    with runtime.store.transaction(immediate=False) as conn:  # one snapshot for every read below
        deleted = sql.deletions(conn)
        if deleted != rollup.deletions or zones != rollup.zones or since < rollup.since:
            widest = min(since, iso(now() - rollup.width))  # the widest window asked for so far
            _load(rollup, zones, deleted, widest, sql.rollup_since(conn, widest))
            return
        added = sql.rollup_added(conn, rollup.last_id)
        settled = sql.rollup_settled(conn, sorted(rollup.open)) if rollup.open else []
    places = _places(zones)
    for row in added:
        rollup.last_id = max(rollup.last_id, row[0])
        if row[6] >= rollup.since:
            _hold(rollup, row, places, at_end=False)
    for item_id, v24, f24, r24 in settled:
        post = rollup.posts[item_id]
        rollup.posts[item_id] = post._replace(views_24h=v24, forwards_24h=f24, reactions_24h=r24)
        rollup.open.discard(item_id)
    _forget_old(rollup)


def _load(rollup: Rollup, zones: dict[str, str], deleted: int, since: str, rows: list[tuple[Any, ...]]) -> None:
    rollup.since, rollup.zones, rollup.deletions = since, dict(zones), deleted
    rollup.keys, rollup.posts, rollup.open = [], {}, set()
    rollup.last_id = 0
    places = _places(zones)
    for row in rows:  # by publication: each is appended
        _hold(rollup, row, places, at_end=True)
    # Items published before `since` are not held, but their ids are below any added later all the same.
    rollup.last_id = max([rollup.last_id, *(r[0] for r in rows)])


def _hold(rollup: Rollup, row: tuple[Any, ...], places: dict[str, ZoneInfo], *, at_end: bool) -> None:
    item_id, post_id, route, destination, source, rewriter, published_at, v24, f24, r24, link, cost = row
    published = datetime.fromisoformat(published_at)
    slot = slot_of(published.astimezone(places.get(route, _UTC)))
    rollup.posts[item_id] = PostFigures(post_id, route, destination, source or "", rewriter or "none", published,
                                        slot, v24, f24, r24, None, link, cost or 0.0)  # fmt: skip
    key = (published_at, item_id)
    if at_end or not rollup.keys or rollup.keys[-1] < key:
        rollup.keys.append(key)
    else:
        insort(rollup.keys, key)  # published before the newest held (a delivery that settled late)
    if v24 is None:
        rollup.open.add(item_id)


FORGET_AFTER = timedelta(days=2)
"""The items older than the widest window asked for (and a day) are let go once there are this many days of them:
the panel runs for months."""


def _forget_old(rollup: Rollup) -> None:
    cut = now() - rollup.width - timedelta(days=1)
    if iso(cut - FORGET_AFTER) <= rollup.since:
        return
    rollup.since = iso(cut)
    end = bisect_left(rollup.keys, (rollup.since,))
    for _, item_id in rollup.keys[:end]:
        del rollup.posts[item_id]
        rollup.open.discard(item_id)
    del rollup.keys[:end]


def _places(zones: dict[str, str]) -> dict[str, ZoneInfo]:
    return {route: ZoneInfo(name) for route, name in zones.items()}
