"""Times are stored as ISO-8601 UTC strings, which sort the same way as the instants they name."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from contentq.errors import ContentqError


def now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None = None) -> str:
    dt = dt or now()
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")


def parse(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

MAX_DURATION = timedelta(days=36500)
"""The longest duration accepted anywhere (100 years): longer ones overflow date arithmetic and mean nothing."""


def parse_duration(value: str) -> timedelta:
    """'30d', '24h', '15m', '90s' or plain seconds."""
    match = _DURATION.match(value.lower())
    if not match:
        raise ContentqError(f"{value!r} is not a duration: use forms like 90s, 15m, 24h, 30d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds <= MAX_DURATION.total_seconds():  # also inf, from a number with hundreds of digits
        raise ContentqError(f"{value!r} is too long a duration: at most {MAX_DURATION.days}d")
    return timedelta(seconds=seconds)
