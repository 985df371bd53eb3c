"""`colonies generator ...` and `colonies cron ...`: workflows fired by packed args or by time."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from colonies.cli.common import (
    CLIError,
    Colony,
    Count,
    Full,
    Json,
    PrvKey,
    client,
    group,
    kv,
    load_json_file,
    show,
    table,
    ts,
)

generator_app = group("Generators: fire a workflow every N packed args.")
cron_app = group("Crons: fire a workflow on a schedule.")

Name = Annotated[str, typer.Option("--name", help="Name.")]
SpecPath = Annotated[
    str, typer.Option("--spec", help="A workflow JSON file (array of specs or WorkflowSpec).")
]
GeneratorId = Annotated[str, typer.Option("--generatorid", "-i", help="Generator id.")]
CronId = Annotated[str, typer.Option("--cronid", "-i", help="Cron id.")]


def _workflow_text(path: str, colony: str) -> str:
    import msgspec

    from colonies.cli.workflow import workflow_from_json

    return msgspec.json.encode(workflow_from_json(load_json_file(path), colony)).decode()


# -- generator ------------------------------------------------------------------------------------------
def _generator_table(g: Any) -> Any:
    return kv(
        f"Generator {g.name}",
        [
            ("GeneratorId", g.generatorid),
            ("Name", g.name),
            ("Colony", g.colonyname),
            ("Trigger", g.trigger),
            ("Timeout", g.timeout),
            ("QueueSize", g.queuesize),
            ("LastRun", ts(g.lastrun)),
            ("WorkflowSpec", g.workflowspec),
        ],
    )


@generator_app.command("add")
def generator_add(
    name: Name,
    spec_path: SpecPath,
    trigger: Annotated[int, typer.Option("--trigger", help="Fire every this many packed args.")],
    timeout: Annotated[int, typer.Option("--timeout", help="Or this many s after the first pack (<= 0: never).")] = 0,
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
) -> None:
    """Add a generator."""
    if trigger <= 0:
        raise CLIError("--trigger must be at least 1")
    with client(prvkey) as c:
        g = c.add_generator(colony, name, _workflow_text(spec_path, colony), trigger, timeout)
    show(g, as_json, lambda x: f"Generator {x.name} added (id {x.generatorid})")


@generator_app.command("pack")
def generator_pack(
    generatorid: GeneratorId,
    arg: Annotated[str, typer.Option("--arg", help="The arg to pack.")],
    prvkey: PrvKey = "",
) -> None:
    """Pack an arg into a generator."""
    with client(prvkey) as c:
        c.pack_generator(generatorid, arg)
    typer.echo(f"Packed {arg!r} into generator {generatorid}")


@generator_app.command("get")
def generator_get(
    generatorid: GeneratorId = "",
    name: Annotated[str, typer.Option("--name", help="Or look it up by name.")] = "",
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
) -> None:
    """Show a generator (by id, or by --name)."""
    with client(prvkey) as c:
        if generatorid:
            g = c.get_generator(generatorid)
        elif name:
            g = c.resolve_generator(colony, name)
        else:
            raise CLIError("pass --generatorid or --name")
    show(g, as_json, _generator_table)


@generator_app.command("ls")
def generator_ls(
    colony: Colony = "", prvkey: PrvKey = "", count: Count = 100, as_json: Json = False, full: Full = False
) -> None:
    """List generators."""
    with client(prvkey) as c:
        gs = c.get_generators(colony, count) or []
    show(
        gs,
        as_json,
        lambda xs: table(
            "Generators",
            ["GeneratorId", "Name", "Trigger", "Timeout", "QueueSize", "LastRun"],
            [(g.generatorid, g.name, g.trigger, g.timeout, g.queuesize, ts(g.lastrun)) for g in xs],
            full=full,
        ),
    )


@generator_app.command("remove")
def generator_remove(generatorid: GeneratorId, prvkey: PrvKey = "") -> None:
    """Remove a generator."""
    with client(prvkey) as c:
        c.remove_generator(generatorid)
    typer.echo(f"Generator {generatorid} removed")


# -- cron -----------------------------------------------------------------------------------------------
def _cron_table(c: Any) -> Any:
    return kv(
        f"Cron {c.name}",
        [
            ("CronId", c.cronid),
            ("Name", c.name),
            ("Colony", c.colonyname),
            ("CronExpression", c.cronexpression),
            ("Interval", c.interval),
            ("Random", c.random),
            ("NextRun", ts(c.nextrun)),
            ("LastRun", ts(c.lastrun)),
            ("WaitForPrevProcessGraph", c.waitforprevprocessgraph),
            ("PrevProcessGraphId", c.prevprocessgraphid),
            ("WorkflowSpec", c.workflowspec),
        ],
    )


@cron_app.command("add")
def cron_add(
    name: Name,
    spec_path: SpecPath,
    cron: Annotated[str, typer.Option("--cron", help="Cron expression (sec min hour dom mon dow).")] = "",
    interval: Annotated[int, typer.Option("--interval", help="Or every this many s.")] = -1,
    random: Annotated[bool, typer.Option("--random", help="A random time within each interval.")] = False,
    waitprev: Annotated[
        bool, typer.Option("--waitprev", "--waitprevious", help="Skip a run while the last is unfinished.")
    ] = False,
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
) -> None:
    """Add a cron (a cron expression, or an interval)."""
    if not cron and interval <= 0:
        raise CLIError("pass --cron EXPRESSION or --interval SECONDS")
    with client(prvkey) as c:
        cr = c.add_cron(colony, name, _workflow_text(spec_path, colony), cron, interval, random, waitprev)
    show(cr, as_json, lambda x: f"Cron {x.name} added (id {x.cronid}, next run {ts(x.nextrun)})")


@cron_app.command("get")
def cron_get(cronid: CronId, prvkey: PrvKey = "", as_json: Json = False) -> None:
    """Show a cron."""
    with client(prvkey) as c:
        cr = c.get_cron(cronid)
    show(cr, as_json, _cron_table)


@cron_app.command("ls")
def cron_ls(
    colony: Colony = "", prvkey: PrvKey = "", count: Count = 100, as_json: Json = False, full: Full = False
) -> None:
    """List crons."""
    with client(prvkey) as c:
        crs = c.get_crons(colony, count) or []
    show(
        crs,
        as_json,
        lambda xs: table(
            "Crons",
            ["CronId", "Name", "CronExpression", "Interval", "NextRun", "LastRun"],
            [(x.cronid, x.name, x.cronexpression, x.interval, ts(x.nextrun), ts(x.lastrun)) for x in xs],
            full=full,
        ),
    )


@cron_app.command("run")
def cron_run(cronid: CronId, prvkey: PrvKey = "") -> None:
    """Fire a cron now."""
    with client(prvkey) as c:
        c.run_cron(cronid)
    typer.echo(f"Cron {cronid} fired")


@cron_app.command("remove")
def cron_remove(cronid: CronId, prvkey: PrvKey = "") -> None:
    """Remove a cron."""
    with client(prvkey) as c:
        c.remove_cron(cronid)
    typer.echo(f"Cron {cronid} removed")
