"""Circuit breaker states as workers share them: pybreaker keeps them in Redis (`[NS:]pybreaker:state`)."""

from __future__ import annotations

import logging
from typing import Any

import redis

from contentq.errors import ContentqError
from contentq.runtime.context import Runtime

log = logging.getLogger("contentq.ops")

STATES = ("closed", "half-open", "open")


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def breaker_states(runtime: Runtime) -> dict[str, str]:
    """Name → state ('closed', 'open', 'half-open') of every breaker found.

    The components say it themselves through the lines they add to `contentq queue status` (a name that
    mentions a breaker, such as `llm_breaker`); when none does, pybreaker's Redis keys
    (`NAMESPACE:pybreaker:state`) are read directly.
    """
    states: dict[str, str] = {}
    try:
        from contentq.cli.queue import STATUS_PROVIDERS
    except ImportError:  # pragma: no cover - the CLI is always installed
        STATUS_PROVIDERS = []  # noqa: N806
    for provider in STATUS_PROVIDERS:
        try:
            extra = provider(runtime)
        except Exception:  # one component's status must not break another's check
            log.debug("status provider failed", exc_info=True)
            continue
        for name, shown in (extra or {}).items():
            if "breaker" not in str(name).lower():
                continue
            state = _state_of(shown)
            if state:
                short = str(name).removesuffix("_breaker").removesuffix(" breaker") or str(name)
                states[short] = state
    if states:
        return states
    try:
        conn = runtime.redis
        for key in conn.scan_iter(match="*pybreaker:state", count=200):
            name = _decode(key).removesuffix("pybreaker:state").rstrip(":") or "breaker"
            value = conn.get(key)
            if value is not None:
                states[name] = _decode(value)
    except (redis.RedisError, ContentqError) as exc:
        log.debug("breaker states not readable: %s", exc)
    return states


def _state_of(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("state", "status"):
            if key in value:
                return _state_of(value[key])
        return None
    text = _decode(value).lower()
    for state in ("half-open", "half_open", "open", "closed"):
        if state in text:
            return state.replace("_", "-")
    return None


def is_open(state: str) -> bool:
    return state == "open"
