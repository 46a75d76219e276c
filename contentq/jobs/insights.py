"""Insights fetch jobs (docs/insights.md): `insights` on the maintenance queue, `insights_telegram` on collect.

`contentq insights fetch` (cron) enqueues `insights` with a new round. It measures X and Instagram (HTTP, any
process) and hands Telegram to `insights_telegram`, which runs in the Telegram worker: one session, one process.
A wait a platform asks for is a `Reschedule` of the same round (contentq.insights.fetch).
"""

from __future__ import annotations

from typing import Any

from contentq.insights.fetch import fetch_round, telegram_due
from contentq.runtime.context import JobContext


def run(ctx: JobContext, round: str, days: int | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
    if telegram_due(ctx.runtime, days):
        ctx.enqueue_child("insights_telegram", f"round {round}", {"round": round, "days": days})
    report = fetch_round(
        ctx.runtime, round, days=days, platforms=("x", "instagram"), log=ctx.log, checkpoint=ctx.checkpoint
    )
    ctx.log("summary", f"{report.sampled} samples of {report.items} posts on X and Instagram",
            requests=report.requests, notes=report.notes)  # fmt: skip
    return report.as_dict()


def run_telegram(ctx: JobContext, round: str, days: int | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
    report = fetch_round(ctx.runtime, round, days=days, platforms=("telegram",), log=ctx.log, checkpoint=ctx.checkpoint)
    ctx.log(
        "summary",
        f"{report.sampled} samples of {report.items} posts, {report.gone} deleted, "
        f"{report.requests.get('telegram', 0)} requests",
        requests=report.requests,
    )
    return report.as_dict()
