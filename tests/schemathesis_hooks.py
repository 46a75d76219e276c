"""Schemathesis hooks for tests/test_web_contract.py (loaded from this file through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def filter_failure(ctx: Any, failure: Any, case: Any, response: Any) -> bool:
    """Every failure counts but one that Schemathesis makes itself: its stateful phase follows a link it inferred
    from a response field that may be null (a job's `post_id`) and, when it is, puts the text 'None' into the
    path (`/api/posts/None/publish`), then calls the 422 for that a valid request refused."""
    return not any(value is None or value == "None" for value in (case.path_parameters or {}).values())
