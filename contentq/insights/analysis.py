"""From per-post figures to answers (pure functions; docs/insights.md).

Every comparison uses the figures at 24 h after publication (`series.at_age`), so an old post and a new one are
compared at the same age, and every figure says how many posts it rests on. A suggestion (drop a donor, move
posts to a better slot) needs at least `min_posts` posts on each side.

Groups are (route, destination): X impressions and Telegram views are not the same figure, and two channels of
one route have their own audiences.
"""

from __future__ import annotations

import heapq
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

BETTER_RATIO = 1.3
"""A slot is suggested over another when its median views at 24 h are at least this many times the other's."""

DROP_RATIO = 0.7
"""A donor whose posts' median is below this share of its route's is suggested for dropping."""

KEEP_RATIO = 1.0
"""A donor at or above its route's median is one to keep (between DROP_RATIO and this: watch)."""

TOP_POSTS = 3
"""How many best and worst posts of the week are named."""

SLOT_ADVICE = 3
"""Better-slot suggestions per target: for the weakest slots (with enough posts), the moves that gain most."""


class PostFigures(NamedTuple):
    """One published post on one destination, as the analysis needs it (a tuple: reports read tens of
    thousands)."""

    post_id: int
    route: str
    destination: str
    source: str
    rewriter: str
    published_at: datetime
    slot: int
    """Hour of the week in the route's time zone: 0 is Monday 00:00–00:59, 167 Sunday 23:00–23:59."""
    views_24h: float | None
    forwards_24h: float | None = None
    reactions_24h: float | None = None
    views: int | None = None
    link: str | None = None
    llm_cost: float = 0.0


@dataclass(frozen=True)
class Options:
    min_posts: int = 10
    better_ratio: float = BETTER_RATIO
    drop_ratio: float = DROP_RATIO
    now: datetime | None = None
    """The end of "this week" for the best and worst posts (default: the newest post's publication)."""


def slot_label(slot: int) -> str:
    return f"{DAYS[slot // 24]} {slot % 24:02d}:00"


def slot_of(moment: datetime) -> int:
    """The hour of the week of an aware datetime already in the route's time zone."""
    return moment.weekday() * 24 + moment.hour


def median(values: Iterable[float]) -> float | None:
    data = list(values)
    return float(statistics.median(data)) if data else None


def ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


@dataclass(frozen=True)
class TargetFigures:
    route: str
    destination: str
    posts: int
    measured: int
    """Posts with figures at 24 h (the others are younger, or their samples do not bracket 24 h)."""
    median_views_24h: float | None
    forwards_per_view: float | None
    reactions_per_view: float | None
    subscribers: list[tuple[str, int]] = field(default_factory=list)
    """(ISO time, subscriber count), oldest first."""

    @property
    def subscribers_change(self) -> int | None:
        return self.subscribers[-1][1] - self.subscribers[0][1] if len(self.subscribers) > 1 else None


@dataclass(frozen=True)
class DonorFigures:
    route: str
    destination: str
    source: str
    posts: int
    median_views_24h: float | None
    route_median: float | None
    ratio: float | None
    suggestion: str
    """keep, watch, drop, or "too few posts"."""
    reason: str


@dataclass(frozen=True)
class SlotFigures:
    route: str
    destination: str
    slot: int
    label: str
    posts: int
    median_views_24h: float | None
    ratio: float | None
    """Against the (route, destination) median."""


@dataclass(frozen=True)
class SlotAdvice:
    route: str
    destination: str
    better: str
    worse: str
    ratio: float
    better_posts: int
    worse_posts: int
    better_median: float
    worse_median: float
    text: str


@dataclass(frozen=True)
class RewriteFigures:
    route: str
    rewriter: str
    posts: int
    measured: int
    llm_cost: float
    cost_per_post: float | None
    cost_per_1000_views: float | None
    median_views_24h: float | None


@dataclass(frozen=True)
class PostLine:
    post_id: int
    route: str
    destination: str
    source: str
    slot: str
    published_at: str
    views_24h: float
    ratio: float | None
    """Against its (route, destination) median."""
    link: str | None


