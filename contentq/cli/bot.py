"""`contentq bot`: the admin bot (docs/bot.md), a long-running process under supervisor."""

from __future__ import annotations

import os
import signal
import socket
import threading
from types import FrameType

from contentq.cli.common import runtime
from contentq.cli.render import err_console


def bot() -> None:
    """Run the admin bot: approval cards, alerts with buttons and commands in Telegram, until stopped (TERM).

    Logs in with CONTENTQ_BOT_TOKEN and obeys the Telegram users in CONTENTQ_BOT_ADMINS (docs/bot.md)."""
    from contentq.bot.serve import check_settings, hosted_bot
    from contentq.runtime.hosting import run_alone

    rt = runtime()
    check_settings(rt)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The lease a hosting worker takes too: never two bots on one token (their replies and alerts twice).
    run_alone(rt.redis, hosted_bot(rt), stopping, owner=f"{socket.gethostname()}.{os.getpid()}")
    err_console.print("bot stopped")
