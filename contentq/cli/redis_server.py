"""`contentq redis`: the embedded Valkey used when CONTENTQ_REDIS_URL is not set."""

from __future__ import annotations

import typer

from contentq.cli import typer_app
from contentq.cli.common import JsonOpt, runtime
from contentq.cli.render import console, details, ok, print_json
from contentq.errors import ContentqError
from contentq.runtime.redis import EmbeddedServer, describe_redis, embedded_server
from contentq.settings import Settings

app = typer_app(
    help="Manage the embedded Valkey server (used when CONTENTQ_REDIS_URL is unset).",
    no_args_is_help=True,
)


def _server_settings() -> Settings:
    settings = runtime().settings
    if settings.redis_url:
        raise ContentqError(f"CONTENTQ_REDIS_URL is set ({describe_redis(settings)}); the embedded server is not used")
    return settings


def _server() -> EmbeddedServer:
    return embedded_server(_server_settings())


@app.command()
def start() -> None:
    """Start the embedded server in the background (commands also start it on demand)."""
    server = _server()
    server.start()
    ok(f"embedded Valkey running on {server.socket}")


@app.command()
def stop() -> None:
    """Shut the embedded server down (its append-only file keeps the queues)."""
    server = _server()
    ok("stopped" if server.stop() else "it was not running")


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Show whether the embedded server runs, and where."""
    server = _server()
    running = server.ping()
    info = {"running": running, "socket": str(server.socket), "pid": server.pid(), "data": str(server.data_dir)}
    if as_json:
        print_json(info)
        return
    details(info)
    if running:
        # Started on demand by a command (or by `redis start`), it stays up for the next ones until stopped.
        console.print(
            "[dim]it runs in the background until `contentq redis stop` (under supervisor, the contentq-redis program"
            " runs it)[/dim]",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print("[dim]the next command that needs it starts it (or `contentq redis start`)[/dim]")


@app.command()
def serve() -> None:
    """Run the embedded server in the foreground (for supervisor); asked to stop, it stops after the workers."""
    from contentq.ops.redis_serve import serve as serve_core

    code = serve_core(_server_settings())
    if code:
        raise typer.Exit(code)
