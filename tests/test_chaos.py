"""The chaos suite, small: posts published exactly once while workers are killed, Valkey restarted, Redis
flushed. The full run with figures is `python bench/chaos.py` (docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import run_chaos


@pytest.mark.chaos
@pytest.mark.timeout(120)
def test_every_post_is_published_exactly_once_through_kills_a_valkey_restart_and_a_flush(tmp_path: Path) -> None:
    result = run_chaos(
        posts=12, workers=2, kill_every=1.5, heartbeat_ttl=3, reconcile_interval=3, limit=90, seed=7, tmp=tmp_path
    )
    assert result.kills >= 2 and result.valkey_restarts == 1 and result.flushes == 1, result.lines()
    assert (result.once, result.twice, result.lost, result.stuck, result.failed) == (12, 0, 0, 0, 0), result.lines()


@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_every_post_is_once_on_telegram_x_and_instagram_through_kills_a_valkey_restart_and_a_flush(
    tmp_path: Path,
) -> None:
    result = run_chaos(
        posts=10, workers=2, kill_every=1.5, heartbeat_ttl=3, reconcile_interval=3, limit=150, seed=11, tmp=tmp_path,
        send_delay=0.6, destinations=True,
    )  # fmt: skip
    assert result.kills >= 2 and result.valkey_restarts == 1 and result.flushes == 1, result.lines()
    assert (result.once, result.twice, result.lost, result.stuck, result.failed) == (10, 0, 0, 0, 0), result.lines()
    for name in ("x:main", "instagram:brand"):
        assert result.destinations[name] == {"once": 10, "twice": 0, "lost": 0}, result.lines()
