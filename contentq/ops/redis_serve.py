"""`contentq redis serve` by hand: the embedded Valkey in the foreground, stopped after the workers.

The work is the Valkey keeper's (`contentq.runtime.valkey_keeper`, which supervisor runs directly so that the
process that stays up all day imports the standard library only); this module gives it what the settings say.
"""

from __future__ import annotations

from contentq.errors import RedisUnavailableError
from contentq.ops.supervisor import stop_grace
from contentq.runtime import valkey_keeper
from contentq.settings import Settings


def serve(settings: Settings) -> int:
    """Run Valkey until it exits by itself (its exit code) or this process is asked to stop (0, once the
    workers are gone and Valkey has shut down)."""
    try:
        return valkey_keeper.serve(settings.redis_dir, stop_grace(settings))
    except valkey_keeper.NoServerError as exc:
        raise RedisUnavailableError(str(exc)) from None
