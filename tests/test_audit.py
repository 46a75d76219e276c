"""The audit trail (issue 24): every action by a person — panel and API users (`web:<user>`), the CLI
(`cli:<os user>`), the bot (`bot:<telegram id>`) — is in the post's or job's history with its actor, or in
audit_events for what is neither; `contentq audit` and the owner-only Audit page list them with filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from typer.testing import CliRunner

from contentq import actors, lifecycle
from contentq.cli.app import app as cli
from contentq.people import users
from contentq.review import posts
from contentq.runtime.context import Runtime
from contentq.store.jobs import log_event
from tests.web_helpers import add_people, as_user, failed_job, login_as, two_routes

runner = CliRunner()
ME = actors.cli()


def audit(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(cli, ["audit", "--json", *args])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


@pytest.fixture
def acted(rt: Runtime) -> dict[str, Any]:
    """People did things: eddie in the panel, olga over the API, someone on the CLI, a bot user; a job too."""
    ids: dict[str, Any] = two_routes(rt)
    ids["job"] = failed_job(rt, "audited")
    ids["other_job"] = failed_job(rt, "by-cli")
    ids["bulk_job"] = failed_job(rt, "in-bulk", error="timeout")
    tokens = add_people(rt)
    eddie = as_user(rt, tokens["eddie"])
    assert eddie.put(f"/api/posts/{ids['news']}/text", json={"html": "Eddie's words"}).status_code == 200
    assert eddie.post(f"/api/posts/{ids['news']}/approve").status_code == 200
    olga = as_user(rt, tokens["olga"])
    assert olga.post(f"/api/jobs/{ids['job']}/retry").status_code == 200
    assert olga.post(f"/api/jobs/{ids['job']}/cancel").status_code == 200
    assert olga.post("/api/queues/collect/pause").status_code == 200
    created = olga.post("/api/jobs", json={"kind": "noop", "key": "asked-by-hand"})
    assert created.status_code == 201, created.text
    ids["created"] = created.json()["job"]["id"]
    assert runner.invoke(cli, ["jobs", "retry", ids["other_job"]]).exit_code == 0
    bulk = olga.post("/api/bulk/retry", json={"status": "failed", "kind": "noop"})
    assert bulk.status_code == 200 and bulk.json()["ids"] == [ids["bulk_job"]], bulk.text
    assert runner.invoke(cli, ["queue", "resume", "collect"]).exit_code == 0
    with actors.acting_as("bot:777000"):  # what the admin bot's handlers do around a core call
        posts.reject(rt, ids["sport"], "off-topic")
    with actors.acting_as(actors.job("noop-worker-made")):  # a job's own events are not a person's
        log_event(rt.store, ids["job"], "progress", "half way")
    return ids


def test_every_persons_action_is_listed_with_its_actor(rt: Runtime, acted: dict[str, Any]) -> None:
    rows = audit("--limit", "100")
    seen = {(r["actor"], r["kind"], r["target"], r["action"]) for r in rows}
    news, sport, job, other = (str(acted["news"]), str(acted["sport"]), acted["job"], acted["other_job"])
    assert {
        ("web:eddie", "post", news, "edited"),
        ("web:eddie", "post", news, "approved"),
        ("web:olga", "job", job, "restarted"),
        ("web:olga", "job", job, "cancelled"),
        ("web:olga", "queue", "collect", "paused"),
        ("web:olga", "job", acted["created"], "created"),
        ("web:olga", "job", acted["bulk_job"], "restarted"),
        (ME, "job", other, "restarted"),
        (ME, "queue", "collect", "resumed"),
        ("bot:777000", "post", sport, "rejected"),
        ("process:" + actors.os_user(), "user", "eddie", "added"),
    } <= seen, seen
    assert not any(r["action"] == "progress" for r in rows)  # the job's own event
    assert all(r["actor"].split(":")[0] in ("web", "cli", "bot", "process") for r in rows)
    assert [r["at"] for r in rows] == sorted((r["at"] for r in rows), reverse=True)
    # The same actors are in the post's and the job's own history.
    history = lifecycle.history(rt.store, acted["news"])
    assert ("approved", "web:eddie") in [(h["event"], h["actor"]) for h in history]
    shown = runner.invoke(cli, ["posts", "show", news, "--json"])
    assert [(a["actor"], a["action"]) for a in json.loads(shown.output)["actions"]] == [("web:eddie", "edited")]
    events = rt.store.query("SELECT event, actor FROM job_events WHERE job_id = ? ORDER BY id", (job,))
    assert {"event": "restarted", "actor": "web:olga"} in events
    assert {"event": "progress", "actor": None} in events


def test_filters_by_actor_kind_and_time(rt: Runtime, acted: dict[str, Any]) -> None:
    assert {r["actor"] for r in audit("--actor", "web:eddie")} == {"web:eddie"}
    assert {r["actor"] for r in audit("--actor", "web")} == {"web:eddie", "web:olga"}
    assert {r["actor"] for r in audit("--actor", "bot")} == {"bot:777000"}
    assert {(r["action"], r["actor"]) for r in audit("--kind", "queue")} == {("paused", "web:olga"), ("resumed", ME)}
    assert len(audit("--limit", "2")) == 2
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2), tick=False):
        assert audit("--since", "1h") == []
        runner.invoke(cli, ["queue", "pause", "imagegen"])
        assert [(r["target"], r["action"]) for r in audit("--since", "1h")] == [("imagegen", "paused")]
    bad = runner.invoke(cli, ["audit", "--kind", "everything"])
    assert "no audit kind 'everything'" in str(bad.exception)
    bad = runner.invoke(cli, ["audit", "--since", "yesterday"])
    assert "not a window" in str(bad.exception)


def test_audit_table_fits_80_columns(rt: Runtime, acted: dict[str, Any]) -> None:
    result = runner.invoke(cli, ["audit"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "web:eddie" in result.output and "approved" in result.output


def test_the_audit_page_and_api_are_the_owners(rt: Runtime, acted: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from contentq.web.app import create_app

    html = {"Accept": "text/html"}
    owner = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    login_as(owner, "olga")
    page = owner.get("/audit", params={"actor": "web:eddie"}, headers=html)
    assert page.status_code == 200 and 'href="/audit"' in page.text
    assert page.text.count("web:eddie") >= 2 and "bot:777000" not in page.text
    assert "bot:777000" in owner.get("/audit", params={"kind": "post"}, headers=html).text
    api = owner.get("/api/audit", params={"kind": "queue", "limit": 1}).json()
    assert len(api["items"]) == 1 and api["next_before"] is not None
    older = owner.get("/api/audit", params={"kind": "queue", "before": api["next_before"]}).json()
    assert [i["action"] for i in api["items"] + older["items"]] == ["resumed", "paused"]
    assert owner.get("/audit", params={"kind": "nonsense"}, headers=html).status_code == 400
    for name in ("eddie", "vera"):
        tc = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
        login_as(tc, name)
        assert tc.get("/audit", headers=html).status_code == 403
        assert tc.get("/api/audit").status_code == 403


def test_user_changes_and_logins_are_audited(rt: Runtime) -> None:
    from fastapi.testclient import TestClient

    from contentq.web.app import create_app

    add = runner.invoke(
        cli, ["users", "add", "nina", "--role", "viewer", "--password-stdin"], input="nina-password-1\n"
    )
    assert add.exit_code == 0, add.output
    assert runner.invoke(cli, ["users", "token", "nina"]).exit_code == 0
    assert runner.invoke(cli, ["users", "token", "nina", "--revoke"]).exit_code == 0
    login_as(TestClient(create_app(rt.settings, rt)), "nina", "nina-password-1")
    assert runner.invoke(cli, ["users", "remove", "nina", "--yes"]).exit_code == 0
    rows = [(r["actor"], r["action"]) for r in reversed(audit("--kind", "user"))]
    assert rows == [(ME, "added"), (ME, "token_issued"), (ME, "token_revoked"), (ME, "removed")]
    logins = audit("--kind", "login")
    assert [(r["actor"], r["target"], r["action"]) for r in logins] == [("web:nina", "nina", "logged_in")]
    assert users.find(rt, "nina") is None
