"""`contentq accounts`: named Telegram accounts with their own session, proxy, fingerprint, budget and health."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from contentq import accounts as core
from contentq.cli import typer_app
from contentq.cli.common import JsonOpt, WideOpt, runtime
from contentq.cli.render import Col, details, ok, print_json, table
from contentq.routes import load_routes

app = typer_app(help="Telegram accounts: add, login, list, set, remove.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="The account's name: lower-case letters, digits, '-', '_'.")]
ProxyOpt = Annotated[
    str | None,
    typer.Option(
        "--proxy",
        help="socks5://[user:password@]host:port, http://host:port or mtproxy://host:port?secret=HEX ('' removes it).",
    ),
]
DeviceOpt = Annotated[str | None, typer.Option("--device-model", help="Device model Telegram shows for the session.")]
SystemOpt = Annotated[str | None, typer.Option("--system-version", help="System version Telegram shows.")]
AppOpt = Annotated[str | None, typer.Option("--app-version", help="App version Telegram shows.")]
LangOpt = Annotated[str | None, typer.Option("--lang-code", help="Language code of the client, e.g. en, de.")]
BudgetOpt = Annotated[
    int | None, typer.Option("--budget", help="Sends a minute (0: no limit); default CONTENTQ_PUBLISH_ACCOUNT_BUDGET.")
]


def _show(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(row)
        return
    shown = {k: v for k, v in row.items() if v not in (None, "", [], {})}
    shown["routes"] = ", ".join(f"{r} ({'/'.join(u)})" for r, u in row["routes"].items()) or "none"
    details(shown, title=f"account {row['name']}")


@app.command("add")
def add(
    name: NameArg, proxy: ProxyOpt = None, device_model: DeviceOpt = None, system_version: SystemOpt = None,
    app_version: AppOpt = None, lang_code: LangOpt = None, budget: BudgetOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Add a named account with its own session file, optional proxy, device fingerprint and send budget."""
    row = core.add_account(runtime(), name, proxy=proxy, device_model=device_model, system_version=system_version,
                           app_version=app_version, lang_code=lang_code, send_budget=budget)  # fmt: skip
    if as_json:
        print_json(row)
        return
    ok(f"account {name} added; log it in with `contentq accounts login {name}`")


@app.command("set")
def set_(
    name: NameArg, proxy: ProxyOpt = None, device_model: DeviceOpt = None, system_version: SystemOpt = None,
    app_version: AppOpt = None, lang_code: LangOpt = None, budget: BudgetOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Change an account's proxy, fingerprint or budget (workers and listeners use them after a restart)."""
    row = core.set_account(runtime(), name, proxy=proxy, device_model=device_model, system_version=system_version,
                           app_version=app_version, lang_code=lang_code, send_budget=budget)  # fmt: skip
    _show(row, as_json)


@app.command("login")
def login(
    name: NameArg,
    phone: Annotated[str | None, typer.Option("--phone", help="Phone number in international form.")] = None,
) -> None:
    """Log the account in (phone → code → 2FA password) through its proxy; its session is saved (mode 0600)."""
    rt = runtime()
    number = phone or typer.prompt("Phone number (international form, e.g. +15551234567)")
    user, path = core.login_account(
        rt, name, number.strip(),
        ask_code=lambda: typer.prompt("Code sent by Telegram"),
        ask_password=lambda: typer.prompt("Two-step verification password", hide_input=True),
    )  # fmt: skip
    ok(f"account {name} logged in as {user.name} (@{user.username or '—'}); session saved to {path}")


@app.command("list")
def list_(
    check: Annotated[
        bool, typer.Option("--check", help="Ask Telegram now (through each account's proxy) and record the answer.")
    ] = False,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Accounts with their health (connected, logged out, banned, restricted, flood wait), proxy and routes."""
    rt = runtime()
    config = load_routes(rt.settings.config_path)
    if check:
        for row in core.health_rows(rt, config):
            core.check_account(rt, row["name"])
    rows = core.health_rows(rt, config)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["uses"] = ", ".join(f"{r}:{'/'.join(u)}" for r, u in row["routes"].items())
        row["user"] = f"@{row['username']}" if row["username"] else row["user_id"]
    table(
        rows,
        ["name", "status", Col("since", wide=True), "user", Col("flood_until", "flood until"), Col("proxy", wide=True),
         Col("uses", "routes", fit="ellipsis"), Col("fix", fit="ellipsis"), Col("detail", fit="ellipsis", wide=True),
         Col("device_model", "device", wide=True), Col("send_budget", "budget", wide=True)],
        title="Telegram accounts", empty="no accounts: `contentq accounts add NAME`", wide=wide,
    )  # fmt: skip


@app.command("remove")
def remove(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove an account and its session file (refused while a route uses it)."""
    rt = runtime()
    if not yes:
        typer.confirm(f"Remove Telegram account {name} and its session file?", abort=True)
    result = core.remove_account(rt, name, load_routes(rt.settings.config_path))
    if as_json:
        print_json(result)
        return
    ok(f"account {name} removed (session file {result['session_file']} deleted)")
