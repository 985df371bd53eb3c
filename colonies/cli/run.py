"""`colonies executor run`: serve a module's functions, an allowlist of shell commands, containers, or
Slurm batch jobs."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from colonies.executors import Executor


def executor_run(
    target: Annotated[str, typer.Argument(help="module or module:object declaring a colonies.Executor")] = "",
    commands: Annotated[
        str, typer.Option("--commands", help="Serve the commands of this TOML allowlist.")
    ] = "",
    containers: Annotated[
        str, typer.Option("--containers", help="Run each process in a container, as this TOML config allows.")
    ] = "",
    slurm: Annotated[
        str, typer.Option("--slurm", help="Run each process as a Slurm batch job, as this TOML config allows.")
    ] = "",
    colony: Annotated[
        str, typer.Option("--colonyname", "--colony", envvar="COLONIES_COLONY_NAME", help="Colony name.")
    ] = "",
    prvkey: Annotated[
        str,
        typer.Option(
            "--prvkey",
            envvar="COLONIES_EXECUTOR_PRVKEY",
            help="The executor's key; without one, the key kept in --state-dir (made and kept there on the "
            "first run with --colony-prvkey).",
        ),
    ] = "",
    prvkey_file: Annotated[
        str,
        typer.Option(
            "--prvkey-file",
            envvar="COLONIES_EXECUTOR_PRVKEY_FILE",
            help="Read the executor's key from this file (a mounted secret), which others may not read.",
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
    location: Annotated[
        str,
        typer.Option("--location", envvar="COLONIES_EXECUTOR_LOCATION",
                     help="The site it registers at (a location name; see `colonies location`)."),
    ] = "",
    executortype: Annotated[
        str, typer.Option("--type", envvar="COLONIES_EXECUTOR_TYPE", help="Executor type.")
    ] = "",
    slots: Annotated[int, typer.Option("--slots", help="Processes run at once (0: the executor's own).")] = 0,
    heartbeat: Annotated[
        float, typer.Option("--heartbeat", help="Seconds between signs of life while a process runs.")
    ] = 0,
    watch: Annotated[
        float,
        typer.Option("--watch", help="Seconds between checks that a running process was not cancelled."),
    ] = 0,
    state_dir: Annotated[
        str,
        typer.Option(
            "--state-dir",
            envvar="COLONIES_EXECUTOR_STATE_DIR",
            help="Where the executor keeps its identity when no key is given "
            "[default: $XDG_STATE_HOME/colonies/executors/<colony>/<name>].",
        ),
    ] = "",
    fs_dir: Annotated[
        str,
        typer.Option(
            "--fs-dir",
            envvar="COLONIES_EXECUTOR_FS_DIR",
            help="Where processes with spec.fs get their working directories (<fs-dir>/<processid>) "
            "[default: a temp dir of this executor].",
        ),
    ] = "",
    health_file: Annotated[
        str,
        typer.Option(
            "--health-file",
            envvar="COLONIES_EXECUTOR_HEALTH_FILE",
            help="Touch this file while the pull loop is alive (python -m colonies.health checks it).",
        ),
    ] = "",
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Exit when no work is left.")] = False,
) -> None:
    """Serve the functions a module declares with `colonies.Executor`, an allowlist of commands, or
    containers (each process in one, from the images a config file allows).

    On SIGTERM/SIGINT it stops pulling, finishes the processes it runs, and exits. Without a key, the
    executor's identity (key and name) is kept in a state directory and reused on the next run.
    """
    import os

    from colonies.cli.common import TARGET, CLIError
    from colonies.executor import load_executor

    logging.basicConfig(
        level=os.environ.get("COLONIES_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    if sum(map(bool, (target, commands, containers, slurm))) != 1:
        raise CLIError("pass one of a module (module or module:object), --commands allowlist.toml, "
                       "--containers config.toml or --slurm config.toml")
    ex: Executor
    if slurm:
        from colonies.executors.pilot import pilot_executor
        from colonies.executors.pilot_config import has_pilot
        from colonies.executors.slurm import slurm_executor

        try:  # a [pilot] table: allocations of slots instead of a job per process (docs/hpc.md)
            make = pilot_executor if has_pilot(slurm) else slurm_executor
            ex = make(slurm, executortype=executortype, name=name)
        except (OSError, ValueError) as exc:
            raise CLIError(str(exc)) from None
    elif containers:
        from colonies.executors.containers import container_executor

        ex = container_executor(containers, executortype=executortype, name=name)
    elif commands:
        from colonies.executors.commands import command_executor

        ex = command_executor(commands, executortype=executortype, name=name)
    else:
        ex = load_executor(target)
    if prvkey_file:
        if prvkey:
            raise CLIError("give the executor's key in COLONIES_EXECUTOR_PRVKEY (--prvkey) or in a file "
                           "(COLONIES_EXECUTOR_PRVKEY_FILE, --prvkey-file), not both")
        prvkey = read_key_file(prvkey_file)
    ex.configure(
        colony=colony,
        prvkey=prvkey,
        name=name,
        executortype=executortype,
        location=location,
        host=TARGET.host,
        port=TARGET.port,
        tls=TARGET.tls,
        socket=TARGET.socket,
        slots=slots or None,
        heartbeat=heartbeat or None,
        watch=watch or None,
        fs_dir=fs_dir or None,
        health_file=health_file or None,
    )
    if not ex.colony:
        raise CLIError("no colony: set COLONIES_COLONY_NAME or pass --colonyname")
    if not ex.functions:
        raise CLIError(f"{target or commands or containers or slurm} declares no functions")
    if ex.prvkey:
        ex.run(until_idle=until_idle, colony_prvkey=colony_prvkey)
        return
    _run_with_state(ex, state_dir, colony_prvkey, until_idle)


def read_key_file(path: str) -> str:
    """The private key in `path` (64 hex digits, surrounding whitespace ignored), refused when others may
    read the file: mount a secret with mode 0400 or 0440 (Kubernetes: defaultMode plus fsGroup)."""
    import os
    import re
    import stat

    from colonies.cli.common import CLIError

    try:
        with open(path, encoding="utf-8") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            text = f.read(4096).strip()
    except OSError as exc:
        raise CLIError(f"cannot read the executor key file {path}: {exc.strerror or exc}") from None
    if mode & 0o004:
        raise CLIError(f"the executor key file {path} is readable by others (mode {mode:04o}): make it 0400, "
                       "0440 or 0600")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise CLIError(f"the executor key file {path} does not hold a private key (64 hex digits)")
    return text


def _run_with_state(ex: Executor, state_dir: str, colony_prvkey: str, until_idle: bool) -> None:
    """No key given: run with the identity kept in the state directory (made there on a first run)."""
    import os
    from pathlib import Path

    from colonies.cli.common import CLIError
    from colonies.errors import StateError
    from colonies.executors import state

    path = Path(state_dir).expanduser() if state_dir else None
    if not ex.name:
        ex.name = (state.stored_name(path) if path else "") or state.default_name(ex.executortype)
    path = path or state.default_dir(ex.colony, ex.name, os.environ)
    if not colony_prvkey and not (path / state.KEY_FILE).exists():
        raise CLIError(
            "no executor key: set COLONIES_EXECUTOR_PRVKEY (an approved executor's), or give the colony "
            f"owner's key (COLONIES_COLONY_PRVKEY) to add and approve one; it is then kept in {path} and reused"
        )
    try:
        with state.Identity(path) as identity:
            ex.prvkey = identity.key(create=True)
            identity.record(ex.colony, ex.name, ex.executortype, ex.prvkey)
            logging.getLogger("colonies.executor").info(
                "%s identity %s… in %s", "new" if identity.created else "reusing", ex.executor_id[:12], path
            )
            ex.run(until_idle=until_idle, colony_prvkey=colony_prvkey)
    except StateError as exc:
        raise CLIError(str(exc)) from None
