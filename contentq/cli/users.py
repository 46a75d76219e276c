"""`contentq users`: the panel's people (add, passwd, list, remove, routes, role, token, sessions, logout) and
`contentq audit`: what people did."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from contentq.cli import typer_app
from contentq.cli.common import JsonOpt, WideOpt, runtime
from contentq.cli.render import Col, ok, print_json, table
from contentq.errors import ContentqError
from contentq.people import sessions as people_sessions
from contentq.people import trail, users
from contentq.people.roles import ROLES
from contentq.store.audit import KINDS

app = typer_app(
    help="Panel users: add, passwd, list, remove, routes, role, token, sessions, logout.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="The user's name (what they log in with).")]
RoutesOpt = Annotated[
    str | None, typer.Option("--routes", help="An editor's routes, comma-separated: the posts they may act on.")
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin (scripts).")
]


def _routes(value: str | None) -> list[str] | None:
    return None if value is None else [r for r in value.split(",") if r.strip()]


def _password(from_stdin: bool) -> str:
    """The password, from stdin or typed twice without echo; never an argument (it would be in `ps` and history)."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise ContentqError("--password-stdin: stdin's first line is empty; pipe the password in")
        return line
    typed: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return typed


@app.command()
def add(
    name: NameArg,
    role: Annotated[str, typer.Option("--role", help="owner (everything), editor (posts of --routes), viewer.")],
    routes: RoutesOpt = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a panel user with a password (asked twice, or --password-stdin)."""
    if role not in ROLES:
        raise ContentqError(f"no role {role!r}: owner, editor or viewer")
    rt = runtime()
    users.check_name(name)
    users.check_routes(rt, role, _routes(routes) or [])  # before asking for a password
    row = users.add_user(rt, name, role, _password(password_stdin), _routes(routes))
    where = f" on routes {', '.join(row['routes'])}" if row["routes"] else ""
    ok(f"user {row['name']} added: {row['role']}{where}")
    if role == "owner":
        ok("an owner user exists: the panel's shared token (`contentq web token`) no longer logs in")


@app.command()
def passwd(name: NameArg, password_stdin: PasswordStdin = False) -> None:
    """Set a user's password; their panel sessions end."""
    rt = runtime()
    users.get_user(rt, name)
    users.set_password(rt, name, _password(password_stdin))
    ok(f"password of {name} changed; their sessions ended")


@app.command("list")
def list_(as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """Every user: role, routes, live API tokens and sessions, last seen in the panel."""
    rows = users.list_users(runtime())
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["routes_shown"] = ", ".join(row["routes"]) or ("all" if row["role"] == "owner" else "—")
        row["last"] = (row["last_seen"] or "—")[:16]
    table(
        rows,
        ["name", "role", Col("routes_shown", "routes", fit="ellipsis"), "tokens", "sessions", ("last", "last seen"),
         Col("created_at", "created", wide=True)],
        title="panel users", empty="no users yet: `contentq users add NAME --role owner`", wide=wide,
    )  # fmt: skip


@app.command()
def remove(name: NameArg, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Remove a user, their API tokens and their sessions."""
    rt = runtime()
    users.get_user(rt, name)
    if not yes and not typer.confirm(f"remove user {name}, their tokens and sessions?"):
        raise typer.Exit(1)
    users.remove_user(rt, name)
    ok(f"user {name} removed")


@app.command("routes")
def routes_(
    name: NameArg, routes: Annotated[str, typer.Argument(help="The editor's routes, comma-separated ('' for none).")]
) -> None:
    """Set the routes an editor acts on (effective at their next request)."""
    row = users.set_role(runtime(), name, routes=_routes(routes) or [])
    ok(f"{row['name']} ({row['role']}) acts on routes: {', '.join(row['routes']) or 'none'}")


@app.command()
def role(
    name: NameArg,
    new_role: Annotated[str, typer.Argument(metavar="ROLE", help="owner, editor or viewer.")],
    routes: RoutesOpt = None,
) -> None:
    """Change a user's role (an editor's routes with --routes); the last owner keeps theirs."""
    row = users.set_role(runtime(), name, new_role, _routes(routes))
    where = f" on routes {', '.join(row['routes'])}" if row["routes"] else ""
    ok(f"{row['name']} is now {row['role']}{where}")


@app.command()
def token(
    name: NameArg,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Revoke the user's tokens (all, or the one --id names).")
    ] = False,
    token_id: Annotated[int | None, typer.Option("--id", help="With --revoke: only this token.", min=1)] = None,
    list_them: Annotated[bool, typer.Option("--list", help="List the user's tokens (never their values).")] = False,
    label: Annotated[
        str | None, typer.Option("--label", help="What the new token is for (ci, grafana): shown in listings.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue an API token for the user (printed once: keep it; only its hash is stored), or --revoke, --list."""
    rt = runtime()
    if list_them:
        rows = users.list_tokens(rt, name)
        if as_json:
            print_json(rows)
            return
        for row in rows:
            row["ends"] = "…" + row["hint"]
            row["state"] = "revoked" if row["revoked_at"] else "live"
        table(
            rows, ["id", "label", ("ends", "ends in"), "state", ("created_at", "created"),
                   ("last_used_at", "last used")],
            title=f"API tokens of {name}", empty=f"{name} has no API tokens",
        )  # fmt: skip
        return
    if revoke:
        count = users.revoke_tokens(rt, name, token_id)
        ok(f"{count} token(s) of {name} revoked")
        return
    if token_id is not None:
        raise ContentqError("--id goes with --revoke")
    value = users.issue_token(rt, name, label)
    if as_json:
        print(json.dumps({"user": name, "token": value}))  # not print_json: it would mask the token itself
        return
    typer.echo(value)
    typer.echo(f"(the API token of {name}: send it as `Authorization: Bearer …`; it is not shown again)", err=True)


@app.command()
def sessions(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's sessions.")] = None,
    revoke: Annotated[str | None, typer.Option("--revoke", help="End the session of this id (as listed).")] = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Live panel logins (id, user, address, browser, since, last used); --revoke ID ends one."""
    rt = runtime()
    if revoke is not None:
        ended = people_sessions.revoke(rt, revoke)
        ok(f"session {ended['id']} of {ended['user']} ended")
        return
    rows = people_sessions.sessions(rt, user)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["since"], row["seen"] = row["created_at"][:16], row["seen_at"][:16]
    table(
        rows, ["id", "user", "address", ("since", "logged in"), ("seen", "last used"),
               Col("agent", "browser", fit="ellipsis", wide=True)],
        title="panel sessions", empty="no live sessions", wide=wide,
    )  # fmt: skip


@app.command()
def logout(name: NameArg) -> None:
    """End every panel session of a user (their API tokens stay: `users token NAME --revoke`)."""
    rt = runtime()
    row = users.get_user(rt, name)
    ok(f"{people_sessions.revoke_user(rt, row['name'])} session(s) of {row['name']} ended")


def audit(
    actor: Annotated[
        str | None, typer.Option("--actor", help="An actor (web:alice, cli:root, bot:123) or a kind (web, cli, bot).")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="A window: 90s, 15m, 24h, 7d, 2w.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help=f"What it was about: {', '.join(KINDS)}.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.", min=1, max=trail.LIMIT_MAX)] = 50,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """What people did (panel, API, CLI, bot), newest first: when, who, on what, which action."""
    rows = trail.audit_trail(runtime(), actor=actor, since=since, kind=kind, limit=limit)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["when"] = row["at"][:19].replace("T", " ")
    table(
        rows, [("when", "at (UTC)"), "actor", "kind", "target", "action", Col("detail", "detail", fit="ellipsis")],
        title="audit", empty="nothing matches", wide=wide,
    )  # fmt: skip
