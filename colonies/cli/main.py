"""The `colonies` command. Heavy imports happen inside commands, so `--help` stays fast.

One module per command group (server, identity, process, workflow, schedule, logs, run, fs, location,
blueprint); they share their options and output helpers through `common`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from colonies.cli import rotate as _rotate  # noqa: F401  (registers chid and function register/remove)
from colonies.cli.admin import database_app, monitor_app
from colonies.cli.blueprint import blueprint_app
from colonies.cli.common import TARGET, CLIError
from colonies.cli.fs import fs_app
from colonies.cli.fs_snapshot import snapshot_app
from colonies.cli.function import function_app
from colonies.cli.identity import colony_app, executor_app, security_app, user_app
from colonies.cli.location import location_app
from colonies.cli.logs import attribute_app, log_app
from colonies.cli.process import process_app
from colonies.cli.run import executor_run
from colonies.cli.schedule import cron_app, generator_app
from colonies.cli.server import cluster_app, config, server_app
from colonies.cli.workflow import workflow_app

app = typer.Typer(
    help="Colonies: a zero-trust, pull-based meta-orchestrator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
for sub, name in (
    (server_app, "server"),
    (colony_app, "colony"),
    (user_app, "user"),
    (executor_app, "executor"),
    (function_app, "function"),
    (process_app, "process"),
    (workflow_app, "workflow"),
    (generator_app, "generator"),
    (cron_app, "cron"),
    (log_app, "log"),
    (attribute_app, "attribute"),
    (security_app, "security"),
    (cluster_app, "cluster"),
    (database_app, "database"),
    (monitor_app, "monitor"),
    (fs_app, "fs"),
    (location_app, "location"),
    (blueprint_app, "blueprint"),
):
    app.add_typer(sub, name=name)
fs_app.add_typer(snapshot_app, name="snapshot")
executor_app.command("run")(executor_run)
app.command("config")(config)


@app.callback()
def root(
    host: Annotated[
        str, typer.Option("--host", envvar="COLONIES_SERVER_HOST", help="Server host.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="COLONIES_SERVER_PORT", help="Server port.")] = 50080,
    tls: Annotated[bool, typer.Option("--tls", envvar="COLONIES_TLS", help="Use HTTPS.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", envvar="COLONIES_VERBOSE", help="Show tracebacks on errors.")
    ] = False,
    server_socket: Annotated[
        str, typer.Option("--server-socket", envvar="COLONIES_SERVER_SOCKET",
                          help="Reach the server through this Unix socket (a pilot relay's) instead of host:port.")
    ] = "",
) -> None:
    """Colonies: a zero-trust, pull-based meta-orchestrator."""
    TARGET.host, TARGET.port, TARGET.tls, TARGET.verbose = host, port, tls, verbose
    TARGET.socket = server_socket


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


def _message(exc: BaseException) -> str:
    """One line for a user: what failed, without the traceback."""
    from colonies.errors import ClientError, ConfigError, FsError, TransportError

    if isinstance(exc, (CLIError, FsError, ConfigError)):
        return str(exc)
    if isinstance(exc, TransportError):
        return f"cannot reach the server at {TARGET.host}:{TARGET.port}: {exc.message}"
    if isinstance(exc, ClientError):
        return f"{exc.message} (status {exc.status})"
    mod = type(exc).__module__
    if mod.startswith(("httpx", "httpcore")):
        return f"cannot reach the server at {TARGET.host}:{TARGET.port}: {exc or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


def main() -> None:
    # Standalone mode: typer reports usage errors and handles Exit; anything else lands here.
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, not a traceback
        if TARGET.verbose or os.environ.get("COLONIES_VERBOSE", "").lower() in ("1", "true"):
            import traceback

            traceback.print_exc()
        print(f"error: {_message(exc)}", file=sys.stderr)
        sys.exit(1)
