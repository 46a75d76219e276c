"""`contentq login`: phone → code → 2FA password, saving a StringSession to a mode-0600 file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from telethon import errors
from telethon.sessions import StringSession

from contentq.errors import ContentqError
from contentq.integrations.telegram.client import account_from_user, make_client, require_api, write_session
from contentq.integrations.telegram.gateway import Account
from contentq.integrations.telegram.profiles import AccountProfile, profile_from_row
from contentq.settings import Settings

Ask = Callable[[], str]

_MESSAGES: dict[type[BaseException], str] = {
    errors.PhoneNumberInvalidError: "the phone number is not valid; use the international form, e.g. +15551234567",
    errors.PhoneNumberBannedError: "this phone number is banned by Telegram",
    errors.PhoneCodeInvalidError: "the login code is wrong; run `contentq login` again",
    errors.PhoneCodeExpiredError: "the login code expired; run `contentq login` again and enter the new code",
    errors.PasswordHashInvalidError: "the two-step verification password is wrong; run `contentq login` again",
    errors.ApiIdInvalidError: "CONTENTQ_TG_API_ID / CONTENTQ_TG_API_HASH are not valid; check them at https://my.telegram.org",
}


async def sign_in(client: Any, phone: str, ask_code: Ask, ask_password: Ask) -> tuple[str, Account]:
    """Log `client` (connected, with an empty StringSession) in; returns the session string and the account."""
    try:
        sent = await client.send_code_request(phone)
        try:
            await client.sign_in(phone=phone, code=ask_code().strip(), phone_code_hash=sent.phone_code_hash)
        except errors.SessionPasswordNeededError:
            await client.sign_in(password=ask_password())
        user = await client.get_me()
    except tuple(_MESSAGES) as exc:
        raise ContentqError(_MESSAGES[type(exc)]) from None
    except errors.FloodWaitError as exc:
        raise ContentqError(f"Telegram asks to wait {exc.seconds} s before the next login attempt") from None
    return client.session.save(), account_from_user(user)


def login(
    settings: Settings, phone: str, ask_code: Ask, ask_password: Ask, profile: AccountProfile | None = None
) -> Account:
    """Interactive login of one account (default main), through its proxy and with its fingerprint; the session is
    written to its session file (mode 0600)."""
    require_api(settings)
    profile = profile or profile_from_row(settings, None)

    async def run() -> tuple[str, Account]:
        client = make_client(settings, StringSession(), profile)
        try:
            await client.connect()
        except OSError as exc:
            via = f" through the proxy {profile.proxy.shown}" if profile.proxy is not None else ""
            raise ContentqError(f"cannot reach Telegram{via} ({exc}); check the network and try again") from None
        try:
            return await sign_in(client, phone, ask_code, ask_password)
        finally:
            await client.disconnect()

    session, account = asyncio.run(run())
    write_session(profile.session_path, session)
    return account
