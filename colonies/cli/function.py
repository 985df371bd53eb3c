"""`colonies function ...`: list what executors serve, submit FunctionSpec files, run a call and wait."""

from __future__ import annotations

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
    parse_env,
    parse_kwargs,
    print_json,
    show,
    table,
    warn_if_unserved,
)
from colonies.cli.process import Timeout, print_output, wait_final

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


def freeze_snapshots(c: Any, spec: Any) -> None:
    """`--snapshot`, as in the original: each of spec.fs's snapshot mounts gets a new snapshot of its
    label (a random name), whose id goes into the mount's `snapshotid`; the executor downloads it into
    the mount's `dir` before the function runs (and removes it after, unless `keepsnapshot`)."""
    import secrets

    from colonies.cli.fs import norm_label

    fs = spec.fs or {}
    mounts = fs.get("snapshots") or [] if isinstance(fs, dict) else []
    if not mounts:
        raise CLIError("--snapshot: the spec has no fs.snapshots mounts to freeze (each needs a label and a dir)")
    for m in mounts:
        if not isinstance(m, dict) or not str(m.get("label") or "").strip():
            raise CLIError("--snapshot: every fs.snapshots mount needs a label")
        m["label"] = norm_label(str(m["label"]))
        m["snapshotid"] = c.create_snapshot(spec.conditions.colonyname, m["label"], secrets.token_hex(32)).snapshotid


def snapshot_mounts(values: list[str] | None) -> list[dict[str, Any]]:
    """`--snapshots LABEL:DIR` (repeatable) as spec.fs snapshot mounts (frozen at submit)."""
    out = []
    for v in values or []:
        label, sep, directory = v.partition(":")
        if not sep or not label.strip() or not directory.strip():
            raise CLIError(f"--snapshots: expected LABEL:DIR, got {v!r}")
        out.append({"snapshotid": "", "label": label, "dir": directory, "keepfiles": False, "keepsnapshot": False})
    return out


def _print_output(p: Process, as_json: bool) -> None:
    if as_json:
        print_json(p)
    elif p.state == 2:
        print_output(p)
    else:
        typer.echo(f"Process {p.processid} {STATES.get(p.state, p.state)}", err=True)
        for e in p.errors:
            typer.echo(e, err=True)
    if p.state != 2:
        raise typer.Exit(1)


Env = Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE for the process (repeatable).")]
Label = Annotated[str, typer.Option("--label", help="A label (`process ps --label` finds it).")]
MaxWait = Annotated[
    int, typer.Option("--maxwaittime", help="Seconds it may wait in the queue; <= 0 no limit.")
]
FollowLogs = Annotated[
    bool, typer.Option("--follow", help="Print the process' log as it arrives, until it finishes.")
]
Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait and print the output.")]
OutOnly = Annotated[bool, typer.Option("--out", help="Print only the output (the original's flag).")]
Snapshot = Annotated[bool, typer.Option(
    "--snapshot", help="Freeze each fs.snapshots mount's label into a new snapshot and put its id in the mount.")]


def run_and_report(c: Any, spec: Any, wait: bool, follow: bool, as_json: bool, timeout: float) -> None:
    """Submit `spec`; warn when no executor serves its type; then wait (or follow its log) and print
    the output, or print the process id."""
    warn_if_unserved(c, spec.conditions.colonyname, [spec.conditions.executortype])
    p = c.submit(spec)
    if follow:
        p = follow_log(c, p, timeout)
    elif wait:
        p = wait_final(c, [p.processid], timeout, spinner=f"Running {spec.funcname}")[0]
    else:
        show(p, as_json, lambda x: f"Process {x.processid} submitted")
        return
    _print_output(p, as_json)


def follow_log(c: Any, p: Process, timeout: float) -> Process:
    """Print log messages (stderr) as they arrive until the process finishes or `timeout` passes."""
    import sys
    import time

    from colonies.cli.process import still_queued_hint

    deadline = time.monotonic() + timeout
    since, delay = 0, 0.05
    while True:
        logs = c.get_logs(p.spec.conditions.colonyname, p.processid, "", 500, since=since) or []
        for entry in logs:
            sys.stderr.write(entry.message if entry.message.endswith("\n") else entry.message + "\n")
        if logs:
            since = logs[-1].timestamp + 1
            delay = 0.05
        elif p.state >= 2:
            return p
        if time.monotonic() >= deadline:
            raise CLIError(f"timed out after {timeout:g} s: " + still_queued_hint([c.get_process(p.processid)]))
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
        p = c.get_process(p.processid)


