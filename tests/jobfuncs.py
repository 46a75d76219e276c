"""Job handlers used by the tests (run with kind 'call' and handler='tests.jobfuncs:<name>')."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rq import get_current_job

from contentq.errors import ConfigError, FatalJobError, Reschedule, RetryableError
from contentq.runtime.context import JobContext


def ok(ctx: JobContext, **payload: Any) -> dict[str, Any]:
    return {"echo": payload, "attempt": ctx.attempt}


def always_fails(ctx: JobContext, **payload: Any) -> None:
    raise RuntimeError(f"boom on attempt {ctx.attempt}")


def fatal(ctx: JobContext, **payload: Any) -> None:
    raise FatalJobError("bad input: cannot be retried")


def retry_deferred(ctx: JobContext, seconds: float = 2, **payload: Any) -> None:
    """Asks for its first retry after `seconds` (arq's Retry(defer=…)); later tries keep the queue's backoff."""
    raise RetryableError(f"upstream busy on attempt {ctx.attempt}", defer=seconds if ctx.attempt == 1 else None)


def config_broken(ctx: JobContext, **payload: Any) -> None:
    raise ConfigError("route 'news' has no target; set it in contentq.toml")


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


class Escape(BaseException):
    """Not an Exception: what asyncio.CancelledError or a stray SystemExit in library code looks like to a job."""


def escapes(ctx: JobContext, **payload: Any) -> None:
    raise Escape("left without a word")


def secret_shapes(ctx: JobContext, **payload: Any) -> dict[str, Any]:
    """A result whose secrets only key-based patterns find, once it is serialised."""
    return {"password": "hunter2-hunter2", "where": Path("/srv/x?api_key=sk-abcdefghijklmnopqrstuvwx")}


def db_work(ctx: JobContext, seconds: float = 0.2, **payload: Any) -> str:
    """Writes to the database after a pause, in a transaction and as a single statement (the busy-database test)."""
    time.sleep(seconds)
    with ctx.store.transaction() as conn:
        conn.execute("UPDATE jobs SET updated_at = updated_at WHERE id = ?", (ctx.job_id,))
    ctx.log("db work", "written")
    return "written"


def in_steps(ctx: JobContext, log: str, gate: str, finish: str, **payload: Any) -> str:
    """A job in steps, a safe point (`ctx.checkpoint()`) between each. A step waits for the file `gate` (work
    that cannot be cut, as long as the test wants); the run ends once the file `finish` exists. Each run
    appends `start|end <rq id> <time.time()>` to `log`, so a test sees whether two runs overlapped."""
    rq_job = get_current_job()
    run = rq_job.id if rq_job is not None else ctx.job_id
    _note(log, "start", run)
    try:
        deadline = time.monotonic() + 120
        while not Path(finish).exists() and time.monotonic() < deadline:
            while not Path(gate).exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            ctx.checkpoint("between two steps")
            time.sleep(0.05)
    finally:
        _note(log, "end", run)
    return "finished"


def _note(log: str, what: str, run: str) -> None:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"{what} {run} {time.time():.6f}\n")


def deep_failure(ctx: JobContext, depth: int = 300, **payload: Any) -> None:
    """Fails at the bottom of a deep call chain: a traceback longer than any stored whole (two functions taking
    turns: Python folds a frame repeated over and over into one line)."""

    def down(n: int) -> None:
        if n == 0:
            raise ValueError("the real cause, at the bottom")
        across(n - 1)

    def across(n: int) -> None:
        down(n)

    down(depth)
