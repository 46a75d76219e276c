"""The process's Telegram gateways, one per account, kept in the runtime's services (tests and benches put a
stand-in there: one gateway for every account, or a pool with `gateway(account)`).

The runtime does not know Telegram: the cores ask here. The Telethon client is imported on first use only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from contentq.errors import ConfigError
from contentq.integrations.telegram.gateway import TelegramGateway
from contentq.integrations.telegram.profiles import MAIN_ACCOUNT, AccountProfile, profile_from_row
from contentq.settings import Settings
from contentq.store import Store
from contentq.store.tg_accounts import get_account


class Services(Protocol):
    """What this needs of contentq.runtime.context.Runtime (integrations import no runtime)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    def service(self, name: str, factory: Callable[[Any], Any] | None = None) -> Any: ...


@runtime_checkable
class GatewayPool(Protocol):
    """Gateways by account name: each account has its own client (session, proxy, fingerprint)."""

    def gateway(self, account: str) -> TelegramGateway: ...

    def close(self) -> None: ...


def load_profile(store: Store, settings: Settings, name: str) -> AccountProfile:
    """A stored account's profile; a clear error for an account that does not exist."""
    row = get_account(store, name)
    if row is None:
        raise ConfigError(f"no Telegram account {name!r}: add it with `contentq accounts add {name}`, then log it in")
    return profile_from_row(settings, row)


class LentGateways:
    """The Telegram gateways of another runtime of this process, lent: a listener or the bot hosted by a worker
    (contentq.runtime.hosting) has a runtime of its own (its own database and Redis connections) but uses the
    worker's clients, since one session must serve one client. Closing the borrower leaves them to their owner."""

    def __init__(self, owner: Services) -> None:
        self.owner = owner

    def gateway(self, account: str) -> TelegramGateway:
        return gateway_of(self.owner, account)

    def close(self) -> None:
        pass


def lend_gateways(owner: Services, borrower: Services) -> None:
    """`borrower` uses `owner`'s Telegram gateways (built by `owner` on first use, closed by `owner` only)."""
    borrower.service("telegram", lambda rt: LentGateways(owner))


def gateway_of(runtime: Services, account: str = MAIN_ACCOUNT) -> TelegramGateway:
    """The gateway of one account: Telethon (or CONTENTQ_TG_GATEWAY's stand-in), connected on first use."""

    def build(rt: Any) -> Any:
        from contentq.integrations.telegram.client import build_gateways  # Telethon: only when Telegram is used

        return build_gateways(rt, lambda name: load_profile(rt.store, rt.settings, name))

    service = runtime.service("telegram", build)
    if isinstance(service, GatewayPool):
        return service.gateway(account)
    gateway: TelegramGateway = service  # one stand-in gateway serves every account
    return gateway
