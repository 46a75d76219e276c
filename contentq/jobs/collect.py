"""The collect job (queue collect, key = the source ref): collect one donor channel."""

from __future__ import annotations

from typing import Any

from contentq.collect import CollectFailed, collect_source
from contentq.redact import redact
from contentq.runtime.context import FatalJobError, JobContext, Reschedule


def run(ctx: JobContext, source: str, **_: Any) -> dict[str, Any]:
    try:
        return collect_source(ctx, source).as_dict()
    except CollectFailed as exc:
        raise FatalJobError(str(exc)) from exc
    except Reschedule:
        raise
    except Exception as exc:
        if ctx.is_last_attempt:
            ctx.notify(
                f"collect-failed:{source}",
                f"collect from {source} failed after {ctx.attempt} attempts: {redact(exc)}; "
                f"see `contentq jobs logs {ctx.job_id}`",
                level="error",
            )
        raise
