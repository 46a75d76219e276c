"""The collect job (queue collect, key = the source ref): collect one donor channel.

`collect_source` raises what the runner maps: `CollectFailed` (fatal: a dead session, an unreadable source;
the admin was told) and `Reschedule` (a flood wait). Anything else fails this try; the admin hears of it
when it was the last one, or when it cannot be retried (a broken contentq.toml).
"""

from __future__ import annotations

from typing import Any

from contentq.errors import FatalJobError, Reschedule
from contentq.intake.collect import CollectFailed, collect_source
from contentq.redact import redact
from contentq.runtime.context import JobContext


def run(ctx: JobContext, source: str, **_: Any) -> dict[str, Any]:
    try:
        return collect_source(ctx, source).as_dict()
    except (CollectFailed, Reschedule):  # the admin was told already, or it is not a failure
        raise
    except Exception as exc:
        if isinstance(exc, FatalJobError) or ctx.is_last_attempt:
            after = "" if isinstance(exc, FatalJobError) else f" after {ctx.attempt} attempts"
            ctx.notify(
                f"collect-failed:{source}",
                f"collect from {source} failed{after}: {redact(exc)}; see `contentq jobs logs {ctx.job_id}`",
                level="error",
            )
        raise
