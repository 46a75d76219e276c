"""`contentq listen`: the long-running real-time collector (one per Telegram session, under supervisor)."""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import Annotated

import typer

from contentq.cli.collect import _selected_sources
from contentq.cli.common import runtime
from contentq.cli.render import err_console, summary
from contentq.errors import ContentqError
from contentq.routes import load_routes
from contentq.runtime.context import Runtime
from contentq.settings import Settings, get_settings


def listen(
    sources: Annotated[list[str] | None, typer.Argument(help="Sources to listen to (default: every source).")] = None,
    name: Annotated[
        str, typer.Option("--name", help="The listener's name in health and doctor (one per Telegram session).")
    ] = "listen",
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            help="The Telegram account that listens (default: the default account); it takes the sources it reads.",
        ),
    ] = None,
) -> None:
    """Collect donor posts as they arrive (and follow their edits and deletions) until stopped (TERM, Ctrl-C).

    Catches up from each source's cursor on start and after every reconnect; cron `collect` may keep running.
    Not logged in yet (or Telegram unreachable), it waits and says why in `contentq health`, never exits."""
    from contentq.accounts import default_account
    from contentq.intake.ingest import Counts
    from contentq.intake.listen import ListenService, listener_name
    from contentq.runtime.hosting import Hosted, run_alone

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
    _listened(rt, sources, account)  # a source named wrong is an error now, not a wait
    runs: list[ListenService] = []

    def make() -> ListenService:
        runs.append(ListenService(_fresh_settings, lambda own: _listened(own, sources, account), name=name,
                                  account=account))  # fmt: skip
        return runs[-1]

    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    # The lease of the account's session, the one a worker hosting its listener takes: one listener a session.
    default = default_account(rt.store)
    lease = listener_name(account or default, default)
    run_alone(rt.redis, Hosted(lease, make), stopping, owner=f"{socket.gethostname()}.{os.getpid()}")
    summary(f"listener {name} stopped", (runs[-1].counts if runs else Counts()).lines())


def _listened(rt: Runtime, sources: list[str] | None, account: str | None) -> list[str]:
    """The sources given (or every source) that the listening account reads."""
    from contentq.accounts import default_account
    from contentq.intake.collect import reader_accounts

    selected = _selected_sources(rt, sources)
    mine = reader_accounts(rt, selected).get(account or default_account(rt.store), [])
    if sources and len(mine) < len(selected):
        others = ", ".join(s for s in selected if s not in mine)
        raise ContentqError(f"{others}: read by another account (see `contentq accounts list`); listen with it")
    return mine


def _fresh_settings() -> Settings:
    """The settings read anew: a listener waiting for a login sees the API keys `.env` gained meanwhile."""
    get_settings.cache_clear()
    return get_settings()
