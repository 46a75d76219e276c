"""A post's figures at a given age, read from its samples (pure functions).

Views grow with time, so posts are compared at the same age (24 h by default): the value is interpolated
linearly between the two samples that bracket that age, the post's publication (all zero) counting as the
first sample. Samples too far apart say too little about the moment in between: no value then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

METRICS = ("views", "forwards", "replies", "reactions")

AT_AGE_S = 24 * 3600
"""The age at which posts are compared: 24 h after publication."""

MAX_BRACKET_S = 12 * 3600
"""The widest gap between the two samples an age is interpolated from."""


@dataclass(frozen=True)
class Point:
    """One sample: its age (seconds since publication) and figures (None: the platform did not say)."""

    age_s: float
    values: Mapping[str, float | int | None]


PUBLISHED = Point(0, dict.fromkeys(METRICS, 0))
"""The post at its publication: nothing yet."""


def at_age(
    before: Point | None, after: Point, age_s: float = AT_AGE_S, max_gap_s: float = MAX_BRACKET_S
) -> dict[str, float | None] | None:
    """The figures at `age_s`, from the samples just before (None: the publication) and at or after it; None when
    `after` is younger than `age_s` or the two are more than `max_gap_s` apart."""
    lower = before or PUBLISHED
    if after.age_s < age_s or lower.age_s > age_s:
        return None
    if after.age_s == age_s:
        return {m: _float(after.values.get(m)) for m in METRICS}
    span = after.age_s - lower.age_s
    if span > max_gap_s:
        return None
    share = (age_s - lower.age_s) / span
    out: dict[str, float | None] = {}
    for metric in METRICS:
        low, high = _float(lower.values.get(metric)), _float(after.values.get(metric))
        out[metric] = None if low is None or high is None else low + share * (high - low)
    return out


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)
