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


def listen(
    sources: Annotated[list[str] | None, typer.Argument(help="Sources to listen to (default: every source).")] = None,
    name: Annotated[
        str, typer.Option("--name", help="The listener's name in health and doctor (one per Telegram session).")
    ] = "listen",
) -> None:
    """Collect donor posts as they arrive (and follow their edits and deletions) until stopped (TERM, Ctrl-C).

    Catches up from each source's cursor on start and after every reconnect; cron `collect` may keep running."""
    from contentq.listen import Listener

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
    listener = Listener(rt, _selected_sources(rt, sources), name=name)

    def stop(signum: int, frame: FrameType | None) -> None:
        listener.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    counts = listener.run()
    summary(f"listener {name} stopped", counts.lines())
