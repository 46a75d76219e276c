"""Rate control of sends: the per-target interval and the account budget, one Lua script in Redis.

A publication takes its places before its first part goes out; a refusal says how long to wait, and the
job comes back then (`Reschedule`): the worker never sleeps.
"""

from __future__ import annotations

from contentq.clock import now
from contentq.runtime.context import Runtime

RATE_WINDOW_MS = 60_000
"""The account budget counts sends in this sliding window."""

_RESERVE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local wait = 0
if interval > 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then wait = ttl end
end
if budget > 0 then
  if n > budget then n = budget end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[2])
  if count + n > budget then
    local oldest = redis.call('ZRANGE', KEYS[2], count + n - budget - 1, count + n - budget - 1, 'WITHSCORES')
    local until_free = tonumber(oldest[2]) + window - now
    if until_free > wait then wait = until_free end
  end
end
if wait > 0 then return wait end
if interval > 0 then redis.call('SET', KEYS[1], now, 'PX', interval) end
if budget > 0 then
  for i = 1, n do redis.call('ZADD', KEYS[2], now, ARGV[6] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[2], window)
end
return 0
"""


def reserve_send(
    runtime: Runtime, target: str, account_id: int, sends: int, tag: str, budget: int | None = None
) -> float:
    """Take a place under the per-target interval and the account budget (`budget` sends a minute, default
    CONTENTQ_PUBLISH_ACCOUNT_BUDGET; 0: none): 0 when granted, else seconds to wait."""
    settings = runtime.settings
    script = runtime.redis.register_script(_RESERVE)
    wait_ms = script(
        keys=[f"contentq:publish:interval:{target}", f"contentq:publish:budget:{account_id}"],
        args=[
            int(now().timestamp() * 1000),
            max(0, settings.publish_min_interval) * 1000,
            max(0, settings.publish_account_budget if budget is None else budget),
            RATE_WINDOW_MS,
            sends,
            tag,
        ],
    )
    return float(wait_ms) / 1000.0
