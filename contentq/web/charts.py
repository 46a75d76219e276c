"""Chart geometry for the panel's server-rendered SVG (no script, no CDN: the CSP stays as it is).

Each function returns plain numbers and labels; the templates draw them (Jinja escapes every label), and the SVG
scales with its `viewBox` to any width, 390 px phones included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH = 480
"""The viewBox width every chart is drawn in."""

ROW = 22
LABEL_W = 130
VALUE_W = 70


@dataclass(frozen=True)
class Bar:
    label: str
    y: float
    width: float
    value: str
    title: str
    highlight: bool = False


@dataclass(frozen=True)
class BarChart:
    """Horizontal bars, one row per item, with a reference line (the route's median)."""

    title: str
    height: float
    bars: list[Bar]
    x0: float = LABEL_W
    reference_x: float | None = None
    reference_label: str = ""


def bar_chart(title: str, items: list[tuple[str, float | None, int]], reference: float | None,
              highlight: str | None = None) -> BarChart:  # fmt: skip
    """`items`: (label, value, posts); bars scaled to the largest value (or the reference when larger)."""
    peak = max([v for _, v, _ in items if v] + ([reference] if reference else []), default=0.0)
    room = WIDTH - LABEL_W - VALUE_W
    bars = []
    for index, (label, value, posts) in enumerate(items):
        width = room * (value or 0) / peak if peak else 0
        shown = "–" if value is None else f"{value:,.0f}"
        bars.append(Bar(_short(label), 6 + index * ROW, max(width, 1.0), shown, f"{label}: {shown} ({posts} posts)",
                        label == highlight))  # fmt: skip
    ref_x = LABEL_W + room * reference / peak if reference and peak else None
    return BarChart(title, 12 + len(items) * ROW, bars, reference_x=ref_x,
                    reference_label="" if reference is None else f"median {reference:,.0f}")  # fmt: skip


@dataclass(frozen=True)
class LineChart:
    title: str
    points: str
    """'x,y x,y …' for a polyline."""
    dots: list[tuple[float, float, str]] = field(default_factory=list)
    first: str = ""
    last: str = ""
    low: str = ""
    high: str = ""
    height: float = 120


def line_chart(title: str, series: list[tuple[str, int]]) -> LineChart | None:
    """A subscriber count over time (ISO time, count), oldest first; None with fewer than two points."""
    if len(series) < 2:
        return None
    values = [v for _, v in series]
    low, high = min(values), max(values)
    span = (high - low) or 1
    left, right, top, bottom = 8.0, WIDTH - 8.0, 10.0, 100.0
    step = (right - left) / (len(series) - 1)
    coords = [(left + i * step, bottom - (v - low) / span * (bottom - top)) for i, (_, v) in enumerate(series)]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    every = max(1, len(series) // 40)  # at most ~40 dots with their own tooltip
    dots = [(x, y, f"{series[i][0][:16].replace('T', ' ')}: {series[i][1]:,}")
            for i, (x, y) in enumerate(coords) if i % every == 0 or i == len(coords) - 1]  # fmt: skip
    return LineChart(title, points, dots, series[0][0][:10], series[-1][0][:10], f"{low:,}", f"{high:,}")


LABEL_CHARS = 20


def _short(label: str) -> str:
    """A label that fits left of the bars (the bar's tooltip has it whole)."""
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
