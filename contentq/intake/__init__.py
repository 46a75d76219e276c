"""Intake: posts come in — collected from donors (collect, listen), imported from exports (imports), filtered and
deduplicated into the store (ingest), and kept in step with their donors' edits and deletions (donor_changes)."""
