"""The report from the rows the process keeps (contentq/insights/rollup.py) is the report as it was computed before,
from every row read again (tests/insights_reference.py), after each kind of change a fetch round, a purge or an
edit of the routes makes."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from contentq.clock import iso
from contentq.insights import report, rollup
from contentq.runtime.context import Runtime
from contentq.settings import load_settings
from contentq.store import insights as sql
from tests.insights_reference import old_report

NOW = datetime(2030, 4, 1, 12, 0, tzinfo=UTC)
"""After Europe's and America's switch to summer time: the 30-day window spans both."""

ZONES = {"berlin": "Europe/Berlin", "kolkata": "Asia/Kolkata", "york": "America/New_York"}
"""Plus the route `retired`, no longer in the routes file: its posts are placed in UTC."""

ROUTE = """
[routes.{name}]
target = "@{name}_out"
sources = ["@feed_{name}"]
rewriter = "llm"
[routes.{name}.schedule]
slots = ["09:00", "18:00"]
timezone = "{zone}"
"""

DONORS = ["@big"] * 6 + ["@even", "@odd", "@few", "", None]


def write_routes(home: Path, zones: dict[str, str]) -> None:
    text = "".join(ROUTE.format(name=name, zone=zone) for name, zone in zones.items())
    (home / "contentq.toml").write_text(text, encoding="utf-8")


@pytest.fixture
def irt(home: Path) -> Iterator[Runtime]:
    write_routes(home, ZONES)
    runtime = Runtime(load_settings(home=home))
    yield runtime
    runtime.close()


class Data:
    """Posts published over the last 40 days on one or two destinations each, with every kind of figure."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.rng = random.Random(26)
        self.next_post = 1

    def add_post(self, at: datetime, *, route: str | None = None, donor: str | None = "?",
                 views: float | None | str = "auto") -> int:  # fmt: skip
        rng = self.rng
        route = route or rng.choice([*ZONES, "retired"])
        donor = rng.choice(DONORS) if donor == "?" else donor
        post_id = self.next_post
        self.next_post += 1
        rewriter = rng.choice(["llm", "llm", "clean", None])
        cost = rng.choice([0.0, 0.0004, 0.0011]) if rewriter == "llm" else 0.0
        with self.rt.store.transaction() as conn:
            conn.execute(
                "INSERT INTO posts (id, route, source, source_msg_id, kind, text_html, collected_at, state, target,"
                " published_at, message_ids, link, rewriter, updated_at) VALUES (?, ?, ?, ?, 'text', 'post', ?,"
                " 'published', ?, ?, ?, ?, ?, ?)",
                (post_id, route, donor, post_id, iso(at), f"@{route}_out", iso(at), json.dumps([post_id]),
                 f"https://t.me/{route}_out/{post_id}", rewriter, iso(at)),
            )  # fmt: skip
            destinations = [f"telegram:@{route}_out"] + (["x:main"] if rng.random() < 0.3 else [])
            for destination in destinations:
                value: Any = views
                if views == "auto":
                    young = NOW - at < timedelta(hours=24)
                    value = None if young or rng.random() < 0.05 else rng.choice(
                        [0.0, float(rng.randint(100, 5000)), round(rng.uniform(100, 5000), 3), 1000.0])  # fmt: skip
                    value = value * 2 if value and at.hour == 18 else value
                forwards = None if value is None or rng.random() < 0.1 else value * rng.uniform(0, 0.05)
                reactions = None if value is None or rng.random() < 0.1 else value * rng.uniform(0, 0.1)
                conn.execute(
                    "INSERT INTO insight_items (post_id, destination, platform, account, platform_id, route, source,"
                    " rewriter, published_at, link, llm_cost, views, views_24h, forwards_24h, reactions_24h)"
                    " VALUES (?, ?, ?, 'main', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (post_id, destination, destination.split(":")[0], str(post_id), route, donor, rewriter, iso(at),
                     f"https://t.me/{route}_out/{post_id}", cost, rng.randint(0, 9000), value, forwards, reactions),
                )  # fmt: skip
        return post_id

    def fill(self, posts: int, days: float = 40) -> None:
        # At a few hours of the day (a slot gets enough posts to be judged), the evening ones read twice as much.
        for n in range(posts):
            day = NOW - timedelta(days=days * (posts - n) / posts)
            at = min(day.replace(hour=self.rng.choice([7, 9, 9, 18]), minute=self.rng.randint(0, 59)),
                     NOW - timedelta(minutes=n % 50))  # fmt: skip
            self.add_post(at)
        # A post on two destinations with the very same figures: equal keys among the best and worst.
        tie = self.add_post(NOW - timedelta(days=2), route="berlin", donor="@big", views=2500.0)
        self.rt.store.execute(
            "INSERT INTO insight_items (post_id, destination, platform, account, platform_id, route, source, rewriter,"
            " published_at, link, llm_cost, views_24h) SELECT post_id, 'x:other', 'x', 'other', platform_id, route,"
            " source, rewriter, published_at, link, llm_cost, views_24h FROM insight_items WHERE post_id = ? LIMIT 1",
            (tie,),
        )
        for destination in {r["destination"] for r in self.rt.store.query("SELECT destination FROM insight_items")}:
            for h in range(0, 40 * 24, 7):
                self.rt.store.execute(
                    "INSERT INTO channel_samples (destination, round, at, subscribers) VALUES (?, ?, ?, ?)",
                    (destination, f"r{h}", iso(NOW - timedelta(hours=h)), 5000 - h),
                )

    def fetch_round(self, now: datetime) -> None:
        """What a round writes: figures at 24 h for the items that reached that age, new items, a late delivery."""
        self.rt.store.execute(
            "UPDATE insight_items SET views_24h = 700.0 + id % 13, forwards_24h = 7.5 WHERE views_24h IS NULL"
            " AND id IN (SELECT id FROM insight_items WHERE views_24h IS NULL ORDER BY published_at LIMIT 40)"
        )
        for n in range(15):
            self.add_post(now - timedelta(minutes=4 * n))
        self.add_post(now - timedelta(days=6), route="york", views=4321.0)  # published before the newest held


