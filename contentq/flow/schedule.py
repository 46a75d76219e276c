"""Publishing slots per route: times of day on chosen days in an IANA time zone, or `asap`, with a
maximum per day, a minimum gap between posts and a minimum age of the donor post.

Slot times are wall-clock times in the route's zone, so `09:00` in Europe/Berlin is 08:00 UTC in winter
and 07:00 UTC in summer. On the night clocks go forward a time that does not exist (02:30) moves forward
by the gap (to 03:30); on the night they go back a time that happens twice is taken the first time.
Two slot times that land on one instant are one slot. "The next free slot" is chosen inside the write
transaction that schedules the post, so two posts never get one slot.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contentq.clock import MAX_DURATION, iso, now, parse, parse_duration
from contentq.errors import ConfigError, ContentqError
from contentq.routes import DAYS, Route, Schedule
from contentq.store import Store

HORIZON_DAYS = 400
"""How far ahead a free slot is looked for before giving up (a schedule that can never take a post)."""

OCCUPYING_STATES = ("scheduled", "publishing", "published")
"""Posts in these states hold their slot (and count for max_per_day and min_gap)."""

ASAP_SPACING = timedelta(seconds=1)
"""With asap and no min_gap, two posts still get distinct instants."""


def local_times(
    times: list[str], days: list[str], timezone: str, after: datetime, *, horizon_days: int = HORIZON_DAYS
) -> Iterator[datetime]:
    """UTC instants of the local `times` on allowed `days` in `timezone`, at or after `after`, in order."""
    zone = ZoneInfo(timezone)
    wall = sorted({time.fromisoformat(t) for t in times})
    first_day = after.astimezone(zone).date() - timedelta(days=1)  # a zone behind UTC: yesterday's slots count
    for offset in range(horizon_days + 2):
        day = first_day + timedelta(days=offset)
        if DAYS[day.weekday()] not in days:
            continue
        # fold=0: a time in the spring-forward gap resolves to the offset before it (later wall time);
        # a repeated autumn time resolves to its first occurrence.
        instants = sorted({datetime.combine(day, t, tzinfo=zone).astimezone(UTC) for t in wall})
        for instant in instants:
            if instant >= after:
                yield instant


def local_day(instant: datetime, timezone: str) -> date:
    return instant.astimezone(ZoneInfo(timezone)).date()


def next_local_midnight(instant: datetime, timezone: str) -> datetime:
    zone = ZoneInfo(timezone)
    tomorrow = instant.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=zone).astimezone(UTC)


def earliest_for(schedule: Schedule, posted_at: str | None, current: datetime | None = None) -> datetime:
    """A post may not go out before now, nor before its donor post is min_age_minutes old."""
    earliest = current or now()
    if posted_at and schedule.min_age_minutes:
        earliest = max(earliest, parse(posted_at) + timedelta(minutes=schedule.min_age_minutes))
    return earliest


def occupied(store: Store, route: str, since: datetime, exclude_post_id: int | None = None) -> list[datetime]:
    """Instants held by the route's posts from `since` on (published ones by their slot, else publish time)."""
    placeholders = ", ".join("?" for _ in OCCUPYING_STATES)
    rows = store.query(
        f"SELECT id, COALESCE(scheduled_at, published_at) AS at FROM posts WHERE route = ?"
        f" AND state IN ({placeholders}) AND COALESCE(scheduled_at, published_at) >= ?",
        (route, *OCCUPYING_STATES, iso(since)),
    )
    return sorted(parse(r["at"]) for r in rows if r["id"] != exclude_post_id and r["at"])


def _per_day(taken: list[datetime], timezone: str) -> dict[date, int]:
    counts: dict[date, int] = {}
    for instant in taken:
        day = local_day(instant, timezone)
        counts[day] = counts.get(day, 0) + 1
    return counts


def next_free_slot(
    store: Store,
    route: Route,
    *,
    not_before: datetime,
    exclude_post_id: int | None = None,
) -> datetime:
    """The first instant at or after `not_before` that the route's schedule allows and no post holds.

    Call it inside the transaction that writes the post's scheduled_at, so the answer is still free then.
    """
    sched = route.schedule
    gap = timedelta(minutes=sched.min_gap_minutes)
    lookback = not_before - max(gap, timedelta(days=1)) - timedelta(days=1)
    taken = occupied(store, route.name, lookback, exclude_post_id)
    found = first_free(sched, taken, not_before)
    if found is None:
        what = "publishing time" if sched.asap else "publishing slot"
        how = "days and max_per_day" if sched.asap else "days, slots and max_per_day"
        raise ConfigError(
            f"route {route.name!r}: no free {what} in the next {HORIZON_DAYS} days; "
            f"check [schedule] {how} in contentq.toml"
        )
    return found


