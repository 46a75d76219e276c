"""The OpenAI SDK client every LLM and image call uses: key or local base_url, our timeout, no SDK retries."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

import openai

from contentq.errors import ConfigError
from contentq.settings import Settings


def split_userinfo(url: str | None) -> tuple[str | None, str | None]:
    """(the URL without `user:password@`, the password — or a lone user name, which often is a token).

    httpx would send URL userinfo as Basic auth, replacing the Bearer key, and providers echo what they
    got in their errors: contentq never sends it."""
    if not url or "@" not in url:
        return url, None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise ConfigError("CONTENTQ_OPENAI_BASE_URL is not a valid URL; give e.g. http://127.0.0.1:8000/v1") from None
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    secret = parts.password if parts.password is not None else parts.username
    return urlunsplit(parts._replace(netloc=netloc)), unquote(secret) if secret else None


def openai_client(settings: Settings, *, timeout: float, missing_key: str) -> openai.OpenAI:
    """A client for settings.openai_*; `missing_key` is the error when neither a key nor a base_url is set.

    A password in CONTENTQ_OPENAI_BASE_URL (`https://user:KEY@host/v1`) is used as the API key when
    CONTENTQ_OPENAI_API_KEY is not set; it is never sent as Basic auth."""
    base_url, url_secret = split_userinfo(settings.openai_base_url)
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    key = key or url_secret
    if not key and not base_url:
        raise ConfigError(missing_key)
    return openai.OpenAI(
        api_key=key or "not-needed",  # local OpenAI-compatible servers accept any key
        base_url=base_url,
        timeout=timeout,
        max_retries=0,  # retries are contentq's: counted, logged, honouring Retry-After without long sleeps
    )
