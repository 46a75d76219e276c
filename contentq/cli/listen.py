"""`contentq listen`: the long-running real-time collector (one per Telegram session, under supervisor)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer

from contentq.cli.collect import _selected_sources
from contentq.cli.common import runtime
from contentq.cli.render import summary


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
    listener = Listener(rt, _selected_sources(rt, sources), name=name)

    def stop(signum: int, frame: FrameType | None) -> None:
        listener.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    counts = listener.run()
    summary(f"listener {name} stopped", counts.lines())