def first_free(sched: Schedule, taken: list[datetime], not_before: datetime) -> datetime | None:
    """The first instant at or after `not_before` that `sched` allows and the sorted instants `taken` leave free
    (None within HORIZON_DAYS). Each step looks at the taken instants near its candidate by bisection: a route
    with a backlog of thousands of scheduled posts costs a new post a few bisections a step, not a scan."""
    gap = timedelta(minutes=sched.min_gap_minutes)
    counts = _per_day(taken, sched.timezone)

    def day_full(instant: datetime) -> bool:
        return sched.max_per_day is not None and counts.get(local_day(instant, sched.timezone), 0) >= sched.max_per_day

    def near(candidate: datetime, within: timedelta) -> list[datetime]:
        """The taken instants closer to `candidate` than `within`, in order."""
        return taken[bisect_right(taken, candidate - within) : bisect_left(taken, candidate + within)]

    if not sched.asap:
        for candidate in local_times(sched.slots, sched.days, sched.timezone, not_before):
            if day_full(candidate):
                continue
            held = bisect_left(taken, candidate)
            if (held < len(taken) and taken[held] == candidate) or near(candidate, gap):
                continue
            return candidate
        return None

    spacing = max(gap, ASAP_SPACING)
    candidate = not_before
    limit = not_before + timedelta(days=HORIZON_DAYS)
    while candidate < limit:
        if DAYS[candidate.astimezone(ZoneInfo(sched.timezone)).weekday()] not in sched.days or day_full(candidate):
            candidate = next_local_midnight(candidate, sched.timezone)
            continue
        conflicts = near(candidate, spacing)
        if conflicts:
            candidate = conflicts[-1] + spacing
            continue
        return candidate
    return None


PAST_TOLERANCE = timedelta(minutes=1)
"""A fixed time this little in the past still counts as now (the operator typed the current minute)."""


def parse_at(value: str, timezone: str, current: datetime | None = None) -> datetime:
    """A time given by the operator: 'now', '+2h' / '30m' (from now), 'HH:MM' (next such time in the route's
    zone), 'YYYY-MM-DD HH:MM' (in the route's zone) or an ISO time with an offset ('…T09:00+02:00', '…Z').
    A time in the past (other than 'now') is refused."""
    return resolve_at(value, timezone, current)[0]


def _gap_note(wall: datetime, instant: datetime, zone: ZoneInfo) -> str | None:
    """When a local wall time does not exist (the clocks jump forward over it), say where it landed."""
    local = instant.astimezone(zone)
    if local.replace(tzinfo=None) == wall.replace(tzinfo=None):
        return None
    return (
        f"{wall:%Y-%m-%d %H:%M} does not exist in {zone.key} (the clocks jump forward then): "
        f"scheduled for {local:%Y-%m-%d %H:%M %Z} instead"
    )


def resolve_at(value: str, timezone: str, current: datetime | None = None) -> tuple[datetime, str | None]:
    """`parse_at`, plus a note when a daylight-saving gap moved the requested local time."""
    current = current or now()
    text = value.strip()
    if text.lower() == "now":
        return current, None
    if text.startswith("+") or (text[-1:].isalpha() and text[:-1].replace(".", "", 1).isdigit()):
        return current + parse_duration(text.lstrip("+")), None
    zone = ZoneInfo(timezone)
    try:
        wall = time.fromisoformat(text)
    except ValueError:
        pass
    else:
        today = current.astimezone(zone).date()
        for offset in (0, 1, 2):
            local = datetime.combine(today + timedelta(days=offset), wall, tzinfo=zone)
            instant = local.astimezone(UTC)
            if instant > current:
                return instant, _gap_note(local, instant, zone)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ContentqError(
            f"{value!r} is not a time: use 'now', '+2h', '18:30', '2025-06-01 18:30' (in the route's time zone "
            f"{timezone}) or an ISO time with an offset"
        ) from None
    note = None
    try:  # 0001-01-01 or 9999-12-31 with an offset falls off the calendar in UTC
        if parsed.tzinfo is None:
            local = parsed.replace(tzinfo=zone)
            instant = local.astimezone(UTC)
            note = _gap_note(local, instant, zone)
        else:
            instant = parsed.astimezone(UTC)
    except OverflowError:
        raise ContentqError(f"{value!r} is out of the calendar's range; give a time in the next years") from None
    if instant - current > MAX_DURATION:
        raise ContentqError(f"{value!r} is more than {MAX_DURATION.days} days ahead; give a nearer time")
    if instant < current - PAST_TOLERANCE:
        shown = instant.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        raise ContentqError(
            f"{value!r} ({shown}, {timezone}) is in the past; give a future time, or 'now' to publish right away"
        )
    return instant, note


def describe(schedule: Schedule) -> str:
    """One line for listings: 'asap' or '09:00, 18:00 mon–fri Europe/Berlin, ≤4/day, gap 90m'."""
    head = "asap" if schedule.asap else ", ".join(schedule.slots)
    if list(schedule.days) != list(DAYS):
        head += " " + ",".join(schedule.days)
    extra = [schedule.timezone]
    if schedule.max_per_day is not None:
        extra.append(f"≤{schedule.max_per_day}/day")
    if schedule.min_gap_minutes:
        extra.append(f"gap {schedule.min_gap_minutes}m")
    if schedule.min_age_minutes:
        extra.append(f"age ≥{schedule.min_age_minutes}m")
    return f"{head} ({', '.join(extra)})"


def in_zone(instant: str | None, timezone: str) -> str | None:
    """An ISO UTC instant shown as wall-clock time in a zone: '2025-03-30 09:00 CEST'."""
    if not instant:
        return None
    local = parse(instant).astimezone(ZoneInfo(timezone))
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def schedule_rows(store: Store, routes: dict[str, Route], *, limit: int = 500) -> list[dict[str, Any]]:
    """Scheduled (and publishing) posts, soonest first, with their local slot time."""
    rows = store.query(
        "SELECT id, route, target, state, scheduled_at, dispatched_at, title, posted_at FROM posts"
        " WHERE state IN ('scheduled', 'publishing') ORDER BY scheduled_at, id LIMIT ?",
        (limit,),
    )
    for row in rows:
        route = routes.get(row["route"])
        if route is not None:
            row["local_time"] = in_zone(row["scheduled_at"], route.schedule.timezone)
            row["target"] = row["target"] or route.target
        else:
            row["local_time"] = None
    return rows
