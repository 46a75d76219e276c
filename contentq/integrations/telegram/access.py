"""The process's Telegram gateway, kept in the runtime's services (tests and benches put a stand-in there).

The runtime does not know Telegram: the cores ask here. The Telethon client is imported on first use only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from contentq.integrations.telegram.gateway import TelegramGateway


class Services(Protocol):
    """What this needs of contentq.runtime.context.Runtime (integrations import no runtime)."""

    def service(self, name: str, factory: Callable[[Any], Any] | None = None) -> Any: ...


def gateway_of(runtime: Services) -> TelegramGateway:
    """The process's gateway: Telethon (or CONTENTQ_TG_GATEWAY's stand-in), connected on first use."""
    from contentq.integrations.telegram.client import build_gateway  # Telethon: only when Telegram is used

    gateway: TelegramGateway = runtime.service("telegram", build_gateway)
    return gateway
