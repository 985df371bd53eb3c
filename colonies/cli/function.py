"""`colonies function ...`: list what executors serve, submit FunctionSpec files, run a call and wait."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from colonies.cli.common import (
    STATES,
    CLIError,
    Colony,
    Json,
    PrvKey,
    client,
    group,
    load_json_file,
    parse_args,
    parse_kwargs,
    print_json,
    show,
    table,
)
from colonies.cli.process import Timeout, wait_final

if TYPE_CHECKING:
    from colonies.model import Process

function_app = group("Functions: list what executors serve, submit and run them.")
ExecType = Annotated[str, typer.Option("--type", "--targettype", help="Executor type to run it.")]


@function_app.command("ls")
def function_ls(
    colony: Colony = "",
    prvkey: PrvKey = "",
    executorname: Annotated[str, typer.Option("--executor", help="Only this executor's.")] = "",
    as_json: Json = False,
) -> None:
    """List functions served in a colony, with call counts and times."""
    with client(prvkey) as c:
        fs = c.get_functions(colony, executorname) or []
    cols = ["FuncName", "Executor", "ExecutorType", "Calls", "AvgWait (s)", "AvgExec (s)"]
    show(
        fs,
        as_json,
        lambda xs: table(
            "Functions",
            cols,
            [
                (
                    f.funcname,
                    f.executorname,
                    f.executortype,
                    f.counter,
                    f"{f.avgwaittime:.3f}",
                    f"{f.avgexectime:.3f}",
                )
                for f in xs
            ],
        ),
    )


def spec_from_json(obj: Any, colony: str) -> Any:
    """A FunctionSpec from the original's JSON; an empty colony is filled in from --colonyname."""
    import msgspec

    from colonies.model import FunctionSpec

    if not isinstance(obj, dict):
        raise CLIError("a function spec must be a JSON object")
    try:
        spec = msgspec.convert(obj, FunctionSpec)
    except msgspec.ValidationError as exc:
        raise CLIError(f"invalid function spec: {exc}") from None
    if not spec.conditions.colonyname:
        if not colony:
            raise CLIError("the spec names no colony: set COLONIES_COLONY_NAME or pass --colonyname")
        spec.conditions.colonyname = colony
    if not spec.nodename:
        spec.nodename = spec.funcname
    return spec


def _print_output(p: Process, as_json: bool) -> None:
    if as_json:
        print_json(p)
    elif p.state == 2:
        for v in p.output or []:
            typer.echo(v if isinstance(v, str) else json.dumps(v))
    else:
        typer.echo(f"Process {p.processid} {STATES.get(p.state, p.state)}", err=True)
        for e in p.errors:
            typer.echo(e, err=True)
    if p.state != 2:
        raise typer.Exit(1)


@function_app.command("submit")
def function_submit(
    spec_path: Annotated[str, typer.Option("--spec", help="A FunctionSpec JSON file.")],
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait and print the output.")] = False,
    timeout: Timeout = 60.0,
) -> None:
    """Submit a FunctionSpec from a JSON file (the original's format)."""
    spec = spec_from_json(load_json_file(spec_path), colony)
    with client(prvkey) as c:
        p = c.submit(spec)
        if wait:
            p = wait_final(c, [p.processid], timeout, spinner=f"Running {spec.funcname}")[0]
    if wait:
        _print_output(p, as_json)
    else:
        show(p, as_json, lambda x: f"Process {x.processid} submitted")


@function_app.command("exec")
def function_exec(
    func: Annotated[str, typer.Option("--func", help="Function name.")],
    executortype: ExecType,
    args: Annotated[list[str] | None, typer.Option("--args", help="A positional arg (repeatable).")] = None,
    kwargs: Annotated[list[str] | None, typer.Option("--kwargs", help="key=value (repeatable).")] = None,
    maxexectime: Annotated[int, typer.Option("--maxexectime", help="Seconds; <= 0 no limit.")] = -1,
    maxretries: Annotated[int, typer.Option("--maxretries", help="Retries after a timeout.")] = -1,
    priority: Annotated[int, typer.Option("--priority", help="Higher runs first.")] = 0,
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
    timeout: Timeout = 60.0,
) -> None:
    """Submit a function call, wait with a spinner, then print its output."""
    from colonies.client.core import func_spec

    if not colony:
        raise CLIError("no colony: set COLONIES_COLONY_NAME or pass --colonyname")
    spec = func_spec(
        func,
        colony,
        executortype,
        args=parse_args(args),
        kwargs=parse_kwargs(kwargs),
        maxexectime=maxexectime,
        maxretries=maxretries,
        priority=priority,
    )
    with client(prvkey) as c:
        p = c.submit(spec)
        p = wait_final(c, [p.processid], timeout, spinner=f"Running {func} on {executortype}")[0]
    _print_output(p, as_json)
