"""`contentq worker`: run an RQ worker with contentq's worker class."""

from __future__ import annotations

from typing import Annotated

import typer

from contentq.cli.common import finite, runtime
from contentq.cli.render import err_console
from contentq.errors import ContentqError
from contentq.logs import setup_logging
from contentq.runtime.context import Runtime
from contentq.runtime.hosting import Hosted
from contentq.runtime.worker import BURST_HORIZON, run_worker
from contentq.settings import QUEUES

HOSTABLE = ("listen", "bot")


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
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            metavar="listen,bot",
            help="Also run, in this process: `listen` (one listener per account that reads sources) and/or `bot`"
            " (the admin bot, when CONTENTQ_BOT_TOKEN is set). One process hosts each at a time (a lease in Redis).",
        ),
    ] = None,
) -> None:
    """Run a worker: takes jobs from QUEUES in the order given (default: all, in priority order).

    SIGTERM finishes the current job and exits (warm shutdown); paused queues are skipped.
    """
    wanted = _hostable(host or [])
    if wanted and burst:
        raise ContentqError("--host runs services until the worker stops: it does not go with --burst")
    rt = runtime()
    setup_logging(rt.settings, rt.settings.log_level)
    run_worker(rt, list(queues or []), burst=burst, name=name, horizon=horizon, hosted=_hosted(rt, wanted))


def _hostable(given: list[str]) -> list[str]:
    wanted = [w.strip() for item in given for w in item.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in HOSTABLE]
    if unknown:
        raise ContentqError(f"--host {', '.join(unknown)}: the worker hosts {' and '.join(HOSTABLE)}")
    return list(dict.fromkeys(wanted))


def _hosted(rt: Runtime, wanted: list[str]) -> list[Hosted]:
    services: list[Hosted] = []
    if "listen" in wanted:
        from contentq.intake.listen import hosted_listeners  # the collect path: only a hosting worker loads it here

        services += hosted_listeners(rt)
    if "bot" in wanted:
        from contentq.bot.serve import hosted_bot
        from contentq.ops.bot_alive import bot_wanted

        if bot_wanted(rt.settings):
            services.append(hosted_bot(rt))
        else:
            err_console.print("note: --host bot: CONTENTQ_BOT_TOKEN is not set, so no bot runs here (docs/bot.md)")
    return services
