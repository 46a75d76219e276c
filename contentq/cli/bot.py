"""`contentq bot`: the admin bot (docs/bot.md), a long-running process under supervisor."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from contentq.cli.common import runtime
from contentq.cli.render import err_console


def bot() -> None:
    """Run the admin bot: approval cards, alerts with buttons and commands in Telegram, until stopped (TERM).

    Logs in with CONTENTQ_BOT_TOKEN and obeys the Telegram users in CONTENTQ_BOT_ADMINS (docs/bot.md)."""
    from contentq.bot.serve import check_settings, serve
    from contentq.integrations.telegram.bot_client import build_bot_gateway

    rt = runtime()
    check_settings(rt)
    stopping = threading.Event()
    gateway = build_bot_gateway(rt.settings)

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        serve(rt, gateway, stopping)
    finally:
        gateway.close()
    err_console.print("bot stopped")
