"""What a job's run leaves for people to read: its log lines, its stored traceback and `jobs logs` at 80 columns."""

from __future__ import annotations

import logging
import re

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.runtime.context import Runtime
from contentq.runtime.execute import MAX_TRACE, trace_tail
from contentq.runtime.tracking import enqueue
from contentq.store.jobs import job_events
from tests.conftest import drain


def call(rt: Runtime, key: str, handler: str, **payload: object) -> str:
    return str(enqueue(rt, "call", key, payload, handler=f"tests.jobfuncs:{handler}")["id"])


def test_log_lines_tell_the_run_time_from_the_wait(rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="contentq.jobs")
    failing = call(rt, "boom", "always_fails")
    waiting = call(rt, "flood", "reschedule_once", delay=1)
    drain(rt, "maintenance", timeout=60)
    lines = [r.getMessage() for r in caplog.records if r.name == "contentq.jobs"]
    retrying = next(line for line in lines if line.startswith(f"{failing} retrying"))
    assert re.fullmatch(rf"{failing} retrying \(ran [\d.]+ ms\): RuntimeError: boom on attempt 1; retry in \d+ s "
                        r"\(\d+ left\)", retrying), retrying  # fmt: skip
    rescheduling = next(line for line in lines if line.startswith(f"{waiting} rescheduling"))
    assert re.fullmatch(rf"{waiting} rescheduling \(ran [\d.]+ ms\): FLOOD_WAIT of 2 s; runs again in 1.0 s",
                        rescheduling), rescheduling  # fmt: skip
    assert re.search(rf"{failing} failed \(ran [\d.]+ ms\): RuntimeError", "\n".join(lines))
    assert re.search(rf"{waiting} succeeded in [\d.]+ ms", "\n".join(lines))
    assert not [line for line in lines if re.search(r"(retrying|rescheduling|failed) in [\d.]+ ms", line)]


def test_a_deep_traceback_is_stored_with_its_end_from_a_line_boundary(rt: Runtime) -> None:
    job_id = call(rt, "deep", "deep_failure")
    drain(rt, "maintenance", timeout=60)
    failed = [e for e in job_events(rt.store, job_id) if e["event"] == "failed"][-1]["message"]
    error, _, trace = failed.partition("\n")
    assert error == "ValueError: the real cause, at the bottom"
    lines = trace.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert re.fullmatch(r"  … \d+ line\(s\) left out …", lines[1])
    assert lines[2].startswith("  File ") or lines[2].startswith("    ")  # a whole line, never half of one
    assert lines[-1] == "ValueError: the real cause, at the bottom"
    assert "in down" in trace and len(trace) <= MAX_TRACE


def test_trace_tail_keeps_a_short_traceback_whole() -> None:
    text = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: no'
    assert trace_tail(text) == text
    cut = trace_tail("Traceback (most recent call last):\n" + "  frame line\n" * 100 + "KeyError: 'k'", limit=300)
    assert cut.splitlines()[-1] == "KeyError: 'k'" and len(cut) <= 300 and "left out" in cut


def test_jobs_logs_at_80_columns_prints_each_traceback_line_whole(rt: Runtime) -> None:
    job_id = call(rt, "shallow", "deep_failure", depth=3)
    drain(rt, "maintenance", timeout=60)
    result = CliRunner().invoke(app, ["jobs", "logs", job_id], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    stored = [e for e in job_events(rt.store, job_id) if e["event"] == "failed"][-1]["message"]
    frames = [line for line in stored.splitlines() if line.startswith("  File ")]
    out = result.output.splitlines()
    assert frames and all(frame in out for frame in frames)  # each frame one line, as Python printed it
    assert "ValueError: the real cause, at the bottom" in out
    assert any("(traceback [" in line and "below)" in line for line in out)
    table_part = result.output.split("\n[")[0]
    assert "Traceback (most recent call last)" not in table_part  # not folded into the message column
