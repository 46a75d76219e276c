"""Whether the admin bot runs, for `contentq health` and `doctor`: a heartbeat the bot writes to Redis every
BEAT_SECONDS (its process, host and username), gone BEAT_TTL seconds after its last beat or at once on a clean
stop. Redis rather than a table: the bot needs Redis for every press anyway, and a beat is one SET."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import redis

from contentq.clock import iso
from contentq.ops.probe import FAIL, OK, Probe
from contentq.settings import Settings

KEY = "contentq:bot:heartbeat"

BEAT_SECONDS = 10.0

BEAT_TTL = 35
"""Seconds a beat stays: three missed beats and a margin."""


def beat(conn: redis.Redis, username: str | None, since: str) -> None:
    value = {"pid": os.getpid(), "host": socket.gethostname(), "username": username, "since": since, "at": iso()}
    conn.set(KEY, json.dumps(value), ex=BEAT_TTL)


def stopped(conn: redis.Redis) -> None:
    """A clean stop: the beat goes at once (if it is this process's)."""
    found = read(conn)
    if found is not None and found.get("pid") == os.getpid() and found.get("host") == socket.gethostname():
        conn.delete(KEY)


def read(conn: redis.Redis) -> dict[str, Any] | None:
    raw = conn.get(KEY)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def bot_wanted(settings: Settings) -> bool:
    return settings.bot_token is not None and bool(settings.bot_token.get_secret_value().strip())


def bot_probe(settings: Settings, conn: redis.Redis | None) -> Probe | None:
    """`bot` running (as @name, pid, host, since) or not; None without a bot token or when Redis cannot tell (the
    Redis probe fails then)."""
    if not bot_wanted(settings) or conn is None:
        return None
    try:
        found = read(conn)
    except (redis.ConnectionError, redis.TimeoutError):
        return None
    program = "contentq:contentq-telegram-0" if settings.process_layout == "compact" else "contentq:contentq-bot"
    if found is None:
        return Probe("bot running", FAIL, f"no heartbeat for {BEAT_TTL} s: the admin bot is not running",
                     f"supervisorctl status {program}; see its log")  # fmt: skip
    who = f"@{found.get('username')}" if found.get("username") else "the bot"
    return Probe("bot running", OK, f"{who}, pid {found.get('pid')} on {found.get('host')}, since {found.get('since')}")
