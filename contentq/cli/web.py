"""`contentq web [--host 127.0.0.1] [--port 8700]`: the admin panel and JSON API; `contentq web token [--rotate]`."""

from __future__ import annotations

from typing import Annotated

import typer

from contentq.cli import typer_app
from contentq.cli.common import runtime
from contentq.cli.render import console, ok
from contentq.errors import ContentqError

app = typer_app(
    help="The admin panel in the browser and the JSON API (`contentq web`; `contentq web token`).",
    invoke_without_command=True,
)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.callback()
def web(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; anything but loopback exposes the panel.", envvar="CONTENTQ_WEB_HOST"),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535, envvar="CONTENTQ_WEB_PORT")] = 8700,
) -> None:
    """Serve the panel (pages, /api/, /api/docs) until stopped; log in with the token `contentq web token` prints."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from contentq.web.app import create_app
    from contentq.web.auth import token_path

    rt = runtime()
    application = create_app(rt.settings, rt)
    if host not in LOOPBACK:
        console.print(
            f"[yellow]warning:[/yellow] listening on {host}: anyone who reaches it sees the login form; "
            "put it behind HTTPS (a reverse proxy) before exposing it"
        )
    from contentq.people.users import owner_exists

    how = f"the token is in {token_path(rt.settings)}"
    if owner_exists(rt):
        how = "users log in with their name and password"
    console.print(f"contentq web on http://{host}:{port}/ — {how}")
    try:
        # ws="none": the panel has no WebSocket route (its live views are server-sent events), so uvicorn need not
        # import the websockets library (about 4 MiB) for the upgrades it would refuse anyway. The standard asyncio
        # loop and h11 instead of uvloop and httptools: 2 MiB less, and a panel of a few users never needs their speed.
        uvicorn.run(
            application,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            ws="none",
            loop="asyncio",
            http="h11",
        )
    except OSError as exc:
        raise ContentqError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port") from None


@app.command()
def token(
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace it: every browser session ends, live streams too.")
    ] = False,
) -> None:
    """Print the panel's token (created on first use, kept 0600 in CONTENTQ_HOME)."""
    from contentq.people.users import owner_exists
    from contentq.web.auth import load_token, rotate_token, token_path

    rt = runtime()
    settings = rt.settings
    settings.ensure_home()
    value = rotate_token(settings, rt.store) if rotate else load_token(settings)
    if rotate:
        ok(f"new token written to {token_path(settings)}; every browser session ended (log in again)")
    typer.echo(value)
    if owner_exists(rt):
        typer.echo(
            "note: an owner user exists, so this token no longer logs in; people log in with their name and"
            " password, scripts with `contentq users token NAME`",
            err=True,
        )
