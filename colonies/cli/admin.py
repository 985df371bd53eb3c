"""`colonies database create|drop` and `colonies monitor start`: the original's admin commands, as far
as they mean something here (the server migrates its own schema and serves its own metrics)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from colonies.cli.common import TARGET, CLIError, group

if TYPE_CHECKING:
    from colonies.config import Config

database_app = group("The server's database (the server also creates and migrates it at start).")
monitor_app = group("Prometheus monitoring.")


def _where() -> tuple[Config, str]:
    from colonies.config import Config

    config = Config.from_env()
    if config.db_type in ("sqlite", "sqlite3", ""):
        return config, f"SQLite {config.db_path}"
    return config, f"PostgreSQL {config.db_host}:{config.db_port}/{config.db_name}"


@database_app.command("create")
def database_create() -> None:
    """Create the schema, or migrate it to this version, in the database the server would use
    (COLONIES_DB_TYPE, COLONIES_DB_PATH or COLONIES_DB_HOST/PORT/NAME/USER/PASSWORD), and store
    COLONIES_SERVER_ID as the server owner. `server start` does the same, so this is only needed to
    prepare a database ahead of time."""
    import asyncio

    from colonies.storage import create_storage
    from colonies.storage.migrate import latest_version

    config, where = _where()

    async def create() -> None:
        storage = create_storage(config)
        await storage.open()
        try:
            if config.server_id:
                await storage.set_server_id(config.server_id)
        finally:
            await storage.close()

    try:
        asyncio.run(create())
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot create the database ({where}): {exc}") from None
    dialect = "sqlite" if where.startswith("SQLite") else "postgresql"
    typer.echo(f"Database ready: {where}, schema version {latest_version(dialect)}")
    if not config.server_id:
        typer.echo("COLONIES_SERVER_ID is not set: the server owner is stored at the first `server start`",
                   err=True)


@database_app.command("drop")
def database_drop(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the SQLite database file (asks first, as the original does). A PostgreSQL database is
    dropped with PostgreSQL's own tools."""
    config, where = _where()
    if not where.startswith("SQLite"):
        raise CLIError(
            f"not dropping {where}: use `dropdb {config.db_name}` (or DROP DATABASE) as its owner; "
            "the server creates the schema again at its next start"
        )
    files = [p for p in (config.db_path, config.db_path + "-wal", config.db_path + "-shm") if os.path.exists(p)]
    if not files:
        raise CLIError(f"no database at {config.db_path}")
    if not yes:
        typer.echo(f"Remove {', '.join(files)}? This cannot be undone (YES, no): ", nl=False)
        if sys.stdin.readline().strip() != "YES":
            typer.echo("Aborted")
            raise typer.Exit(1)
    for p in files:
        os.unlink(p)
    typer.echo(f"Database {config.db_path} removed")


@monitor_app.command("start")
def monitor_start() -> None:
    """The original runs a separate Prometheus exporter; here the server serves GET /metrics itself
    (COLONIES_METRICS=true): this names the address to scrape, sending COLONIES_METRICS_TOKEN if set."""
    import httpx

    scheme = "https" if TARGET.tls else "http"
    url = f"{scheme}://{TARGET.host}:{TARGET.port}/metrics"
    token = os.environ.get("COLONIES_METRICS_TOKEN", "")
    try:
        status = httpx.get(url, timeout=5, headers={"Authorization": f"Bearer {token}"} if token else {}).status_code
    except httpx.HTTPError:
        status = 0
    if status == 200:
        names = " (with colony names: the token is accepted)" if token else ""
        typer.echo(f"no separate monitor is needed: the server serves Prometheus metrics at {url}{names}; "
                   "add it as a scrape target")
        return
    if status == 401:
        raise CLIError(f"the server serves Prometheus metrics at {url} behind a bearer token: set "
                       "COLONIES_METRICS_TOKEN to the server's (and `authorization` in the scrape config)")
    raise CLIError(f"no separate monitor exists here, and the server at {TARGET.host}:{TARGET.port} serves no "
                   "/metrics (start it with COLONIES_METRICS=true): use `colonies server stats` / "
                   "`colonies colony stats` (or --json) for counts")
