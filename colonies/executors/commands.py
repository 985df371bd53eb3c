"""A ready executor that runs only the shell commands of a TOML allowlist.

    # allowlist.toml
    [executor]
    type = "cli"              # executor type (default "cli"); --type overrides
    timeout = 60              # default time limit per run, seconds

    [commands.wordcount]      # the function name processes call
    argv = ["wc", "-w"]       # the program and its fixed arguments; never run through a shell
    args = true               # append the process' args (and a workflow parent's output) as argv items
    timeout = 10              # this command's time limit
    output = "text"           # "text": output is [stdout]; "lines": one item per line; "json": parsed stdout
    cwd = "/tmp"              # optional working directory
    env = { LC_ALL = "C" }    # optional extra environment
    stdin = false             # true: the first arg is written to stdin instead of argv

A run that exits 0 closes the process with its stdout as output; stderr goes to the process log.
A non-zero exit, a timeout (the command's process group is killed) or a refused call closes it as
failed. kwargs are refused, and so are args when `args = false`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tomllib
from dataclasses import dataclass, field
from typing import Any

from colonies.executor import Executor


@dataclass(frozen=True)
class Command:
    name: str
    argv: list[str]
    args: bool = True
    timeout: float = 60.0
    output: str = "text"
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdin: bool = False


class CommandFailed(Exception):
    """The command exited non-zero, timed out, or was called in a way the allowlist refuses."""


def load_allowlist(path: str) -> tuple[dict[str, Any], dict[str, Command]]:
    """The [executor] table and the commands of an allowlist file; a ValueError names a bad entry."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    head = data.get("executor", {})
    default_timeout = float(head.get("timeout", 60))
    commands: dict[str, Command] = {}
    for name, c in (data.get("commands") or {}).items():
        argv = c.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"{path}: commands.{name}.argv must be a non-empty list of strings")
        output = c.get("output", "text")
        if output not in ("text", "lines", "json"):
            raise ValueError(f"{path}: commands.{name}.output must be text, lines or json")
        commands[name] = Command(
            name=name,
            argv=list(argv),
            args=bool(c.get("args", True)),
            timeout=float(c.get("timeout", default_timeout)),
            output=output,
            cwd=c.get("cwd"),
            env={str(k): str(v) for k, v in (c.get("env") or {}).items()},
            stdin=bool(c.get("stdin", False)),
        )
    if not commands:
        raise ValueError(f"{path} lists no [commands.NAME] tables")
    return head, commands


async def run_command(cmd: Command, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    """Run one allowed command; its output as a process output list."""
    if kwargs:
        raise CommandFailed(f"{cmd.name}: keyword args are not accepted ({', '.join(kwargs)})")
    if args and not cmd.args:
        raise CommandFailed(f"{cmd.name}: takes no args")
    items = [a if isinstance(a, str) else json.dumps(a) for a in args]
    stdin_data = None
    if cmd.stdin and items:
        stdin_data, items = items[0].encode(), items[1:]
    proc = await asyncio.create_subprocess_exec(
        *cmd.argv,
        *items,
        cwd=cmd.cwd,
        env={**os.environ, **cmd.env} if cmd.env else None,
        stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin_data), cmd.timeout)
    except (TimeoutError, asyncio.CancelledError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        raise CommandFailed(f"{cmd.name}: timed out after {cmd.timeout:g} s") from None
    stderr = err.decode(errors="replace")
    if stderr:
        sys.stderr.write(stderr if stderr.endswith("\n") else stderr + "\n")  # to the process log
    if proc.returncode != 0:
        raise CommandFailed(f"{cmd.name}: exit status {proc.returncode}\n{stderr[-4000:]}")
    text = out.decode(errors="replace")
    if cmd.output == "lines":
        return text.splitlines()
    if cmd.output == "json":
        value = json.loads(text)
        return value if isinstance(value, list) else [value]
    return [text.rstrip("\n")]


def command_executor(path: str, executortype: str = "", name: str = "") -> Executor:
    """An Executor serving the allowlist's commands (colony, key and server are filled in later)."""
    head, commands = load_allowlist(path)
    ex = Executor(
        name=name or str(head.get("name", "")),
        executortype=executortype or str(head.get("type", "cli")),
        slots=int(head.get("slots", 1)),
    )
    for cmd in commands.values():
        ex.function(_bind(cmd), name=cmd.name)
    return ex


def _bind(cmd: Command) -> Any:
    async def run(*args: Any, **kwargs: Any) -> list[Any]:
        return await run_command(cmd, list(args), kwargs)

    run.__name__ = cmd.name
    return run
