"""The `colonies` command. Heavy imports happen inside commands, so `--help` stays fast."""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(help="Colonies: a zero-trust, pull-based meta-orchestrator.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
server_app = typer.Typer(help="Run and inspect a server.", no_args_is_help=True)
security_app = typer.Typer(help="Keys and identities.", no_args_is_help=True)
app.add_typer(server_app, name="server")
app.add_typer(security_app, name="security")


@server_app.command("start")
def server_start(
    port: int = typer.Option(None, "--port", help="API port [env: COLONIES_SERVER_PORT, default 50080]"),
    bind: str = typer.Option(None, "--bind", help="Address to listen on [env: COLONIES_SERVER_BIND, default 127.0.0.1]"),
    db_path: str = typer.Option(None, "--db", help="SQLite file [env: COLONIES_DB_PATH, default colonies.db]"),
    server_id: str = typer.Option(None, "--server-id", help="Server owner id [env: COLONIES_SERVER_ID]"),
) -> None:
    """Start a server (SQLite by default; COLONIES_DB_TYPE=postgresql for PostgreSQL)."""
    from colonies.config import Config
    from colonies.serve import serve

    config = Config.from_env(port=port, bind=bind, db_path=db_path, server_id=server_id)
    if not config.server_id:
        server_prv = os.environ.get("COLONIES_SERVER_PRVKEY")
        if server_prv:
            from colonies.protocol.crypto import id_of

            config = config.with_(server_id=id_of(server_prv))
    serve(config)


@security_app.command("generate")
def security_generate() -> None:
    """Print a new private key and its id."""
    from colonies.protocol.crypto import generate_prvkey, id_of

    prv = generate_prvkey()
    typer.echo(f"Id:         {id_of(prv)}")
    typer.echo(f"PrvKey:     {prv}")


@security_app.command("id")
def security_id(prvkey: str = typer.Option(..., "--prvkey", help="Private key (64 hex chars)")) -> None:
    """Print the id of a private key."""
    from colonies.protocol.crypto import id_of

    try:
        typer.echo(id_of(prvkey))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("dev")
def dev(
    port: int = typer.Option(50080, "--port", help="API port [env: COLONIES_SERVER_PORT]"),
    workdir: str = typer.Option(".colonies", "--dir", help="Where the database and env file go"),
    once: bool = typer.Option(False, "--once", help="Exit after the first demo process completes"),
) -> None:
    """A working local colony in one command: server, keys, colony, demo executor, first process."""
    from colonies.cli.dev import run_dev

    sys.exit(run_dev(port=int(os.environ.get("COLONIES_SERVER_PORT", port)), workdir=workdir, once=once))


@app.command("version")
def version() -> None:
    """Print the version."""
    from colonies import __version__

    typer.echo(__version__)


def main() -> None:
    app()
