"""The token bucket of each destination account, as `contentq queue status` shows it: how many sends it holds
now, when the next one is free, and the deliveries waiting for the account (docs/destinations.md).

The buckets live in SQLite (`rate_buckets`, written by `DeliveryRun.take_token`): a send takes one token; tokens
come back at the account's `per_hour` rate up to its `burst`. Defaults follow each platform's documents (X:
200 tweets per 15 min and 300 per 3 h per user; Instagram: 100 API posts per 24 h, read from the API as well);
`[accounts.x.NAME] limit = { burst = …, per_hour = … }` changes them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from contentq.clock import iso
from contentq.errors import ContentqError
from contentq.routes import BucketLimit, Destination
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime
from contentq.store.deliveries import bucket_level, waiting_deliveries


def level_now(limit: BucketLimit, level: tuple[float, float] | None, now_s: float) -> float:
    """Tokens in the bucket at `now_s` (full when it was never used)."""
    if level is None:
        return float(limit.burst)
    tokens, updated = level
    return min(float(limit.burst), tokens + max(0.0, now_s - updated) * limit.per_hour / 3600.0)


def destination_limits(runtime: Runtime) -> list[dict[str, Any]]:
    """One row per X or Instagram account a route publishes to."""
    try:
        config = routes_config(runtime)
    except ContentqError:
        return []
    accounts = sorted(
        {d for route in config.routes.values() for d in route.destination_list if d.platform != "telegram"},
        key=lambda d: d.key,
    )
    now_s = time.time()
    return [_row(runtime, d, now_s) for d in accounts]


def _row(runtime: Runtime, dest: Destination, now_s: float) -> dict[str, Any]:
    config = routes_config(runtime)
    limit = config.x_account(dest.account).limit if dest.platform == "x" else None
    if limit is None:
        accounts = config.accounts.instagram
        limit = accounts[dest.account].limit if dest.account in accounts else None
    waiting, due = waiting_deliveries(runtime.store, dest.platform, dest.account)
    row: dict[str, Any] = {"destination": dest.key, "waiting": waiting, "next_due": due}
    if limit is None:
        return {**row, "burst": None, "per_hour": None, "tokens": None, "next_free": None}
    tokens = level_now(limit, bucket_level(runtime.store, dest.key), now_s)
    free_in = 0.0 if tokens >= 1 else (1 - tokens) / (limit.per_hour / 3600.0)
    next_free = "now" if free_in <= 0 else iso(datetime.fromtimestamp(now_s + free_in, UTC))
    return {**row, "burst": limit.burst, "per_hour": round(limit.per_hour, 2), "tokens": round(tokens, 1),
            "next_free": next_free}  # fmt: skip
