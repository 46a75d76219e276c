"""Hot job-record queries stay on their index however many jobs the table holds."""

from __future__ import annotations

from pathlib import Path

from contentq.store import open_store
from contentq.store.jobs import INSERT_COLUMNS, INSERT_JOB


def test_enqueue_reads_the_jobs_of_its_key_through_the_key_index(tmp_path: Path) -> None:
    """Every enqueue runs this; reading all jobs of the kind instead made enqueues slower as jobs piled up."""
    store = open_store(tmp_path / "contentq.db")
    try:
        params = [0, "k", "1", "k-1", "k-1", *(None for _ in INSERT_COLUMNS), "k", "1"]
        plan = [str(row[3]) for row in store.conn.execute("EXPLAIN QUERY PLAN " + INSERT_JOB, params)]
        searches = [step for step in plan if "jobs" in step and ("SCAN" in step or "SEARCH" in step)]
        assert len(searches) == 2 and all("INDEX jobs_key (kind=? AND key=?)" in step for step in searches), plan
    finally:
        store.close()
