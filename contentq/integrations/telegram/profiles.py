"""A Telegram account as the client sees it: its session file, proxy and device fingerprint (docs/accounts.md).

Proxies are written as URLs: `socks5://[user:password@]host:port`, `socks4://host:port`, `http://[user:password@]
host:port` (dialled by python-socks, which Telethon uses), or `mtproxy://host:port?secret=HEX` (Telethon's
`ConnectionTcpMTProxyRandomizedIntermediate`; `tg://proxy?server=…&port=…&secret=…` and t.me/proxy links are
taken too). A proxy's password and an MTProxy secret are secrets: registered for redaction, never shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from contentq.errors import ConfigError
from contentq.redact import register_secret
from contentq.routes import TELEGRAM_ACCOUNT_NAME
from contentq.settings import Settings

MAIN_ACCOUNT = "main"
"""The account today's single session (CONTENTQ_HOME/telegram.session) became."""

ACCOUNT_NAME = TELEGRAM_ACCOUNT_NAME

PROXY_SCHEMES = ("socks5", "socks4", "http", "mtproxy")


def check_account_name(name: str) -> str:
    if not ACCOUNT_NAME.match(name):
        raise ConfigError(
            f"account name {name!r}: use 1–32 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Proxy:
    scheme: str  # socks5, socks4, http, mtproxy
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    secret: str | None = None  # MTProxy

    @property
    def url(self) -> str:
        """The proxy as stored (its password and secret included)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme == "mtproxy":
            return f"mtproxy://{host}:{self.port}?secret={self.secret}"
        user = quote(self.username or "", safe="")
        auth = f"{user}:{quote(self.password, safe='')}@" if self.password else f"{user}@" if user else ""
        return f"{self.scheme}://{auth}{host}:{self.port}"

    @property
    def shown(self) -> str:
        """The proxy without its password or secret: for listings and logs."""
        user = f"{self.username}:***@" if self.password else f"{self.username}@" if self.username else ""
        tail = "?secret=***" if self.secret else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}{tail}"

    def client_options(self) -> dict[str, Any]:
        """TelegramClient keyword arguments that dial through this proxy."""
        if self.scheme == "mtproxy":
            from telethon import connection

            return {
                "connection": connection.ConnectionTcpMTProxyRandomizedIntermediate,
                "proxy": (self.host, self.port, self.secret),
            }
        return {
            "proxy": {
                "proxy_type": self.scheme, "addr": self.host, "port": self.port, "username": self.username,
                "password": self.password, "rdns": True,
            }
        }  # fmt: skip


def parse_proxy(url: str) -> Proxy:
    """A proxy URL as a Proxy; a ConfigError that says what is wrong and how to write it."""
    text = url.strip()
    example = "socks5://user:password@host:1080, http://host:8080 or mtproxy://host:443?secret=HEX"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    if scheme == "tg" or (scheme in ("https", "http") and parts.path.rstrip("/") == "/proxy" and "server" in query):
        # tg://proxy?server=…&port=…&secret=… or https://t.me/proxy?…: how MTProxies are shared
        shared = {k: query.get(k, [""])[0] for k in ("server", "port", "secret")}
        text = f"mtproxy://{shared['server']}:{shared['port']}?secret={shared['secret']}"
        parts, scheme, query = urlsplit(text), "mtproxy", parse_qs(urlsplit(text).query)
    if scheme not in PROXY_SCHEMES:
        raise ConfigError(f"proxy: unknown kind {scheme or '(none)'!r}; write it as {example}")
    try:
        host: str | None = parts.hostname
        port: int | None = parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ConfigError(f"proxy: give the host and the port, e.g. {example}")
    if scheme == "mtproxy":
        secret = query.get("secret", [""])[0].strip()
        if not secret:
            raise ConfigError("proxy: an MTProxy needs its secret: mtproxy://host:port?secret=HEX")
        if secret[:2].lower() == "ee":
            raise ConfigError(
                "proxy: this MTProxy uses fake-TLS (a secret starting with 'ee'), which Telethon cannot dial; ask "
                "for a 'dd' or plain secret, or use a SOCKS5 proxy"
            )
        if not re.fullmatch(r"(dd)?[0-9a-fA-F]{32}", secret):
            raise ConfigError("proxy: an MTProxy secret is 32 hex digits, optionally after 'dd'")
        register_secret(secret)
        return Proxy(scheme, host, port, secret=secret)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    register_secret(password)
    return Proxy(scheme, host, port, username, password)


def shown_proxy(url: str | None) -> str:
    """A stored proxy as listings show it (no password, no secret); '' for none."""
    if not url:
        return ""
    try:
        return parse_proxy(url).shown
    except ConfigError:
        return "(invalid)"


@dataclass(frozen=True)
class AccountProfile:
    """One account's session and how its client presents itself to Telegram."""

    name: str
    session_path: Path
    proxy: Proxy | None = None
    device_model: str = "contentq"
    system_version: str = "Linux"
    app_version: str = "0.1.0"
    lang_code: str = "en"
    send_budget: int | None = None

    @property
    def env_session(self) -> bool:
        """The account whose session CONTENTQ_TG_SESSION may give instead of its file (main)."""
        return self.name == MAIN_ACCOUNT

    def client_options(self) -> dict[str, Any]:
        """TelegramClient keyword arguments of this account: its fingerprint and its proxy."""
        options: dict[str, Any] = {
            "device_model": self.device_model, "system_version": self.system_version,
            "app_version": self.app_version, "lang_code": self.lang_code, "system_lang_code": self.lang_code,
        }  # fmt: skip
        if self.proxy is not None:
            options.update(self.proxy.client_options())
        return options


def session_file_for(name: str) -> str:
    """Where a new account's session goes, relative to CONTENTQ_HOME (main keeps telegram.session)."""
    return "telegram.session" if name == MAIN_ACCOUNT else f"sessions/{name}.session"


def profile_from_row(settings: Settings, row: dict[str, Any] | None, name: str = MAIN_ACCOUNT) -> AccountProfile:
    """The profile of a stored account (None: main as it was before accounts, from .env alone)."""
    row = row or {}
    proxy = row.get("proxy")
    return AccountProfile(
        name=row.get("name") or name,
        session_path=settings.home / (row.get("session_file") or session_file_for(name)),
        proxy=parse_proxy(proxy) if proxy else None,
        device_model=row.get("device_model") or settings.tg_device_model,
        system_version=row.get("system_version") or settings.tg_system_version,
        app_version=row.get("app_version") or settings.tg_app_version,
        lang_code=row.get("lang_code") or "en",
        send_budget=row.get("send_budget"),
    )
