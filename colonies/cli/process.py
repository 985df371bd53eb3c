"""`colonies process ...` and `colonies function ...`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from colonies.cli.common import (
    PS_COMMANDS,
    STATES,
    CLIError,
    Colony,
    ColonyPrvKey,
    Count,
    Json,
    ProcessId,
    PrvKey,
    client,
    console,
    group,
    kv,
    owner_client,
    parse_args,
    show,
    state_text,
    table,
    ts,
)

if TYPE_CHECKING:
    from colonies.model import Process

process_app = group("Processes: list, inspect, wait for, cancel, remove.")

Follow = Annotated[bool, typer.Option("--follow", "-f", help="Keep the table updated (until --timeout).")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait or follow.")]


def _short(s: str, n: int = 12) -> str:
    return s[:n] + "…" if len(s) > n else s


def processes_table(ps: list[Any], title: str = "Processes") -> Any:
    rows = [
        (
            p.processid,
            p.spec.funcname,
            " ".join(str(a) for a in p.spec.args or []),
            p.spec.conditions.executortype,
            state_text(p.state),
            ts(p.submissiontime),
            ts(p.starttime),
            ts(p.endtime),
        )
        for p in ps
    ]
    cols = ["ProcessId", "Function", "Args", "ExecutorType", "State", "Submitted", "Started", "Ended"]
    return table(title, cols, rows)


def process_table(p: Process) -> Any:
    pairs: list[tuple[str, Any]] = [
        ("ProcessId", p.processid),
        ("State", state_text(p.state)),
        ("FuncName", p.spec.funcname),
        ("NodeName", p.spec.nodename),
        ("Args", p.spec.args),
        ("KwArgs", p.spec.kwargs),
        ("Colony", p.spec.conditions.colonyname),
        ("ExecutorType", p.spec.conditions.executortype),
        ("AssignedExecutorId", p.assignedexecutorid),
        ("Initiator", p.initiatorname),
        ("Priority", p.spec.priority),
        ("Submitted", ts(p.submissiontime)),
        ("Started", ts(p.starttime)),
        ("Ended", ts(p.endtime)),
        ("MaxExecTime", p.spec.maxexectime),
        ("MaxRetries", p.spec.maxretries),
        ("Retries", p.retries),
        ("ProcessGraphId", p.processgraphid),
        ("Input", p.input),
        ("Output", p.output),
        ("Errors", "\n".join(p.errors) if p.errors else ""),
    ]
    pairs += [(f"Attribute {a.key}", f"{a.value} ({a.attributeid[:12]}…)") for a in p.attributes or []]
    return kv(f"Process {_short(p.processid)}", pairs)


def wait_final(
    c: Any, process_ids: list[str], timeout: float, progress: bool = False, spinner: str = ""
) -> list[Process]:
    """Poll until every process is SUCCESS, FAILED or CANCELLED; a CLIError after `timeout` seconds.

    With `progress` a progress bar counts finished processes; with `spinner` a spinner shows the text.
    """
    from contextlib import nullcontext

    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

    deadline = time.monotonic() + timeout
    done: dict[str, Process] = {}
    ctx: Any = nullcontext()
    task = None
    if progress or spinner:
        cols = [SpinnerColumn(), TextColumn("{task.description}")]
        if progress:
            cols += [BarColumn(), TextColumn("{task.completed}/{task.total}")]
        ctx = Progress(*cols, console=console(stderr=True), transient=True)
    with ctx as bar:
        if bar is not None:
            task = bar.add_task(spinner or "Waiting", total=len(process_ids))
        delay = 0.05
        while True:
            for pid in process_ids:
                if pid not in done:
                    p = c.get_process(pid)
                    if p.state >= 2:
                        done[pid] = p
            if bar is not None and task is not None:
                bar.update(task, completed=len(done))
            if len(done) == len(process_ids):
                return [done[pid] for pid in process_ids]
            if time.monotonic() >= deadline:
                raise CLIError(
                    f"timed out after {timeout:g} s: {len(process_ids) - len(done)} process(es) not finished"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _ps(
    state: int,
    colony: str,
    prvkey: str,
    count: int,
    executortype: str,
    as_json: bool,
    follow: bool,
    timeout: float,
) -> None:
    title = f"{STATES[state].capitalize()} processes" if state >= 0 else "Processes"
    with client(prvkey) as c:

        def fetch() -> list[Any]:
            return c.get_processes(colony, state, count, executortype) or []

        if not follow:
            show(fetch(), as_json, lambda ps: processes_table(ps, title))
            return
        if as_json:
            raise CLIError("--follow draws a live table; use it without --json")
        from rich.live import Live

        deadline = time.monotonic() + timeout
        with Live(processes_table(fetch(), title), console=console(), refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                live.update(processes_table(fetch(), title))


def _ps_command(state: int, name: str, doc: str) -> None:
    def cmd(
        colony: Colony = "",
        prvkey: PrvKey = "",
        count: Count = 100,
        executortype: Annotated[str, typer.Option("--type", help="Only this executor type.")] = "",
        as_json: Json = False,
        follow: Follow = False,
        timeout: Timeout = 60.0,
    ) -> None:
        _ps(state, colony, prvkey, count, executortype, as_json, follow, timeout)

    cmd.__doc__ = doc
    process_app.command(name)(cmd)


for _name, _state, _word in PS_COMMANDS:
    _ps_command(
        _state,
        _name,
        f"List {_word} processes." + (" --follow keeps the table updated." if _name == "ps" else ""),
    )


@process_app.command("get")
def process_get(
    processid: ProcessId,
    prvkey: PrvKey = "",
    as_json: Json = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it finishes.")] = False,
    timeout: Timeout = 60.0,
) -> None:
    """Show a process; --wait waits until it succeeds, fails or is cancelled."""
    with client(prvkey) as c:
        p = (
            wait_final(c, [processid], timeout, spinner="Waiting for process")[0]
            if wait
            else c.get_process(processid)
        )
    show(p, as_json, process_table)
    if wait and p.state != 2:
        raise typer.Exit(1)


def _simple(prvkey: str, action: str, processid: str, verb: str) -> None:
    with client(prvkey) as c:
        getattr(c, action)(processid)
    typer.echo(f"Process {processid} {verb}")


@process_app.command("cancel")
def process_cancel(processid: ProcessId, prvkey: PrvKey = "") -> None:
    """Cancel a waiting or running process."""
    _simple(prvkey, "cancel", processid, "cancelled")


@process_app.command("remove")
def process_remove(processid: ProcessId, prvkey: PrvKey = "") -> None:
    """Remove a process."""
    _simple(prvkey, "remove_process", processid, "removed")


@process_app.command("removeall")
def process_removeall(
    colony: Colony = "",
    colony_prvkey: ColonyPrvKey = "",
    state: Annotated[
        str,
        typer.Option("--state", help="Only in this state (waiting, success, failed, cancelled; default all)"),
    ] = "all",
) -> None:
    """Remove all processes of a colony that are not running (colony owner)."""
    from colonies.cli.common import state_code

    with owner_client(colony_prvkey) as c:
        c.remove_all_processes(colony, state_code(state))
    typer.echo(f"Removed {state} processes of colony {colony}")


@process_app.command("pause")
def process_pause(colony: Colony = "", colony_prvkey: ColonyPrvKey = "") -> None:
    """Pause assignments in a colony (colony owner)."""
    with owner_client(colony_prvkey) as c:
        c.pause(colony)
    typer.echo(f"Assignments paused in colony {colony}")


@process_app.command("resume")
def process_resume(colony: Colony = "", colony_prvkey: ColonyPrvKey = "") -> None:
    """Resume assignments in a colony (colony owner)."""
    with owner_client(colony_prvkey) as c:
        c.resume(colony)
    typer.echo(f"Assignments resumed in colony {colony}")


@process_app.command("status")
def process_status(
    colony: Colony = "", prvkey: PrvKey = "", colony_prvkey: ColonyPrvKey = "", as_json: Json = False
) -> None:
    """Whether assignments are paused in a colony."""
    with client(prvkey or colony_prvkey) as c:
        st = c.pause_status(colony)
    show(
        st,
        as_json,
        lambda s: f"Assignments in colony {colony} are {'PAUSED' if s.get('ispaused') else 'running'}",
    )


@process_app.command("assign")
def process_assign(
    colony: Colony = "", prvkey: PrvKey = "", timeout: Timeout = 10.0, as_json: Json = False
) -> None:
    """Assign a process to yourself (an executor's key), waiting up to --timeout."""
    with client(prvkey) as c:
        p = c.assign(colony, int(timeout))
    show(p, as_json, process_table)


@process_app.command("close")
def process_close(
    processid: ProcessId,
    prvkey: PrvKey = "",
    out: Annotated[list[str] | None, typer.Option("--out", help="An output value (repeatable).")] = None,
) -> None:
    """Close a process assigned to you as successful."""
    with client(prvkey) as c:
        c.close(processid, parse_args(out))
    typer.echo(f"Process {processid} closed as successful")


@process_app.command("fail")
def process_fail(
    processid: ProcessId,
    prvkey: PrvKey = "",
    errors: Annotated[list[str] | None, typer.Option("--error", help="An error (repeatable).")] = None,
) -> None:
    """Close a process assigned to you as failed."""
    with client(prvkey) as c:
        c.fail(processid, errors or [])
    typer.echo(f"Process {processid} closed as failed")
