"""The bot gateway Protocol: what the admin bot (`contentq bot`) asks of Telegram, in plain synchronous calls.

Like the user-account gateway (`gateway.TelegramGateway`), the Telethon implementation (`bot_client`) runs one
client on a long-lived event-loop thread and tests use a scripted fake; both raise Telethon's real error classes
(`FloodWaitError`, `MessageNotModifiedError`, `QueryIdInvalidError`, `UserIsBlockedError`, …) and
`ConnectionError` when Telegram is unreachable. Updates arrive as the small dataclasses below, so the bot's
handling (`contentq.bot`) never sees a Telethon object and runs without a network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from contentq.integrations.telegram.gateway import OutgoingPart

CALLBACK_DATA_MAX = 64
"""Telegram refuses callback data longer than 64 bytes (Bot API: `callback_data`, 1-64 bytes)."""


@dataclass(frozen=True)
class Button:
    """An inline button: its label and the callback data its press sends back (≤ 64 bytes)."""

    text: str
    data: bytes

    def __post_init__(self) -> None:
        if not 1 <= len(self.data) <= CALLBACK_DATA_MAX:
            raise ValueError(f"callback data of {len(self.data)} bytes: Telegram takes 1 to {CALLBACK_DATA_MAX}")


Keyboard = list[list[Button]]
"""Rows of inline buttons."""


@dataclass(frozen=True)
class BotAccount:
    id: int
    username: str | None
    name: str


@dataclass(frozen=True)
class IncomingMessage:
    """A message someone sent the bot (privately, or in a group it is in): its text as Telegram HTML."""

    chat_id: int
    sender_id: int
    message_id: int
    html: str
    text: str
    """The same text without formatting (commands are read from it)."""
    reply_to: int | None = None
    """The message it answers (a prompt of the bot's: the reason for a rejection, the new text)."""
    sender_name: str = ""


@dataclass(frozen=True)
class Press:
    """A press of one of the bot's inline buttons (a callback query)."""

    query_id: int
    chat_id: int
    sender_id: int
    message_id: int
    data: bytes
    sender_name: str = ""


@dataclass(frozen=True)
class Status:
    """The connection: `disconnected` (with why) and `connected` again (what arrived meanwhile follows)."""

    kind: Literal["connected", "disconnected"]
    detail: str = ""


BotEvent = IncomingMessage | Press | Status


@runtime_checkable
class BotGateway(Protocol):
    def start(self) -> BotAccount:
        """Connect and log in with the bot token; raises a Telethon auth error for a bad token."""

    def send_text(
        self, chat_id: int, html: str, *, buttons: Keyboard | None = None, reply_to: int | None = None,
        force_reply: bool = False,
    ) -> int:  # fmt: skip
        """Send a text message (Telegram HTML) with inline buttons (or asking for a reply); its message id."""

    def send_part(self, chat_id: int, part: OutgoingPart) -> list[int]:
        """One part of a post as it will be published: a text, a media with its caption, or an album (one
        request); the message ids, one per item."""

    def edit_text(self, chat_id: int, message_id: int, html: str, *, buttons: Keyboard | None = None) -> None:
        """Replace a message's text and buttons (None: no buttons); the same text again is not an error."""

    def delete(self, chat_id: int, message_ids: list[int]) -> None:
        """Delete the bot's messages (a card being replaced)."""

    def answer(self, query_id: int, text: str = "", *, alert: bool = False) -> None:
        """Answer a press: a short notice on the presser's screen (a popup with `alert`). A press too old to
        answer (QueryIdInvalidError) is not an error."""

    def updates(self, *, tick: float = 1.0) -> Iterator[BotEvent | None]:
        """Presses, messages and connection changes as they arrive, as a blocking iterator, until `close()`:
        None whenever `tick` seconds pass without one (the bot does its periodic work then). Updates that
        arrived while the bot was down come first."""

    def close(self) -> None:
        """Disconnect."""
