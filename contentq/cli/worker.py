"""`contentq worker`: run an RQ worker with contentq's worker class."""

from __future__ import annotations

from typing import Annotated

import typer

from contentq.cli.common import finite, runtime
from contentq.logs import setup_logging
from contentq.runtime.worker import BURST_HORIZON, run_worker
from contentq.settings import QUEUES


def worker(
    queues: Annotated[
        list[str] | None,
        typer.Argument(
            help=f"Queues to work on, in the order jobs are taken from them, any of: {', '.join(QUEUES)}"
            " (default: all, in that order)."
        ),
    ] = None,
    burst: Annotated[
        bool,
        typer.Option("--burst", help="Run the queued jobs, wait for those due within --horizon, then exit."),
    ] = False,
    horizon: Annotated[
        float,
        typer.Option(
            "--horizon",
            metavar="SECONDS",
            help="With --burst: also wait for delayed jobs (asap slots, retries) due within this many seconds.",
            min=0,
            max=3600,
            callback=finite,
        ),
    ] = BURST_HORIZON,
    name: Annotated[str | None, typer.Option("--name", help="Worker name (default: host.pid).")] = None,
) -> None:
    """Run a worker: takes jobs from QUEUES in the order given (default: all, in priority order).

    SIGTERM finishes the current job and exits (warm shutdown); paused queues are skipped.
    """
    rt = runtime()
    setup_logging(rt.settings, rt.settings.log_level)
    run_worker(rt, list(queues or []), burst=burst, name=name, horizon=horizon)
