"""Admin alerts as Telegram messages to settings.tg_admin_chat, through the process's gateway."""

from __future__ import annotations

from typing import Protocol

from contentq.integrations.telegram.access import Services, gateway_of
from contentq.integrations.telegram.profiles import MAIN_ACCOUNT
from contentq.settings import Settings
from contentq.store.tg_accounts import usable_accounts


class Runtime(Services, Protocol):
    """What the backend needs of contentq.runtime.context.Runtime (integrations import no runtime)."""

    settings: Settings


_ICONS = {"error": "⛔", "warning": "⚠️", "info": "ℹ️"}


class TelegramBackend:
    name = "telegram"

    def __init__(self, runtime: Runtime, chat: str) -> None:
        self.runtime = runtime
        self.chat = chat

    def send(self, message: str, level: str, key: str = "") -> None:
        # The gateway is looked up at send time: tests and workers swap it in runtime.services. An alert about
        # one account goes out through another: main first, then the others, skipping those logged out or banned.
        text = f"{_ICONS.get(level, '•')} contentq: {message}"
        failure: BaseException | None = None
        for account in self._senders():
            try:
                gateway_of(self.runtime, account).send_admin(self.chat, text)
                return
            except Exception as exc:  # noqa: BLE001 - the next account may get it out
                failure = exc
        if failure is not None:
            raise failure

    def _senders(self) -> list[str]:
        usable = sorted(usable_accounts(self.runtime.store), key=lambda name: (name != MAIN_ACCOUNT, name))
        return usable or [MAIN_ACCOUNT]


def telegram_backend(runtime: Runtime) -> TelegramBackend:
    chat = runtime.settings.tg_admin_chat
    if not chat:
        raise ValueError("tg_admin_chat is not set")
    return TelegramBackend(runtime, chat)
