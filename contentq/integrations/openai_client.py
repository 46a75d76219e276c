"""The OpenAI SDK client every LLM and image call uses: key or local base_url, our timeout, no SDK retries."""

from __future__ import annotations

import openai

from contentq.errors import ConfigError
from contentq.settings import Settings


def openai_client(settings: Settings, *, timeout: float, missing_key: str) -> openai.OpenAI:
    """A client for settings.openai_*; `missing_key` is the error when neither a key nor a base_url is set."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not key and not settings.openai_base_url:
        raise ConfigError(missing_key)
    return openai.OpenAI(
        api_key=key or "not-needed",  # local OpenAI-compatible servers accept any key
        base_url=settings.openai_base_url,
        timeout=timeout,
        max_retries=0,  # retries are contentq's: counted, logged, honouring Retry-After without long sleeps
    )
