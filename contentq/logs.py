"""Process logging: human-readable or JSON lines (job id, post id, queue, event), secrets redacted."""

from __future__ import annotations

import json
import logging
from typing import Any

from contentq.redact import redact
from contentq.settings import Settings

_EXTRA_FIELDS = ("job_id", "post_id", "queue", "event", "status", "duration_ms")


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(data, ensure_ascii=False, default=str))


def setup_logging(settings: Settings, level: str | None = None) -> None:
    """CLI commands log warnings only; workers pass settings.log_level."""
    level = (level or "WARNING").upper()
    root = logging.getLogger()
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for old in [h for h in root.handlers if getattr(h, "_contentq", False)]:
        root.removeHandler(old)
    handler._contentq = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
