"""One exception base for everything a user can be told about."""

from __future__ import annotations


class ContentqError(Exception):
    """An error with a message that says what is wrong and what to do next."""


class ConfigError(ContentqError):
    """Settings or contentq.toml are invalid."""


class NotFoundError(ContentqError):
    """An id given by the user does not exist."""


class RedisUnavailableError(ContentqError):
    """Neither CONTENTQ_REDIS_URL nor the embedded server can be reached."""


class DatabaseLockedError(ContentqError):
    """SQLite stayed locked past the busy timeout."""
