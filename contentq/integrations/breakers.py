"""Circuit breaker states as workers share them: pybreaker keeps them in Redis (`[NS:]pybreaker:state`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from contentq.errors import ContentqError

if TYPE_CHECKING:
    from contentq.runtime.context import Runtime
    from contentq.settings import Settings

log = logging.getLogger("contentq.breakers")

STATES = ("closed", "half-open", "open")

LLM_BREAKER_NAMESPACE = "contentq:llm"
"""Redis key prefix of the LLM breaker: <prefix>:pybreaker:state, :fail_counter, :opened_at (whole seconds,
as pybreaker stores it) and :opened_at_exact (a float, written by contentq next to pybreaker's)."""


def llm_breaker_key(name: str) -> str:
    return f"{LLM_BREAKER_NAMESPACE}:pybreaker:{name}"


class BreakerState(dict[str, Any]):
    """The shared LLM breaker's state: a dict for --json, one readable line for people."""

    def __str__(self) -> str:
        state = self["state"]
        if state == "open":
            wait = self.get("cooldown_s") or 0
            when = f"trial call in {wait:.0f} s" if wait > 0 else "trial call allowed now"
            return f"open after {self['failures']} failures ({when}); rewrite jobs wait instead of failing"
        if state == "half-open":
            return "half-open (a trial call decides)"
        return f"closed ({self['failures']}/{self['fail_max']} recent failures)"


def llm_breaker_state(settings: Settings, conn: redis.Redis, *, clock: Callable[[], float] = time.time) -> BreakerState:
    """Read the LLM breaker from Redis without changing it (and without importing the OpenAI SDK)."""
    keys = [llm_breaker_key(k) for k in ("state", "fail_counter", "opened_at", "opened_at_exact")]
    state, failures, opened_at, exact = conn.mget(keys)
    info = BreakerState(
        state=_decode(state) if state else "closed",
        failures=int(failures or 0),
        fail_max=settings.breaker_fail_max,
        reset_timeout_s=settings.breaker_reset_timeout,
        cooldown_s=None,
    )
    if info["state"] == "open" and (exact or opened_at):
        # pybreaker keeps whole seconds; the exact time is ours (the later one wins if they disagree).
        opened = max(float(exact or 0), float(int(opened_at or 0)))
        info["cooldown_s"] = max(0.0, opened + settings.breaker_reset_timeout - clock())
    return info


def llm_breaker_status(rt: Runtime) -> dict[str, object]:
    """For `contentq queue status`: the LLM breaker line."""
    try:
        return {"llm_breaker": llm_breaker_state(rt.settings, rt.redis)}
    except redis.RedisError as exc:
        return {"llm_breaker": f"unknown ({exc})"}


StatusProvider = Callable[["Runtime"], dict[str, object]]

STATUS_PROVIDERS: list[StatusProvider] = [llm_breaker_status]
"""Lines components add to `contentq queue status` (the LLM circuit breaker, for one); a line whose name
mentions a breaker is also how `breaker_states` learns of that breaker."""


def status_extras(runtime: Runtime) -> dict[str, object]:
    """The extra lines of `contentq queue status`."""
    extras: dict[str, object] = {}
    for provider in STATUS_PROVIDERS:
        extras.update(provider(runtime))
    return extras


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def breaker_states(runtime: Runtime) -> dict[str, str]:
    """Name → state ('closed', 'open', 'half-open') of every breaker found.

    The components say it themselves through the lines they add to `contentq queue status` (a name that
    mentions a breaker, such as `llm_breaker`); when none does, pybreaker's Redis keys
    (`NAMESPACE:pybreaker:state`) are read directly.
    """
    states: dict[str, str] = {}
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
