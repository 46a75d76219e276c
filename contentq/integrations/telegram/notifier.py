"""Admin alerts as Telegram messages to settings.tg_admin_chat, through the process's gateway."""

from __future__ import annotations

from typing import Protocol

from contentq.integrations.telegram.access import Services, gateway_of
from contentq.settings import Settings


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
        # The gateway is looked up at send time: tests and workers swap it in runtime.services.
        gateway_of(self.runtime).send_admin(self.chat, f"{_ICONS.get(level, '•')} contentq: {message}")


def telegram_backend(runtime: Runtime) -> TelegramBackend:
    chat = runtime.settings.tg_admin_chat
    if not chat:
        raise ValueError("tg_admin_chat is not set")
    return TelegramBackend(runtime, chat)