def same(rt: Runtime, *, days: int = 30, route: str | None = None, min_posts: int | None = None,
         zones: dict[str, str] = ZONES) -> dict[str, Any]:  # fmt: skip
    """The report as built now and as it was built before, from the same database at the same moment."""
    rt.services.pop(report.CACHE_KEY, None)
    end = datetime.now(UTC)
    new = report.build(rt, days=days, route=route, min_posts=min_posts).as_dict()
    minimum = min_posts if min_posts is not None else rt.settings.insights_min_posts
    old = old_report(rt.store, zones, iso(end - timedelta(days=days)), end, route, minimum).as_dict()
    assert new == old
    return new


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time the rollup reads a whole window again."""
    calls: list[str] = []
    original = sql.rollup_since

    def counted(conn: Any, since: str) -> list[tuple[Any, ...]]:
        calls.append(since)
        return original(conn, since)

    monkeypatch.setattr(sql, "rollup_since", counted)
    return calls


def test_the_kept_rows_give_the_report_the_full_read_gave(irt: Runtime, loads: list[str]) -> None:
    rt = irt
    data = Data(rt)
    with time_machine.travel(NOW, tick=False) as clock:
        data.fill(1500)
        first = same(rt)
        assert len(loads) == 1
        # The dataset has what the medians must get right: groups of even and odd sizes, too few posts, none.
        donors = {(d["route"], d["destination"], d["source"]): d for d in first["donors"]}
        sizes = {d["posts"] % 2 for d in donors.values()}
        assert sizes == {0, 1}
        assert any(d["suggestion"] == "too few posts" for d in donors.values())
        assert any(d["suggestion"] != "too few posts" for d in donors.values())
        assert {s["posts"] % 2 for s in first["slots"]} == {0, 1}
        assert any(t["measured"] < t["posts"] for t in first["targets"])
        assert {d["source"] for d in donors.values()} >= {"@big", "@even", "@odd", "@few", "(generated)"}
        assert "retired" in {t["route"] for t in first["targets"]}
        assert first["best"] and first["worst"] and first["better_slots"]
        for kwargs in ({"route": "berlin"}, {"route": "retired"}, {"days": 7}, {"min_posts": 3}, {"days": 35}):
            same(rt, **kwargs)  # type: ignore[arg-type]
        assert len(loads) == 2  # 35 days is wider than the window held: read again once

        # Hourly rounds: only what changed is read, and the report is still the full read's.
        for _ in range(3):
            clock.shift(timedelta(hours=1))
            data.fetch_round(datetime.now(UTC))
            same(rt)
            same(rt, route="york")
        assert len(loads) == 2

        # A post deleted (its items go by cascade): everything is read again.
        rt.store.execute("DELETE FROM posts WHERE id = (SELECT MAX(post_id) FROM insight_items)")
        data.add_post(datetime.now(UTC))  # may take the deleted item's id
        same(rt)
        assert len(loads) == 3

        # A route's time zone changed: its posts are in other slots.
        zones = {**ZONES, "kolkata": "Asia/Tokyo"}
        write_routes(rt.settings.home, zones)
        same(rt, zones=zones)
        assert len(loads) == 4

        # Days later, the window has moved on: the oldest rows held are let go, the report still the same.
        clock.shift(timedelta(days=4))
        data.fetch_round(datetime.now(UTC))
        same(rt, zones=zones)
        assert len(loads) == 4
        held = rt.services[rollup.SERVICE_KEY]
        assert held.since == iso(datetime.now(UTC) - timedelta(days=35 + 1))
        assert len(held.keys) == len(held.posts)
