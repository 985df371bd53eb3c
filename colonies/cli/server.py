"""`colonies server ...`, `colonies cluster info` and `colonies config`."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from colonies.cli.common import (
    TARGET,
    CLIError,
    Json,
    ServerPrvKey,
    group,
    kv,
    print_json,
    server_client,
    show,
)

server_app = group("Run and inspect a server.")
cluster_app = group("The server cluster.")


@server_app.command("start")
def server_start(
    port: int = typer.Option(None, "--port", help="API port [env: COLONIES_SERVER_PORT, default 50080]"),
    bind: str = typer.Option(
        None, "--bind", help="Address to listen on [env: COLONIES_SERVER_BIND, default 127.0.0.1]"
    ),
    db_path: str = typer.Option(
        None, "--db", help="SQLite file [env: COLONIES_DB_PATH, default colonies.db]"
    ),
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


def _health() -> bool:
    import httpx

    scheme = "https" if TARGET.tls else "http"
    try:
        return httpx.get(f"{scheme}://{TARGET.host}:{TARGET.port}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@server_app.command("alive")
def server_alive() -> None:
    """Exit 0 if the server answers its health check, 1 if not."""
    if not _health():
        raise CLIError(f"server at {TARGET.host}:{TARGET.port} is not alive")
    typer.echo("Server is alive")


@server_app.command("status")
def server_status(as_json: Json = False) -> None:
    """The server's version and backends (needs no key)."""
    from colonies.cli.common import client
    from colonies.protocol.crypto import generate_prvkey

    # Any key will do: version and server info are open to everyone.
    with client(generate_prvkey()) as c:
        info = c.server_info()
    if as_json:
        print_json(info)
        return
    pairs = [
        ("Host", f"{TARGET.host}:{TARGET.port}"),
        ("BuildVersion", info.buildversion),
        ("BuildTime", info.buildtime),
    ]
    pairs += [(f"Backend {b.type}", f"{b.host}:{b.port} tls={b.tls}") for b in info.backends]
    from colonies.cli.common import console

    console().print(kv("Server", pairs))


@server_app.command("stats")
def server_stats(server_prvkey: ServerPrvKey = "", as_json: Json = False) -> None:
    """Counts of colonies, executors, processes and workflows (server owner only)."""
    with server_client(server_prvkey) as c:
        stats = c.statistics()
    show(stats, as_json, lambda s: stats_table("Server statistics", s))


def stats_table(title: str, s: object) -> object:
    from colonies.cli.common import to_builtins

    return kv(title, [(k.capitalize(), v) for k, v in to_builtins(s).items()])


@cluster_app.command("info")
def cluster_info(server_prvkey: ServerPrvKey = "", as_json: Json = False) -> None:
    """The cluster's nodes and leader (server owner only)."""
    with server_client(server_prvkey) as c:
        info = c.get_cluster()
    if as_json:
        print_json(info)
        return
    from colonies.cli.common import console, table

    leader = (info.get("leader") or {}).get("name")
    rows = [
        (n.get("name"), n.get("host"), n.get("apiport"), "yes" if n.get("name") == leader else "")
        for n in info.get("nodes") or []
    ]
    console().print(table("Cluster", ["Name", "Host", "APIPort", "Leader"], rows))


CONFIG_VARS = (
    "COLONIES_SERVER_HOST",
    "COLONIES_SERVER_PORT",
    "COLONIES_TLS",
    "COLONIES_COLONY_NAME",
    "COLONIES_COLONY_PRVKEY",
    "COLONIES_PRVKEY",
    "COLONIES_SERVER_PRVKEY",
    "COLONIES_SERVER_ID",
    "COLONIES_EXECUTOR_NAME",
    "COLONIES_EXECUTOR_TYPE",
)


def config(
    show_keys: Annotated[bool, typer.Option("--show-keys", help="Print private keys in full.")] = False,
    as_json: Json = False,
) -> None:
    """The configuration the CLI would use (from flags and COLONIES_* variables)."""
    values = {v: os.environ.get(v, "") for v in CONFIG_VARS}
    values["COLONIES_SERVER_HOST"], values["COLONIES_SERVER_PORT"] = TARGET.host, str(TARGET.port)
    values["COLONIES_TLS"] = str(TARGET.tls).lower()
    if not show_keys:
        values = {k: (v[:6] + "…" if v and k.endswith("PRVKEY") else v) for k, v in values.items()}
    if as_json:
        print_json(values)
        return
    from colonies.cli.common import console

    console().print(kv("Configuration", values.items()))
