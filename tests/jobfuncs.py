"""Job handlers used by the tests (run with kind 'call' and handler='tests.jobfuncs:<name>')."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from contentq.errors import FatalJobError, Reschedule
from contentq.runtime.context import JobContext


def ok(ctx: JobContext, **payload: Any) -> dict[str, Any]:
    return {"echo": payload, "attempt": ctx.attempt}


def always_fails(ctx: JobContext, **payload: Any) -> None:
    raise RuntimeError(f"boom on attempt {ctx.attempt}")


def fatal(ctx: JobContext, **payload: Any) -> None:
    raise FatalJobError("bad input: cannot be retried")


def reschedule_once(ctx: JobContext, **payload: Any) -> str:
    if ctx.attempt == 1:
        raise Reschedule(payload.get("delay", 2), "FLOOD_WAIT of 2 s")
    return "done"


def slow_first_time(ctx: JobContext, marker: str, seconds: float = 60, **payload: Any) -> str:
    """Signals that it runs, then hangs on the first attempt (the test SIGKILLs the worker)."""
    path = Path(marker)
    if ctx.attempt == 1:
        path.write_text(str(os.getpid()))
        time.sleep(seconds)
    return "second time lucky"


def sleep(ctx: JobContext, seconds: float = 1, **payload: Any) -> None:
    time.sleep(seconds)
