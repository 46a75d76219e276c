"""Login safety (issue 24): failed logins throttled per user name and per client address, with no lasting
lock-out; an unknown name costs an argon2 verify like a known one; user sessions expire idle and absolute, and
the owner lists and revokes them (CLI and panel). Real app, real SQLite, argon2-cffi's real hasher."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from contentq.cli.app import app as cli
from contentq.people import users
from contentq.runtime.context import Runtime
from contentq.web.app import create_app
from tests.web_helpers import PASSWORDS, add_people, login_as, two_routes

runner = CliRunner()


@pytest.fixture
def verifies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2 verify the app runs: the hash it checked against."""
    seen: list[str] = []
    real = PasswordHasher.verify

    def counted(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        seen.append(hash if isinstance(hash, str) else hash.decode())
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    return seen


def browser(rt: Runtime, address: str = "203.0.113.7") -> TestClient:
    return TestClient(create_app(rt.settings, rt), raise_server_exceptions=False, client=(address, 50000))


def attempt(tc: TestClient, name: str, password: str) -> Any:
    return tc.post("/login", data={"name": name, "password": password}, follow_redirects=False)


def test_a_thousand_wrong_passwords_in_a_minute_are_throttled_and_the_right_one_works_after_the_window(
    rt: Runtime, verifies: list[str]
) -> None:
    users.add_user(rt, "olga", "owner", PASSWORDS["olga"])
    window = timedelta(minutes=rt.settings.web_login_window_minutes)
    limit = rt.settings.web_login_max_failures
    tc = browser(rt)
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        answers = [attempt(tc, "olga", f"guess-{n:04d}-wrong") for n in range(1000)]
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {401: limit, 429: 1000 - limit}, statuses
        assert all(a.status_code == 401 for a in answers[:limit])
        throttled = answers[-1]
        assert 0 < int(throttled.headers["Retry-After"]) <= window.total_seconds()
        assert "too many failed logins; try again in" in throttled.text
        assert len(verifies) == limit  # a throttled try never reaches the hasher
        # Throttled: even the right password waits (it is not looked at), so guessing gains nothing.
        assert attempt(tc, "olga", PASSWORDS["olga"]).status_code == 429
        assert rt.store.scalar("SELECT COUNT(*) FROM login_failures") == limit  # refused tries are not counted
        clock.shift(window + timedelta(seconds=1))
        ok = attempt(tc, "olga", PASSWORDS["olga"])
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        assert rt.store.scalar("SELECT COUNT(*) FROM login_failures WHERE name = 'olga'") == 0
        assert tc.get("/api/me").json()["name"] == "olga"


def test_an_address_trying_many_names_is_throttled_and_other_addresses_are_not(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rt.settings, "web_login_max_failures_per_address", 8)  # each failure costs an argon2 verify
    users.add_user(rt, "olga", "owner", PASSWORDS["olga"])
    per_address = rt.settings.web_login_max_failures_per_address
    spray = browser(rt, "198.51.100.1")
    for n in range(per_address):
        assert attempt(spray, f"user{n}", "a-wrong-password").status_code == 401
    refused = attempt(spray, "olga", PASSWORDS["olga"])
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert attempt(browser(rt, "192.0.2.44"), "olga", PASSWORDS["olga"]).status_code == 303


def test_unknown_name_and_wrong_password_answer_alike_and_both_run_the_hasher(rt: Runtime, verifies: list[str]) -> None:
    """No answer, and no saved hash, tells whether a name exists: an unknown name is verified against a dummy
    argon2 hash made with the same parameters (bench/logins.py prints the two paths' times)."""
    users.add_user(rt, "olga", "owner", PASSWORDS["olga"])
    stored = rt.store.scalar("SELECT password_hash FROM users WHERE name = 'olga'")
    tc = browser(rt)
    unknown = attempt(tc, "nobody", "a-wrong-password")
    wrong = attempt(tc, "olga", "a-wrong-password")
    malformed = attempt(tc, "not a valid name!", "a-wrong-password")
    assert verifies == [users.dummy_hash(), stored, users.dummy_hash()]
    params = PasswordHasher().check_needs_rehash
    assert not params(users.dummy_hash()) and not params(stored)  # the same argon2 parameters
    assert users.dummy_hash().split("$")[:4] == stored.split("$")[:4]
    for response in (unknown, wrong, malformed):
        assert response.status_code == 401
        assert "wrong user name or password" in response.text
        assert "Retry-After" not in response.headers
    assert unknown.text.replace("nobody", "olga") == wrong.text


def test_a_hash_with_old_parameters_is_replaced_at_login(rt: Runtime) -> None:
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORDS["olga"])
    users.add_user(rt, "olga", "owner", PASSWORDS["olga"])
    rt.store.execute("UPDATE users SET password_hash = ? WHERE name = 'olga'", (old,))
    assert attempt(browser(rt), "olga", PASSWORDS["olga"]).status_code == 303
    new = rt.store.scalar("SELECT password_hash FROM users WHERE name = 'olga'")
    assert new != old and not PasswordHasher().check_needs_rehash(new)


