"""`contentq listen`: the long-running real-time collector (one per Telegram session, under supervisor)."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from contentq.cli.collect import _selected_sources
from contentq.cli.common import runtime
from contentq.cli.render import err_console, summary
from contentq.routes import load_routes
from contentq.settings import Settings, get_settings


def listen(
    sources: Annotated[list[str] | None, typer.Argument(help="Sources to listen to (default: every source).")] = None,
    name: Annotated[
        str, typer.Option("--name", help="The listener's name in health and doctor (one per Telegram session).")
    ] = "listen",
) -> None:
    """Collect donor posts as they arrive (and follow their edits and deletions) until stopped (TERM, Ctrl-C).

    Catches up from each source's cursor on start and after every reconnect; cron `collect` may keep running.
    Not logged in yet (or Telegram unreachable), it waits and says why in `contentq health`, never exits."""
    from contentq.intake.listen import ListenService

    rt = runtime()
    stopping = threading.Event()
    if not sources and not load_routes(rt.settings.config_path).sources():
        # Under supervisor with no donors yet (outbox or import only): stay up quietly instead of failing.
        err_console.print(f"note: no sources in {rt.settings.config_path}: nothing to listen to; waiting "
                          "(add sources to a route, then restart the listener)")  # fmt: skip
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
        signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
        while not stopping.wait(1.0):
            pass
        return
    _selected_sources(rt, sources)  # a source named wrong is an error now, not a wait
    service = ListenService(_fresh_settings, lambda own: _selected_sources(own, sources), name=name)

    def stop(signum: int, frame: FrameType | None) -> None:
        service.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    counts = service.run()
    summary(f"listener {name} stopped", counts.lines())


def _fresh_settings() -> Settings:
    """The settings read anew: a listener waiting for a login sees the API keys `.env` gained meanwhile."""
    get_settings.cache_clear()
    return get_settings()
