"""`colonies log ...` and `colonies attribute ...`."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from colonies.cli.common import (
    CLIError,
    Colony,
    Count,
    Json,
    ProcessId,
    PrvKey,
    client,
    console,
    group,
    kv,
    show,
    table,
    ts,
)

log_app = group("Process and executor logs.")
attribute_app = group("Process attributes.")


def logs_table(logs: list[Any], title: str = "Logs") -> Any:
    return table(
        title,
        ["Time", "Executor", "Message"],
        [(ts(entry.timestamp), entry.executorname, entry.message.rstrip("\n")) for entry in logs],
    )


@log_app.command("add")
def log_add(
    processid: ProcessId,
    message: Annotated[str, typer.Option("--message", "--msg", "-m", help="The message.")],
    prvkey: PrvKey = "",
) -> None:
    """Add a message to a process' log (the assigned executor's key)."""
    with client(prvkey) as c:
        c.add_log(processid, message)
    typer.echo("Log message added")


@log_app.command("get")
def log_get(
    processid: ProcessId = "",
    colony: Colony = "",
    prvkey: PrvKey = "",
    executorname: Annotated[str, typer.Option("--executor", "--executorname", "-e", help="An executor's logs instead.")] = "",
    count: Count = 100,
    as_json: Json = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep the table updated (until --timeout).")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to follow.")] = 60.0,
) -> None:
    """A process' log (or an executor's); --follow shows new messages as they arrive."""
    if not processid and not executorname:
        raise CLIError("pass --processid or --executor")
    with client(prvkey) as c:
        logs = c.get_logs(colony, processid, executorname, count) or []
        if not follow:
            show(logs, as_json, logs_table)
            return
        if as_json:
            raise CLIError("--follow draws a live table; use it without --json")
        from rich.live import Live

        deadline = time.monotonic() + timeout
        with Live(logs_table(logs), console=console(), refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                since = logs[-1].timestamp + 1 if logs else 0
                new = c.get_logs(colony, processid, executorname, count, since=since) or []
                if new:
                    logs = (logs + new)[-count:]
                    live.update(logs_table(logs))
                if processid and c.get_process(processid).state >= 2 and not new:
                    break


@log_app.command("search")
def log_search(
    text: Annotated[str, typer.Option("--text", help="Text to look for.")],
    colony: Colony = "",
    prvkey: PrvKey = "",
    days: Annotated[int, typer.Option("--days", help="Look back this many days.")] = 1,
    count: Count = 100,
    as_json: Json = False,
) -> None:
    """Search a colony's logs."""
    with client(prvkey) as c:
        logs = c.search_logs(colony, text, days, count) or []
    show(
        logs,
        as_json,
        lambda xs: table(
            "Logs",
            ["Time", "ProcessId", "Executor", "Message"],
            [(ts(x.timestamp), x.processid, x.executorname, x.message.rstrip("\n")) for x in xs],
        ),
    )


@attribute_app.command("add")
def attribute_add(
    processid: ProcessId,
    key: Annotated[str, typer.Option("--key", help="Key.")],
    value: Annotated[str, typer.Option("--value", help="Value.")],
    prvkey: PrvKey = "",
    as_json: Json = False,
) -> None:
    """Add an attribute to a running process (the assigned executor's key)."""
    with client(prvkey) as c:
        a = c.add_attribute(processid, key, value)
    show(a, as_json, lambda x: f"Attribute {x.attributeid} added")


@attribute_app.command("get")
def attribute_get(
    attributeid: Annotated[str, typer.Option("--attributeid", "-i", help="Attribute id.")],
    prvkey: PrvKey = "",
    as_json: Json = False,
) -> None:
    """Show an attribute."""
    with client(prvkey) as c:
        a = c.get_attribute(attributeid)
    show(
        a,
        as_json,
        lambda x: kv(
            "Attribute",
            [
                ("AttributeId", x.attributeid),
                ("TargetId", x.targetid),
                ("Key", x.key),
                ("Value", x.value),
                ("Type", x.attributetype),
            ],
        ),
    )
