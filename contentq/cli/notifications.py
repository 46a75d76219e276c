"""`contentq notifications`: the admin alerts contentq sent (to the admin chat, or to the log without one)."""

from __future__ import annotations

from typing import Annotated

import typer

from contentq.cli.common import LIMIT_MAX, JsonOpt, WideOpt, runtime
from contentq.cli.render import Col, print_json, table
from contentq.clock import iso, now, parse_duration
from contentq.errors import ContentqError
from contentq.store.notifications import list_notifications

LEVELS = ("info", "warning", "error")


def notifications(
    since: Annotated[str, typer.Option(help="Window, e.g. 24h, 7d, or all.")] = "7d",
    level: Annotated[str | None, typer.Option(help=f"Only this level: {', '.join(LEVELS)}.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=LIMIT_MAX)] = 50,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Admin notifications sent, newest first: when, level, key, message; repeats held back within the throttle."""
    if level is not None and level not in LEVELS:
        raise ContentqError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
    since_iso = None if since.strip().lower() == "all" else iso(now() - parse_duration(since))
    rows = list_notifications(runtime().store, since=since_iso, level=level, limit=limit)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["sent"] = "yes" if row["delivered"] else "FAILED"
        row["repeats"] = row["suppressed"] or None
    window = "ever" if since_iso is None else f"in the last {since}"
    table(
        rows,
        ["at", "level", Col("key", wide=True), "sent", ("repeats", "held back"), Col("message", fit="wrap")],
        title="admin notifications", empty=f"no notifications {window}", wide=wide,
    )  # fmt: skip
