"""`colonies executor run`: serve a module's functions, or an allowlist of shell commands."""

from __future__ import annotations

from typing import Annotated

import typer


def executor_run(
    target: Annotated[str, typer.Argument(help="module or module:object declaring a colonies.Executor")] = "",
    commands: Annotated[
        str, typer.Option("--commands", help="Serve the commands of this TOML allowlist.")
    ] = "",
    colony: Annotated[
        str, typer.Option("--colonyname", "--colony", envvar="COLONIES_COLONY_NAME", help="Colony name.")
    ] = "",
    prvkey: Annotated[
        str,
        typer.Option(
            "--prvkey",
            envvar="COLONIES_EXECUTOR_PRVKEY",
            help="The executor's key (a new one is made if --colony-prvkey is given and this is not).",
        ),
    ] = "",
    colony_prvkey: Annotated[
        str,
        typer.Option(
            "--colony-prvkey",
            envvar="COLONIES_COLONY_PRVKEY",
            help="The colony owner's key: add and approve this executor.",
        ),
    ] = "",
    name: Annotated[str, typer.Option("--name", envvar="COLONIES_EXECUTOR_NAME", help="Executor name.")] = "",
    executortype: Annotated[
        str, typer.Option("--type", envvar="COLONIES_EXECUTOR_TYPE", help="Executor type.")
    ] = "",
    slots: Annotated[int, typer.Option("--slots", help="Processes run at once (0: the executor's own).")] = 0,
    heartbeat: Annotated[
        float, typer.Option("--heartbeat", help="Seconds between signs of life while a process runs.")
    ] = 0,
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Exit when no work is left.")] = False,
) -> None:
    """Serve the functions a module declares with `colonies.Executor`, or an allowlist of commands.

    On SIGTERM/SIGINT it stops pulling, finishes the processes it runs, and exits.
    """
    import logging
    import os

    from colonies.cli.common import TARGET, CLIError
    from colonies.executor import load_executor

    logging.basicConfig(
        level=os.environ.get("COLONIES_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    if bool(target) == bool(commands):
        raise CLIError("pass a module (module or module:object) or --commands allowlist.toml, not both")
    if commands:
        from colonies.commands import command_executor

        ex = command_executor(commands, executortype=executortype, name=name)
    else:
        ex = load_executor(target)
    ex.configure(
        colony=colony,
        prvkey=prvkey,
        name=name,
        executortype=executortype,
        host=TARGET.host,
        port=TARGET.port,
        tls=TARGET.tls,
        slots=slots or None,
        heartbeat=heartbeat or None,
    )
    if not ex.colony:
        raise CLIError("no colony: set COLONIES_COLONY_NAME or pass --colonyname")
    if not ex.prvkey and not colony_prvkey:
        raise CLIError(
            "no executor key: set COLONIES_EXECUTOR_PRVKEY (an approved executor's), or give the "
            "colony owner's key (COLONIES_COLONY_PRVKEY) to add and approve a new one"
        )
    if not ex.functions:
        raise CLIError(f"{target or commands} declares no functions")
    ex.run(until_idle=until_idle, colony_prvkey=colony_prvkey)
