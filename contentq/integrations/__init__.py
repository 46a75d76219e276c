"""Edges of the system, each behind a small Protocol: Telegram, the LLM, images, exports, outbox, notifier."""