@dataclass
class Insights:
    since: str
    until: str
    min_posts: int
    posts: int
    measured: int
    targets: list[TargetFigures] = field(default_factory=list)
    donors: list[DonorFigures] = field(default_factory=list)
    slots: list[SlotFigures] = field(default_factory=list)
    better_slots: list[SlotAdvice] = field(default_factory=list)
    rewrites: list[RewriteFigures] = field(default_factory=list)
    rewriters: list[RewriteFigures] = field(default_factory=list)
    """The rewrite figures per rewriter over all routes: clean and LLM side by side."""
    best: list[PostLine] = field(default_factory=list)
    worst: list[PostLine] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    """The answers in plain sentences, the figures and post counts included."""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for target, row in zip(self.targets, data["targets"], strict=True):
            row["subscribers_change"] = target.subscribers_change
            row["subscribers"] = [{"at": at, "subscribers": n} for at, n in target.subscribers]
        return data


def _groups(posts: Iterable[PostFigures]) -> dict[tuple[str, str], list[PostFigures]]:
    out: dict[tuple[str, str], list[PostFigures]] = defaultdict(list)
    for post in posts:
        out[(post.route, post.destination)].append(post)
    return dict(sorted(out.items()))


def _share(posts: Sequence[PostFigures], index: int) -> float | None:
    """Sum of one figure over the sum of views at 24 h, over the posts that have both."""
    total = views = 0.0
    for post in posts:
        value = post[index]
        if isinstance(value, _NUMBER) and post.views_24h:  # a tuple: `float | int` here built a union per post
            total += value
            views += post.views_24h
    return total / views if views else None


_NUMBER = (float, int)


_FORWARDS, _REACTIONS = PostFigures._fields.index("forwards_24h"), PostFigures._fields.index("reactions_24h")

# One figure of every post, read in C (map) rather than by attribute in a Python loop: reports read tens of
# thousands of posts, each several times.
_POST_ID, _ROUTE, _SOURCE, _REWRITER, _SLOT, _VIEWS, _COST = (
    itemgetter(PostFigures._fields.index(name))
    for name in ("post_id", "route", "source", "rewriter", "slot", "views_24h", "llm_cost")
)