@function_app.command("submit")
def function_submit(
    spec_path: Annotated[str, typer.Option("--spec", help="A FunctionSpec JSON file.")],
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait and print the output.")] = False,
    out: OutOnly = False,
    follow: FollowLogs = False,
    env: Env = None,
    label: Label = "",
    maxwaittime: Annotated[int | None, typer.Option("--maxwaittime", help="Override the spec's.")] = None,
    snapshot: Snapshot = False,
    timeout: Timeout = 60.0,
) -> None:
    """Submit a FunctionSpec from a JSON file (the original's format); --env, --label and
    --maxwaittime override the file."""
    spec = spec_from_json(load_json_file(spec_path), colony)
    spec.env = {**(spec.env or {}), **parse_env(env)}
    spec.label = label or spec.label
    if maxwaittime is not None:
        spec.maxwaittime = maxwaittime
    with client(prvkey) as c:
        if snapshot:
            freeze_snapshots(c, spec)
        run_and_report(c, spec, wait or out, follow, as_json, timeout)


@function_app.command("exec")
def function_exec(
    func: Annotated[str, typer.Option("--func", help="Function name.")],
    executortype: ExecType,
    args: Annotated[
        list[str] | None, typer.Option("--args", help="A positional arg, always a string (repeatable).")
    ] = None,
    args_json: Annotated[
        str, typer.Option("--args-json", help="Typed positional args as a JSON array: '[1, \"a\", true]'.")
    ] = "",
    kwargs: Annotated[
        list[str] | None, typer.Option("--kwargs", help="key=value or key:value, a string (repeatable).")
    ] = None,
    kwargs_json: Annotated[
        str, typer.Option("--kwargs-json", help="Typed keyword args as a JSON object: '{\"n\": 3}'.")
    ] = "",
    env: Env = None,
    label: Label = "",
    maxwaittime: MaxWait = -1,
    maxexectime: Annotated[int, typer.Option("--maxexectime", help="Seconds; <= 0 no limit.")] = -1,
    maxretries: Annotated[int, typer.Option("--maxretries", help="Retries after a timeout.")] = -1,
    priority: Annotated[int, typer.Option("--priority", help="Higher runs first.")] = 0,
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
    wait: Wait = True,
    out: OutOnly = False,
    follow: FollowLogs = False,
    snapshots: Annotated[list[str] | None, typer.Option(
        "--snapshots", help="LABEL:DIR: a snapshot of the label, downloaded into DIR for the run (repeatable).")] = None,
    snapshot: Snapshot = False,
    timeout: Timeout = 60.0,
) -> None:
    """Submit a function call, wait with a spinner, then print its output (--no-wait: only submit).

    Each --args value is a string, as in the original CLI; --args-json passes numbers, booleans, lists.
    --snapshots mounts are always frozen at submit (--snapshot is implied)."""
    from colonies.client.core import func_spec

    if not colony:
        raise CLIError("no colony: set COLONIES_COLONY_NAME or pass --colonyname")
    spec = func_spec(
        func,
        colony,
        executortype,
        args=parse_args(args, args_json),
        kwargs=parse_kwargs(kwargs, kwargs_json),
        maxexectime=maxexectime,
        maxwaittime=maxwaittime,
        maxretries=maxretries,
        priority=priority,
        env=parse_env(env),
        label=label,
    )
    mounts = snapshot_mounts(snapshots)
    if snapshot and not mounts:
        raise CLIError("--snapshot: add the mounts to freeze with --snapshots LABEL:DIR")
    if mounts:
        spec.fs = {"mount": "", "snapshots": mounts, "dirs": []}
    with client(prvkey) as c:
        if mounts:
            freeze_snapshots(c, spec)
        run_and_report(c, spec, wait or out, follow, as_json, timeout)
