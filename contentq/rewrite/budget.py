"""Cost budgets: what a route, and all routes together, may spend on paid APIs per day and per calendar month.

`check(runtime, route, kind)` is the gate every paid call of a route passes before it is made: the rewrite's
model calls, an auto-posting rule's, an image from an image API (and batches). It sums the `usage` table's cost
(LLM calls and images, at rewrite/prices.py's prices) since the period began and says whether the call may go.
At 80 % of a budget the admin is told once per period; at 100 % once more, and the route's paid work stops
until the period turns: under `on_budget = "wait"` its posts wait (the job is rescheduled for the period's end
by the ordinary reschedule, no try spent, the reason on the post and the job); under `"clean"` the clean
rewriter rewrites them and images are cards. An auto-post has no donor text to clean: it waits.

The check runs before each call, so a route stops within one post of its budget per worker running its posts
at the same time (a call already under way is paid). docs/costs.md, "Budgets".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from contentq.clock import iso, now
from contentq.errors import Reschedule
from contentq.routes import Budget, OverallBudget, Route
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime
from contentq.store.usage import spent_since

ALERT_SHARE = 0.8
"""The share of a budget at which the admin is told (once per period) that it runs out."""

Kind = Literal["rewrite", "generate", "image", "batch"]
"""What the paid call is for: a post's rewrite, an auto-post, an image, a batch of rewrites."""

Period = Literal["day", "month"]

OVERALL = "all routes"
"""The scope of the [budget] table, as messages name it."""

_WHAT = {"rewrite": "rewrites", "generate": "auto-posts", "image": "images", "batch": "batch rewrites"}
_PERIOD_NAME = {"day": "daily", "month": "monthly"}


def period_bounds(instant: datetime, period: Period, timezone: str) -> tuple[datetime, datetime]:
    """The day or calendar month (in `timezone`) that holds `instant`: its start and its end, as aware datetimes."""
    local = instant.astimezone(ZoneInfo(timezone))
    if period == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=1, hours=3)).replace(hour=0)  # a DST day has 23 or 25 hours
    else:
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
    return start, end


@dataclass(frozen=True)
class Spending:
    """One budget against what was spent in its current period."""

    scope: str
    """`route news`, or `all routes` for the [budget] table."""
    period: Period
    limit: float
    spent: float
    start: datetime
    end: datetime

    @property
    def share(self) -> float:
        return self.spent / self.limit

    @property
    def label(self) -> str:
        """The period as a name: 2030-01-01 (a day), 2030-01 (a month)."""
        return self.start.strftime("%Y-%m-%d" if self.period == "day" else "%Y-%m")

    def describe(self) -> str:
        budget = f"{_PERIOD_NAME[self.period]} budget of ${self.limit:.2f}"
        if self.scope == OVERALL:
            return f"all routes have spent ${self.spent:.2f} of the overall {budget}"
        return f"{self.scope} has spent ${self.spent:.2f} of its {budget}"


@dataclass(frozen=True)
class BudgetVerdict:
    """Whether a route's paid call may go; when not, what happens instead and until when."""

    route: str | None
    kind: Kind
    action: Literal["go", "wait", "clean"]
    """go: within budget; wait: the post waits for `resume_at`; clean: the clean rewriter (a card image) instead."""
    reason: str | None
    """Why it stopped, in words for the post, the job and the admin (None when it goes)."""
    resume_at: datetime | None
    """When every spent budget's period has turned (None when it goes)."""
    spending: tuple[Spending, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.action == "go"

    @property
    def wait_seconds(self) -> float:
        if self.resume_at is None:
            return 0.0
        return max(1.0, (self.resume_at - now()).total_seconds() + 1.0)

    def enforce(self) -> None:
        """Raise BudgetExceeded unless the call may go."""
        if not self.allowed:
            raise BudgetExceeded(self)


class BudgetExceeded(Reschedule):
    """A route's budget (or the overall one) is spent: a wait until the period turns, which the job runner
    reschedules like any other wait; a caller that can do without the paid call (the clean rewriter, a card
    image) catches it when `verdict.action` is "clean"."""

    def __init__(self, verdict: BudgetVerdict) -> None:
        super().__init__(verdict.wait_seconds, verdict.reason or "the budget is spent")
        self.verdict = verdict


def _spending(runtime: Runtime, budget: Budget, scope: str, route: str | None, timezone: str) -> list[Spending]:
    current = now()
    found = []
    for period, limit in budget.limits.items():
        start, end = period_bounds(current, period, timezone)
        spent = spent_since(runtime.store, iso(start), route=route)
        found.append(Spending(scope, period, limit, spent, start, end))
    return found


def _when(instant: datetime, timezone: str) -> str:
    local = instant.astimezone(ZoneInfo(timezone))
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or timezone)


