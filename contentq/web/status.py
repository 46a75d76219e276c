"""The HTTP status of each kind of refusal, for the API's answers and the pages' alike."""

from __future__ import annotations

import redis

from contentq.errors import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidInputError,
    NotFoundError,
    RedisUnavailableError,
)
from contentq.web.newjob import PayloadTooLarge


def status_for(exc: Exception) -> int:
    if isinstance(exc, PayloadTooLarge):
        return 413
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, InvalidInputError):
        return 422
    if isinstance(exc, RedisUnavailableError | redis.RedisError | DatabaseUnavailableError):
        return 503
    return 400