def _n(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def analyse(
    posts: Sequence[PostFigures],
    subscribers: dict[str, list[tuple[str, int]]] | None = None,
    options: Options | None = None,
    *,
    since: str = "",
    until: str = "",
) -> Insights:
    """The whole report: per target, donor, slot and rewrite, the week's best and worst, and the findings."""
    options = options or Options()
    subscribers = subscribers or {}
    measured = [p for p in posts if p.views_24h is not None]
    report = Insights(since=since, until=until, min_posts=options.min_posts, posts=len(posts), measured=len(measured))
    medians: dict[tuple[str, str], float | None] = {}
    for (route, destination), group in _groups(posts).items():
        done = [p for p in group if p.views_24h is not None]
        base = median(list(map(_VIEWS, done)))
        medians[(route, destination)] = base
        report.targets.append(
            TargetFigures(
                route,
                destination,
                len(group),
                len(done),
                base,
                _share(done, _FORWARDS),
                _share(done, _REACTIONS),
                subscribers.get(destination, []),
            )  # fmt: skip
        )
        report.donors += donor_figures(route, destination, done, base, options)
        slots = slot_figures(route, destination, done, base)
        report.slots += slots
        report.better_slots += better_slots(slots, options)
    report.rewrites, report.rewriters = rewrite_figures(posts)
    report.best, report.worst = best_and_worst(measured, medians, options)
    report.findings = findings(report, options)
    return report


def donor_figures(
    route: str, destination: str, posts: Sequence[PostFigures], base: float | None, options: Options
) -> list[DonorFigures]:
    by_source: dict[str, list[float]] = defaultdict(list)
    for source, views in zip(map(_SOURCE, posts), map(_VIEWS, posts), strict=True):  # a loop per post: kept lean
        if views is not None:
            by_source[source or "(generated)"].append(views)
    out = []
    for source, values in sorted(by_source.items()):
        value = median(values)
        share = ratio(value, base)
        if len(values) < options.min_posts or share is None:
            suggestion = "too few posts"
            reason = f"{len(values)} posts measured; a suggestion needs {options.min_posts}"
        else:
            suggestion = "drop" if share < options.drop_ratio else "keep" if share >= KEEP_RATIO else "watch"
            reason = f"median {_n(value)} views at 24 h over {len(values)} posts = {share:.2f}× the route's {_n(base)}"
        out.append(DonorFigures(route, destination, source, len(values), value, base, share, suggestion, reason))
    return out


def slot_figures(route: str, destination: str, posts: Sequence[PostFigures], base: float | None) -> list[SlotFigures]:
    by_slot: dict[int, list[float]] = defaultdict(list)
    for slot, views in zip(map(_SLOT, posts), map(_VIEWS, posts), strict=True):
        if views is not None:
            by_slot[slot].append(views)
    out = []
    for slot, values in sorted(by_slot.items()):
        value = median(values)
        out.append(SlotFigures(route, destination, slot, slot_label(slot), len(values), value, ratio(value, base)))
    return out


def better_slots(slots: Sequence[SlotFigures], options: Options) -> list[SlotAdvice]:
    """For the SLOT_ADVICE weakest slots with enough posts, the best slot with enough posts when it is
    ≥ better_ratio× as good."""
    usable = [s for s in slots if s.posts >= options.min_posts and s.median_views_24h]
    if len(usable) < 2:
        return []
    best = max(usable, key=lambda s: (s.median_views_24h or 0, s.posts))
    out = []
    for slot in sorted(usable, key=lambda s: s.median_views_24h or 0)[:SLOT_ADVICE]:
        if slot is best:
            continue
        assert best.median_views_24h is not None and slot.median_views_24h is not None
        share = best.median_views_24h / slot.median_views_24h
        if share < options.better_ratio:
            continue
        text = (
            f"{best.label} gets {share:.2f}× the views at 24 h of {slot.label} (median {_n(best.median_views_24h)}"
            f" over {best.posts} posts vs {_n(slot.median_views_24h)} over {slot.posts}): move posts from"
            f" {slot.label} to {best.label}"
        )
        out.append(SlotAdvice(slot.route, slot.destination, best.label, slot.label, share, best.posts, slot.posts,
                              best.median_views_24h, slot.median_views_24h, text))  # fmt: skip
    return out


def rewrite_figures(posts: Sequence[PostFigures]) -> tuple[list[RewriteFigures], list[RewriteFigures]]:
    """Per (route, rewriter) and per rewriter: LLM cost per published post and per 1,000 views at 24 h. A post
    published to several destinations counts its cost once and its views on each."""

    def figures(route: str, rewriter: str, group: list[PostFigures]) -> RewriteFigures:
        costs = dict(zip(map(_POST_ID, group), map(_COST, group), strict=True))
        total = sum(costs.values())
        done = [v for v in map(_VIEWS, group) if v is not None]
        views = sum(done)
        return RewriteFigures(
            route, rewriter, len(costs), len(done), round(total, 6), total / len(costs) if costs else None,
            total / views * 1000 if views else None, median(done),
        )  # fmt: skip

    by_route: dict[tuple[str, str], list[PostFigures]] = defaultdict(list)
    by_kind: dict[str, list[PostFigures]] = defaultdict(list)
    for post, route, rewriter in zip(posts, map(_ROUTE, posts), map(_REWRITER, posts), strict=True):
        kind = rewriter or "none"
        by_route[(route, kind)].append(post)
        by_kind[kind].append(post)
    per_route = [figures(route, kind, group) for (route, kind), group in sorted(by_route.items())]
    per_kind = [figures("(all routes)", kind, group) for kind, group in sorted(by_kind.items())]
    return per_route, per_kind


def best_and_worst(
    posts: Sequence[PostFigures], medians: dict[tuple[str, str], float | None], options: Options
) -> tuple[list[PostLine], list[PostLine]]:
    """The week's (seven days up to options.now) posts with figures at 24 h, ranked against their target's
    median so that channels of different sizes compare."""
    if not posts:
        return [], []
    end = options.now or max(p.published_at for p in posts)
    start = end - timedelta(days=7)
    week = [p for p in posts if p.views_24h is not None and start <= p.published_at <= end]

    def key(p: PostFigures) -> tuple[float, float, int]:
        assert p.views_24h is not None
        return (ratio(p.views_24h, medians.get((p.route, p.destination))) or 0.0, p.views_24h, p.post_id)

    def line(p: PostFigures) -> PostLine:
        assert p.views_24h is not None
        share = ratio(p.views_24h, medians.get((p.route, p.destination)))
        return PostLine(p.post_id, p.route, p.destination, p.source or "(generated)", slot_label(p.slot),
                        p.published_at.isoformat(timespec="minutes"), p.views_24h, share, p.link)  # fmt: skip

    count = min(TOP_POSTS, len(week) // 2) if len(week) > 1 else len(week)
    # Each key once for both ends; of equal keys the earlier post comes first at both, as with key=.
    keys = [key(p) for p in week]
    best = heapq.nlargest(count, zip(keys, range(0, -len(week), -1), strict=True))
    worst = heapq.nsmallest(count, zip(keys, range(len(week)), strict=True)) if len(week) > 1 else []
    return [line(week[-i]) for _, i in best], [line(week[i]) for _, i in worst]


def findings(report: Insights, options: Options) -> list[str]:
    """The answers first: best donor, donors to drop, better slots, rewrite costs."""
    out: list[str] = []
    if not report.measured:
        out.append(
            f"No post has figures at 24 h yet ({report.posts} published posts measured): "
            "run `contentq insights fetch` hourly from cron (crontab.example)"
        )
        return out
    groups = _groups_of(report.donors)
    for (route, destination), donors in groups.items():
        rated = [d for d in donors if d.suggestion != "too few posts" and d.ratio is not None]
        if len(rated) >= 2:
            best = max(rated, key=lambda d: d.ratio or 0)
            out.append(f"Best donor of {route} → {destination}: {best.source}, {best.reason}")
        for donor in rated:
            if donor.suggestion == "drop":
                out.append(f"Drop {donor.source} from {route} → {destination}? {donor.reason}")
        few = [d.source for d in donors if d.suggestion == "too few posts"]
        if few:
            out.append(f"Too few posts to judge ({options.min_posts} needed) in {route}: {', '.join(few)}")
    for advice in report.better_slots:
        out.append(f"Better slot for {advice.route} → {advice.destination}: {advice.text}")
    llm = next((r for r in report.rewriters if r.rewriter == "llm" and r.posts), None)
    if llm is not None and llm.cost_per_post is not None:
        per_views = "" if llm.cost_per_1000_views is None else f", ${llm.cost_per_1000_views:.4f} per 1,000 views"
        line = f"LLM rewrite: ${llm.cost_per_post:.4f} per published post{per_views} ({llm.posts} posts)"
        others = [r for r in report.rewriters if r.rewriter != "llm" and r.median_views_24h is not None]
        if others and llm.median_views_24h is not None:
            line += "; median views at 24 h " + ", ".join(
                [f"llm {_n(llm.median_views_24h)} ({llm.measured} posts)"]
                + [f"{r.rewriter} {_n(r.median_views_24h)} ({r.measured} posts)" for r in others]
            )
        out.append(line)
    return out


def _groups_of(donors: Sequence[DonorFigures]) -> dict[tuple[str, str], list[DonorFigures]]:
    out: dict[tuple[str, str], list[DonorFigures]] = defaultdict(list)
    for donor in donors:
        out[(donor.route, donor.destination)].append(donor)
    return out