def test_user_sessions_expire_idle_and_absolute(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt.settings, "web_session_idle_minutes", 30)
    monkeypatch.setattr(rt.settings, "web_session_max_hours", 2)
    add_people(rt)
    html = {"Accept": "text/html"}
    with time_machine.travel(datetime.now(UTC), tick=False) as clock:
        busy, idle = browser(rt), browser(rt)
        login_as(busy, "eddie")
        login_as(idle, "vera")
        cookies = {"busy": busy.cookies["contentq_session"], "idle": idle.cookies["contentq_session"]}
        tc = browser(rt)

        def status(which: str) -> int:  # the cookie sent by hand: the server's expiry, not the browser's max-age
            headers = {**html, "Cookie": f"contentq_session={cookies[which]}"}
            return tc.get("/posts", headers=headers, follow_redirects=False).status_code

        for _ in range(4):  # used every 25 minutes: the idle limit never strikes
            clock.shift(timedelta(minutes=25))
            assert status("busy") == 200
        assert status("idle") == 303  # unused for 1 h 40: to /login
        clock.shift(timedelta(minutes=25))  # 2 h 05 after the login
        assert status("busy") == 303
    assert rt.store.scalar("SELECT COUNT(*) FROM web_sessions") == 0


def test_owner_lists_and_revokes_sessions_from_the_cli_and_the_panel(rt: Runtime) -> None:
    two_routes(rt)
    add_people(rt)
    html = {"Accept": "text/html"}
    eddie, vera, olga = browser(rt, "198.51.100.5"), browser(rt, "198.51.100.6"), browser(rt)
    login_as(eddie, "eddie")
    login_as(vera, "vera")
    csrf = login_as(olga, "olga")

    listed = runner.invoke(cli, ["users", "sessions", "--json"])
    assert listed.exit_code == 0, listed.output
    sessions = {s["user"]: s for s in json.loads(listed.output)}
    assert set(sessions) == {"eddie", "vera", "olga"}
    assert sessions["eddie"]["address"] == "198.51.100.5"
    assert all(len(s["id"]) == 12 for s in sessions.values())
    table = runner.invoke(cli, ["users", "sessions"], env={"COLUMNS": "80"})
    assert table.exit_code == 0 and max(len(line) for line in table.output.splitlines()) <= 80

    revoked = runner.invoke(cli, ["users", "sessions", "--revoke", sessions["eddie"]["id"]])
    assert revoked.exit_code == 0 and "of eddie ended" in revoked.output
    assert eddie.get("/posts", headers=html, follow_redirects=False).status_code == 303

    page = olga.get("/sessions", headers=html)
    assert page.status_code == 200 and sessions["vera"]["id"] in page.text and sessions["eddie"]["id"] not in page.text
    assert vera.get("/sessions", headers=html).status_code == 403
    done = olga.post(f"/sessions/{sessions['vera']['id']}/revoke", data={"csrf": csrf}, headers=html)
    assert done.status_code == 200 and "of vera revoked" in done.text
    assert vera.get("/posts", headers=html, follow_redirects=False).status_code == 303
    assert olga.get("/posts", headers=html, follow_redirects=False).status_code == 200

    audit = runner.invoke(cli, ["audit", "--kind", "session", "--json"])
    rows = json.loads(audit.output)
    assert [(r["actor"], r["action"]) for r in rows] == [("web:olga", "revoked"), (rows[1]["actor"], "revoked")]
    assert rows[1]["actor"].startswith("cli:")


def test_a_new_password_ends_the_users_sessions(rt: Runtime) -> None:
    add_people(rt)
    eddie = browser(rt)
    login_as(eddie, "eddie")
    result = runner.invoke(cli, ["users", "passwd", "eddie", "--password-stdin"], input="a-brand-new-password\n")
    assert result.exit_code == 0, result.output
    assert eddie.get("/posts", headers={"Accept": "text/html"}, follow_redirects=False).status_code == 303
    assert attempt(browser(rt), "eddie", PASSWORDS["eddie"]).status_code == 401
    assert attempt(browser(rt), "eddie", "a-brand-new-password").status_code == 303


def test_passwords_and_tokens_never_reach_logs_or_the_database(rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from contentq.redact import redact

    caplog.set_level(logging.DEBUG)
    add = runner.invoke(
        cli, ["users", "add", "nina", "--role", "viewer", "--password-stdin"], input="nina-secret-password\n"
    )
    assert add.exit_code == 0, add.output
    issued = runner.invoke(cli, ["users", "token", "nina"])
    token = issued.stdout.strip()
    assert token.startswith("cq_") and len(token) > 40
    tc = browser(rt)
    assert attempt(tc, "nina", "nina-wrong-password").status_code == 401
    assert attempt(tc, "nina", "nina-secret-password").status_code == 303
    assert browser(rt).get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "nina"
    assert redact(f"sent {token} to the API") == "sent *** to the API"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    stored = "\n".join(rt.store.conn.iterdump())
    for secret in ("nina-secret-password", "nina-wrong-password", token):
        assert secret not in logged and secret not in stored
    listed = runner.invoke(cli, ["users", "token", "nina", "--list", "--json"])
    assert token not in listed.output and json.loads(listed.output)[0]["hint"] == token[-4:]


def test_concurrent_wrong_passwords_cannot_slip_past_the_limit(rt: Runtime, verifies: list[str]) -> None:
    """200 tries at once from 20 connections (uvicorn's thread pool checks them in parallel): each is counted
    before its password is checked, so exactly the limit reaches argon2."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.web_helpers import serving

    users.add_user(rt, "olga", "owner", PASSWORDS["olga"])
    limit = rt.settings.web_login_max_failures
    with serving(rt) as url:

        def guess(n: int) -> int:
            with httpx.Client(base_url=url, timeout=60) as client:
                data = {"name": "olga", "password": f"parallel-guess-{n}"}
                return client.post("/login", data=data, follow_redirects=False).status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = Counter(pool.map(guess, range(200)))
    assert statuses == {401: limit, 429: 200 - limit}, statuses
    assert len(verifies) == limit