def _consequence(action: str, kind: Kind, until: str) -> str:
    if action == "clean":
        return f'until {until} the clean rewriter rewrites its posts and images are cards (on_budget = "clean")'
    return f'{_WHAT[kind]} wait until {until} (on_budget = "wait")'


def check(runtime: Runtime, route: Route | None, kind: Kind) -> BudgetVerdict:
    """The gate before a paid call of `route` (None: a post whose route is gone, held to the overall budget only).
    Tells the admin once per period when a budget passes 80 % and when it is spent."""
    path = runtime.settings.config_path
    overall = routes_config(runtime).budget if path.exists() else OverallBudget()
    timezone = overall.timezone
    spending = _spending(runtime, overall, OVERALL, None, timezone)
    if route is not None:
        spending = _spending(runtime, route.budget, f"route {route.name}", route.name, timezone) + spending
    on_budget = (route.budget.on_budget if route is not None else None) or overall.on_budget or "wait"
    action: Literal["wait", "clean"] = "wait" if kind == "generate" else on_budget  # no donor text to clean
    spent = [s for s in spending if s.spent >= s.limit]
    resume_at = max((s.end for s in spent), default=None)
    for item in spending:
        _alert(runtime, item, action, kind, timezone)
    if resume_at is None:
        return BudgetVerdict(route.name if route else None, kind, "go", None, None, tuple(spending))
    reason = "; ".join(s.describe() for s in spent) + ": " + _consequence(action, kind, _when(resume_at, timezone))
    return BudgetVerdict(route.name if route else None, kind, action, reason, resume_at, tuple(spending))


def _alert(runtime: Runtime, item: Spending, action: str, kind: Kind, timezone: str) -> None:
    """One alert per budget and period at 80 %, one at 100 % (the key names the period: `once`)."""
    if item.share < ALERT_SHARE:
        return
    scope = "all" if item.scope == OVERALL else item.scope.replace(" ", ":")
    key = f"budget:{scope}:{item.period}:{item.label}"
    until = _when(item.end, timezone)
    then = (
        f"every route's paid calls stop until {until} (each by its on_budget)"
        if item.scope == OVERALL
        else _consequence(action, kind, until)
    )
    if item.share >= 1:
        runtime.notifier.notify(f"{key}:100", f"budget spent: {item.describe()}; {then}", level="error", once=True)
        return
    runtime.notifier.notify(
        f"{key}:80", f"budget at {item.share:.0%}: {item.describe()}; once it is spent, {then}", once=True
    )


def gate(runtime: Runtime, kind: Kind) -> _Gate:
    """The check as LLMRewriter's gate: called before every model call, raises BudgetExceeded when spent."""
    return _Gate(runtime, kind)


@dataclass(frozen=True)
class _Gate:
    runtime: Runtime
    kind: Kind

    def __call__(self, route: Route) -> None:
        check(self.runtime, route, self.kind).enforce()


def status(runtime: Runtime) -> list[dict[str, Any]]:
    """Every configured budget with what its current period has spent (for `contentq usage`): scope, period,
    limit, spent, share, on_budget, and when the period ends (UTC)."""
    path = runtime.settings.config_path
    if not path.exists():
        return []
    config = routes_config(runtime)
    overall = config.budget
    rows = []
    for name, route in config.routes.items():
        on_budget = route.budget.on_budget or overall.on_budget or "wait"
        for item in _spending(runtime, route.budget, f"route {name}", name, overall.timezone):
            rows.append(_status_row(item, on_budget))
    for item in _spending(runtime, overall, OVERALL, None, overall.timezone):
        rows.append(_status_row(item, overall.on_budget or "wait"))
    return rows


def _status_row(item: Spending, on_budget: str) -> dict[str, Any]:
    return {
        "budget": item.scope,
        "period": item.period,
        "limit": item.limit,
        "spent": round(item.spent, 6),
        "share": round(item.share, 4),
        "on_budget": on_budget,
        "state": "spent" if item.share >= 1 else "warned" if item.share >= ALERT_SHARE else "ok",
        "ends_at": iso(item.end),
    }
