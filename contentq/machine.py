"""A declared state machine: states, the moves between them named by their event, and the check every move
passes. The post's lifecycle (`contentq.lifecycle`) and a delivery's (`contentq.publish.deliveries`) are two."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contentq.errors import ContentqError

NEW = "new"
"""Where every thing starts: before it is stored. Not a state anything is ever in."""


@dataclass(frozen=True)
class Move:
    event: str
    sources: tuple[str, ...]
    """The states the event may start from (NEW: the thing is being stored)."""
    target: str
    doc: str
    then: tuple[str, ...] = ()
    """What follows, in order (the post's lifecycle: names of its FOLLOW_UPS)."""


class IllegalMove(ContentqError):
    """A move the table does not allow: a bug in the caller, never a race (a race returns False)."""


@dataclass(frozen=True)
class Machine:
    noun: str
    """What moves ("post", "delivery"): in the errors."""
    moves: Mapping[str, Move]

    def spec(self, event: str) -> Move:
        try:
            return self.moves[event]
        except KeyError:
            raise IllegalMove(f"no {self.noun} event {event!r}; the events are {', '.join(self.moves)}") from None

    def sources_of(self, event: str, only_from: str | Iterable[str] | None = None) -> tuple[str, ...]:
        """The stored states `event` moves from, narrowed to `only_from` (which the table must allow)."""
        allowed = tuple(s for s in self.spec(event).sources if s != NEW)
        if only_from is None:
            return allowed
        wanted = (only_from,) if isinstance(only_from, str) else tuple(only_from)
        outside = [s for s in wanted if s not in allowed]
        if outside:
            raise IllegalMove(f"{event!r} cannot start from {', '.join(outside)} (only from {', '.join(allowed)})")
        return wanted
