"""SQLite state store: the source of truth for posts, channels, media and jobs."""

from contentq.store.db import Store, open_store

__all__ = ["Store", "open_store"]
