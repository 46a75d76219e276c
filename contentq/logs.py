"""Process logging: human-readable or JSON lines (job id, post id, queue, status, duration), secrets redacted.

`CONTENTQ_LOG_FORMAT=json` gives one JSON object per line (for Loki, journald, jq …); the default is a
plain line. Either way every line passes through `redact()`. Records emitted while an RQ job runs get the
job id and queue even when the code that logged did not pass them (RQ's own "Job OK" lines, library warnings).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from io import TextIOWrapper
from pathlib import Path
from typing import Any

from contentq.redact import redact
from contentq.settings import Settings

EXTRA_FIELDS = ("job_id", "post_id", "queue", "kind", "event", "status", "duration_ms", "attempt")
"""`extra=` fields copied into JSON lines (and appended to human lines)."""

TRACKED_FUNC = "contentq.runtime.execute.run_tracked"


class JobContextFilter(logging.Filter):
    """Adds job_id and queue of the RQ job being executed in this thread to records that lack them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is not None:
            return True
        try:
            from rq import get_current_job

            job = get_current_job()
        except Exception:  # no RQ context (CLI commands), or Redis gone: leave the record as it is
            return True
        if job is None:
            return True
        args = job.args if job.func_name == TRACKED_FUNC else ()
        record.job_id = str(args[0]) if args else job.id
        if getattr(record, "queue", None) is None:
            record.queue = job.origin
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {name: value for name in EXTRA_FIELDS if (value := getattr(record, name, None)) is not None}


class RedactingFormatter(logging.Formatter):
    """`2024-05-01 12:00:00,123 INFO contentq.jobs: message [job_id=publish-42 queue=publish]`."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        head = text.split("\n", 1)[0]
        extras = {k: v for k, v in _extras(record).items() if k != "event" and str(v) not in head}
        if extras:
            tail = " [" + " ".join(f"{k}={v}" for k, v in extras.items()) + "]"
            first, sep, rest = text.partition("\n")
            text = first + tail + sep + rest
        return redact(text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(data, ensure_ascii=False, default=str))


def build_handler(settings: Settings) -> logging.Handler:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(JobContextFilter())
    return handler


class AuditFileHandler(logging.FileHandler):
    """contentq's own INFO lines of CLI commands (deletions, approvals, purges) kept in CONTENTQ_HOME/logs."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)  # no file until something is logged

    def _open(self) -> TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def setup_logging(settings: Settings, level: str | None = None) -> None:
    """Workers pass settings.log_level for stderr. CLI commands show warnings only, and keep contentq's INFO
    lines in CONTENTQ_HOME/logs/contentq.log, so what an operator did (an image deleted, a purge) is on record."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_contentq", False)]:
        root.removeHandler(old)
    package = logging.getLogger("contentq")
    for old in [h for h in package.handlers if getattr(h, "_contentq", False)]:
        package.removeHandler(old)
    handler = build_handler(settings)
    handler._contentq = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if level is not None:
        root.setLevel(level.upper())
        return
    handler.setLevel(logging.WARNING)
    root.setLevel(logging.INFO)
    audit = AuditFileHandler(settings.home / "logs" / "contentq.log")
    audit.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    audit.setLevel(logging.INFO)
    audit._contentq = True  # type: ignore[attr-defined]
    package.addHandler(audit)
