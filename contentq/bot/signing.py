"""Signed callback data: what a button names (action, target, state version, argument) and an HMAC over it.

Telegram sends a button's data back as the client gives it, so a modified client can send any bytes: the data
carries an HMAC-SHA256 (truncated to 96 bits) with a key kept on the server (`bot.key` in CONTENTQ_HOME, mode
0600, made on first use). The state version (the post's latest history id, a job's run) makes a button stale once
its post or job has moved on, so a press replayed later is refused. All of it fits Telegram's 64 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from contentq.errors import ContentqError
from contentq.integrations.telegram.bot_gateway import CALLBACK_DATA_MAX
from contentq.redact import register_secret

MAC_BYTES = 12
"""96 bits of HMAC-SHA256: 16 characters of base64, leaving 47 bytes for what the button names."""


class ForgedCallback(ContentqError):
    """Callback data that was not signed by this bot (or was altered)."""


@dataclass(frozen=True)
class Callback:
    action: str
    target: str
    version: int = 0
    arg: str = ""

    def payload(self) -> str:
        return f"{self.action}|{self.target}|{self.version}|{self.arg}"


def key_path(home: Path) -> Path:
    return home / "bot.key"


def load_key(home: Path) -> bytes:
    """The signing key, made (32 random bytes, mode 0600) when missing; a key readable by others is made
    private again. A new key makes every button already sent stale."""
    path = key_path(home)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)
    text = path.read_text(encoding="ascii").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ContentqError(f"{path} is not a bot key (64 hex characters); delete it to make a new one") from None
    if len(key) < 16:
        raise ContentqError(f"{path} holds a key of {len(key)} bytes; delete it to make a new one")
    register_secret(text)
    return key


class Signer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(digest).decode("ascii")

    def sign(self, callback: Callback) -> bytes:
        if any("|" in part for part in (callback.action, callback.target, callback.arg)):
            raise ValueError(f"a callback's parts cannot hold '|': {callback}")
        payload = callback.payload()
        data = f"{payload}|{self._mac(payload)}".encode()
        if len(data) > CALLBACK_DATA_MAX:
            raise ValueError(f"callback data of {len(data)} bytes for {payload!r}: Telegram takes {CALLBACK_DATA_MAX}")
        return data

    def verify(self, data: bytes) -> Callback:
        """The callback the data names; ForgedCallback when it is malformed or its MAC does not match."""
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise ForgedCallback("callback data that is not ours (not ASCII)") from None
        payload, _, mac = text.rpartition("|")
        parts = payload.split("|")
        if len(parts) != 4 or not hmac.compare_digest(mac, self._mac(payload)):
            raise ForgedCallback("callback data with a signature that does not match")
        action, target, version, arg = parts
        if not version.isdigit():
            raise ForgedCallback("callback data with a malformed version")
        return Callback(action, target, int(version), arg)
