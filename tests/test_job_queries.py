"""Hot job-record queries stay on their index however many jobs the table holds."""

from __future__ import annotations

from pathlib import Path

from contentq.store import open_store
from contentq.store.jobs import LATEST_FOR_KEY


def test_enqueue_finds_the_latest_job_of_a_key_through_the_key_index(tmp_path: Path) -> None:
    """Every enqueue runs this; reading all jobs of the kind instead made enqueues slower as jobs piled up."""
    store = open_store(tmp_path / "contentq.db")
    try:
        plan = " ".join(str(row[3]) for row in store.conn.execute("EXPLAIN QUERY PLAN " + LATEST_FOR_KEY, ("k", "1")))
        assert "INDEX jobs_key (kind=? AND key=?)" in plan, plan
    finally:
        store.close()
