"""`contentq users` (issue 24): add, passwd, list, remove, routes, role, token — what a user sees, and the refusals
with what to do instead. Real CLI (typer's runner and a child process), real SQLite, argon2-cffi's hasher."""

from __future__ import annotations

import json
from typing import Any

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from contentq.cli.app import app as cli
from contentq.people import users
from contentq.runtime.context import Runtime
from tests.conftest import subprocess_env
from tests.web_helpers import as_user, two_routes

runner = CliRunner()


def run(*args: str, stdin: str | None = None) -> Any:
    return runner.invoke(cli, list(args), input=stdin, env={"COLUMNS": "80"})


def add(name: str, role: str, *extra: str, password: str = "a-long-password") -> Any:
    return run("users", "add", name, "--role", role, *extra, "--password-stdin", stdin=password + "\n")


def test_add_list_and_the_hash_kept(rt: Runtime) -> None:
    two_routes(rt)
    assert add("olga", "owner").exit_code == 0
    done = add("eddie", "editor", "--routes", "news,sport")
    assert done.exit_code == 0 and "editor on routes news, sport" in done.output
    assert add("vera", "viewer").exit_code == 0
    row = rt.store.one("SELECT password_hash FROM users WHERE name = 'eddie'")
    assert row is not None and row["password_hash"].startswith("$argon2id$")
    assert PasswordHasher().verify(row["password_hash"], "a-long-password")
    listed = json.loads(run("users", "list", "--json").output)
    assert [(u["name"], u["role"], u["routes"]) for u in listed] == [
        ("olga", "owner", []), ("eddie", "editor", ["news", "sport"]), ("vera", "viewer", []),
    ]  # fmt: skip
    assert all("password_hash" not in u for u in listed)
    table = run("users", "list")
    assert table.exit_code == 0 and max(len(line) for line in table.output.splitlines()) <= 80
    assert "news, sport" in table.output


def test_the_password_prompt_asks_twice_and_hides_it(rt: Runtime) -> None:
    mismatch = run("users", "add", "olga", "--role", "owner", stdin="first-password-1\nsecond-password\n")
    assert users.find(rt, "olga") is None and "do not match" in mismatch.output.lower()
    typed = run("users", "add", "olga", "--role", "owner", stdin="same-password-1\nsame-password-1\n")
    assert typed.exit_code == 0, typed.output
    assert "same-password-1" not in typed.output  # hidden while typed
    assert users.verify_password(users.find(rt, "olga"), "same-password-1")


@pytest.mark.parametrize(
    ("args", "password", "says"),
    [
        (["eve", "--role", "admin"], "a-long-password", "no role 'admin': owner, editor or viewer"),
        (["eve", "--role", "editor", "--routes", "news,moon"], "a-long-password", "no route 'moon'"),
        (["eve", "--role", "viewer", "--routes", "news"], "a-long-password", "only an editor has routes"),
        (["eve", "--role", "viewer"], "short", "the password is 5 characters; use at least 10"),
        (["bad name", "--role", "viewer"], "a-long-password", "user name 'bad name' is not usable"),
        (["olga", "--role", "viewer"], "a-long-password", "user 'olga' exists already"),
    ],
)
def test_refusals_say_what_to_do(rt: Runtime, args: list[str], password: str, says: str) -> None:
    two_routes(rt)
    assert add("olga", "owner").exit_code == 0
    result = run("users", "add", *args, "--password-stdin", stdin=password + "\n")
    assert result.exit_code == 1
    assert says in str(result.exception)
    assert [u["name"] for u in users.list_users(rt)] == ["olga"]  # nothing half-made


def test_errors_are_one_line_with_exit_1_in_a_real_process(rt: Runtime) -> None:
    import subprocess
    import sys

    env = subprocess_env(rt.settings)
    done = subprocess.run(
        [sys.executable, "-m", "contentq", "users", "passwd", "nobody", "--password-stdin"],
        input="a-long-password\n", capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == "error: no user 'nobody'; `contentq users list` shows them"


def test_routes_role_and_the_last_owner(rt: Runtime) -> None:
    two_routes(rt)
    add("olga", "owner")
    add("eddie", "editor", "--routes", "news")
    assert "acts on routes: news, sport" in run("users", "routes", "eddie", "news,sport").output
    assert users.find(rt, "eddie")["routes"] == ["news", "sport"]  # type: ignore[index]
    assert "olga is the only owner" in str(run("users", "role", "olga", "viewer").exception)
    assert "is now owner" in run("users", "role", "eddie", "owner").output
    assert users.find(rt, "eddie")["routes"] == []  # type: ignore[index]
    assert run("users", "role", "olga", "viewer").exit_code == 0
    assert "only owner of users who remain" in str(run("users", "remove", "eddie", "--yes").exception)
    assert run("users", "remove", "olga", "--yes").exit_code == 0
    assert [u["name"] for u in users.list_users(rt)] == ["eddie"]


def test_tokens_are_shown_once_listed_by_hint_and_revocable(rt: Runtime) -> None:
    add("olga", "owner")
    first = run("users", "token", "olga").stdout.strip()
    second = json.loads(run("users", "token", "olga", "--label", "ci", "--json").stdout)["token"]
    assert first != second and first.startswith("cq_")
    assert as_user(rt, first).get("/api/me").status_code == 200
    listed = json.loads(run("users", "token", "olga", "--list", "--json").output)
    assert [(t["id"], t["label"], t["hint"], t["revoked_at"]) for t in listed] == [
        (1, None, first[-4:], None), (2, "ci", second[-4:], None),
    ]  # fmt: skip
    assert "ci" in run("users", "token", "olga", "--list").output
    assert "1–60 characters" in str(run("users", "token", "olga", "--label", "x" * 61).exception)
    assert "1 token(s) of olga revoked" in run("users", "token", "olga", "--revoke", "--id", "1").output
    assert as_user(rt, first).get("/api/me").status_code == 401
    assert as_user(rt, second).get("/api/me").status_code == 200
    assert "no live token 1" in str(run("users", "token", "olga", "--revoke", "--id", "1").exception)
    assert "1 token(s) of olga revoked" in run("users", "token", "olga", "--revoke").output
    assert as_user(rt, second).get("/api/me").status_code == 401
    assert "no user 'nobody'" in str(run("users", "token", "nobody").exception)
