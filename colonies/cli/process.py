"""`colonies process ...` and `colonies function ...`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from colonies.cli.common import (
    PS_COMMANDS,
    STATES,
    CLIError,
    Colony,
    ColonyPrvKey,
    Count,
    Full,
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


def processes_table(ps: list[Any], title: str = "Processes", full: bool = False) -> Any:
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
    return table(title, cols, rows, full=full, optional=("Started", "ExecutorType"))


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


def still_queued_hint(pending: list[Process]) -> str:
    """What a timeout left behind and what the user can do about it (the process is not cancelled)."""
    if len(pending) != 1:
        states = ", ".join(f"{sum(p.state == s for p in pending)} {STATES[s]}" for s in (0, 1)
                           if any(p.state == s for p in pending))
        return (f"{len(pending)} processes not finished ({states}); they stay queued: "
                f"`colonies process get -p ID --wait` waits, `colonies process cancel -p ID` cancels")
    p = pending[0]
    pid = p.processid
    if p.state == 0:
        where = "WAITING: queued, no executor has taken it yet"
        if p.spec.conditions.executortype:
            where += f" (executor type {p.spec.conditions.executortype!r})"
    else:
        where = f"{STATES.get(p.state, p.state)} on executor {p.assignedexecutorid[:12]}…"
    return (f"process {pid} is still {where}. It was not cancelled: wait with "
            f"`colonies process get -p {pid} --wait`, or cancel it with `colonies process cancel -p {pid}` "
            "(and delete it with `colonies process remove`)")


def wait_final(
    c: Any,
    process_ids: list[str],
    timeout: float,
    progress: bool = False,
    spinner: str = "",
    graph_hint: Callable[[list[Process]], str] | None = None,
) -> list[Process]:
    """Poll until every process is SUCCESS, FAILED or CANCELLED; a CLIError after `timeout` seconds
    that says what is still queued and how to wait for it or cancel it (`graph_hint` for a workflow).

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
                pending = [c.get_process(pid) for pid in process_ids if pid not in done]
                raise CLIError(f"timed out after {timeout:g} s: " + (graph_hint or still_queued_hint)(pending))
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _ps(state: int, colony: str, prvkey: str, count: int, query: dict[str, str], as_json: bool, follow: bool,
        timeout: float, full: bool) -> None:
    title = f"{STATES[state].capitalize()} processes" if state >= 0 else "Processes"
    with client(prvkey) as c:

        def fetch() -> list[Any]:
            return c.get_processes(colony, state, count, **query) or []

        if not follow:
            show(fetch(), as_json, lambda ps: processes_table(ps, title, full))
            return
        if as_json:
            raise CLIError("--follow draws a live table; use it without --json")
        from rich.live import Live

        deadline = time.monotonic() + timeout
        with Live(processes_table(fetch(), title, full), console=console(), refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                live.update(processes_table(fetch(), title, full))


def _ps_command(state: int, name: str, doc: str) -> None:
    def cmd(
        colony: Colony = "",
        prvkey: PrvKey = "",
        count: Count = 100,
        executortype: Annotated[
            str, typer.Option("--type", "--executortype", help="Only this executor type.")
        ] = "",
        label: Annotated[str, typer.Option("--label", help="Only processes with this label.")] = "",
        initiator: Annotated[
            str, typer.Option("--initiator", help="Only processes submitted by this user (name).")
        ] = "",
        as_json: Json = False,
        follow: Follow = False,
        timeout: Timeout = 60.0,
        full: Full = False,
    ) -> None:
        query = {"executortype": executortype, "label": label, "initiator": initiator}
        _ps(state, colony, prvkey, count, query, as_json, follow, timeout, full)

    cmd.__doc__ = doc
    process_app.command(name)(cmd)


for _name, _state, _word in PS_COMMANDS:
    _ps_command(
        _state,
        _name,
        f"List {_word} processes." + (" --follow keeps the table updated." if _name == "ps" else ""),
    )


def print_output(p: Process) -> None:
    """Only the output, one value a line (strings as they are, anything else as JSON)."""
    import json

    for v in p.output or []:
        typer.echo(v if isinstance(v, str) else json.dumps(v))


@process_app.command("get")
def process_get(
    processid: ProcessId,
    prvkey: PrvKey = "",
    as_json: Json = False,
    out: Annotated[bool, typer.Option("--out", help="Print only the output, one value a line.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it finishes.")] = False,
    timeout: Timeout = 60.0,
) -> None:
    """Show a process; --wait waits until it succeeds, fails or is cancelled; --out prints its output."""
    with client(prvkey) as c:
        p = (
            wait_final(c, [processid], timeout, spinner="Waiting for process")[0]
            if wait
            else c.get_process(processid)
        )
    if out and not as_json:
        print_output(p)
    else:
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


_REMOVABLE = {0: "waitingprocesses", 2: "successfulprocesses", 3: "failedprocesses", 4: "cancelledprocesses"}


def _counts(prvkey: str, colony: str) -> dict[int, int] | None:
    """Process counts by state, read with a member's key; None when there is none or it is refused."""
    from colonies.errors import ClientError

    if not prvkey:
        return None
    try:
        with client(prvkey) as c:
            stats = c.colony_stats(colony)
    except ClientError:
        return None
    return {state: int(getattr(stats, field)) for state, field in _REMOVABLE.items()} | {
        1: int(stats.runningprocesses)
    }


@process_app.command("removeall")
def process_removeall(
    colony: Colony = "",
    colony_prvkey: ColonyPrvKey = "",
    prvkey: Annotated[
        str,
        typer.Option("--prvkey", envvar="COLONIES_PRVKEY", help="A member's key, to count what is left."),
    ] = "",
    state: Annotated[
        str,
        typer.Option("--state", help="Only in this state (waiting, success, failed, cancelled; default all)"),
    ] = "all",
    waiting: Annotated[bool, typer.Option("--waiting", help="Only waiting ones (the original's flag).")] = False,
    successful: Annotated[bool, typer.Option("--successful", help="Only successful ones.")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed ones.")] = False,
    cancelled: Annotated[bool, typer.Option("--cancelled", help="Only cancelled ones.")] = False,
) -> None:
    """Remove a colony's processes that are not running and not part of a workflow (colony owner).

    Processes of workflows (including those that crons and generators start) stay: remove them with
    `colonies workflow removeall`. With a member's key (COLONIES_PRVKEY) it says how many were left."""
    from colonies.cli.common import state_code

    picked = [name for name, on in (("waiting", waiting), ("success", successful), ("failed", failed),
                                     ("cancelled", cancelled)) if on]
    if len(picked) > 1 or (picked and state not in ("", "all")):
        raise CLIError("pick one state: --state, --waiting, --successful, --failed or --cancelled")
    code = state_code(picked[0] if picked else state)
    states = list(_REMOVABLE) if code < 0 else [code]
    before = _counts(prvkey, colony)
    with owner_client(colony_prvkey) as c:
        c.remove_all_processes(colony, code)
    after = _counts(prvkey, colony)
    what = "" if code < 0 else f"{STATES[code].lower()} "
    if before is None or after is None:
        typer.echo(f"Removed the {what}processes of colony {colony} that are not in a workflow")
        typer.echo(
            "Processes of workflows (also those started by crons and generators) are not removed: use "
            "`colonies workflow removeall`; set COLONIES_PRVKEY to have them counted",
            err=True,
        )
        return
    removed = sum(max(0, before[s] - after[s]) for s in states)
    left = sum(after[s] for s in states)
    typer.echo(f"Removed {removed} {what}process{'es' if removed != 1 else ''} of colony {colony}")
    if left:
        typer.echo(
            f"{left} {what}process{'es' if left != 1 else ''} left: they belong to workflows (also those "
            f"started by crons and generators); remove them with `colonies workflow removeall`",
            err=True,
        )
    if code < 0 and after[1]:
        typer.echo(f"{after[1]} running process{'es' if after[1] != 1 else ''} left: running processes are "
                   "never removed (cancel them first)", err=True)


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
    out: Annotated[
        list[str] | None, typer.Option("--out", help="An output value, a string (repeatable).")
    ] = None,
    out_json: Annotated[
        str, typer.Option("--out-json", help="Typed output values as a JSON array, e.g. '[1, \"a\"]'.")
    ] = "",
) -> None:
    """Close a process assigned to you as successful."""
    with client(prvkey) as c:
        c.close(processid, parse_args(out, out_json, "--out"))
    typer.echo(f"Process {processid} closed as successful")


@process_app.command("fail")
def process_fail(
    processid: ProcessId,
    prvkey: PrvKey = "",
    errors: Annotated[list[str] | None, typer.Option("--error", "--errors", help="An error (repeatable).")] = None,
) -> None:
    """Close a process assigned to you as failed."""
    with client(prvkey) as c:
        c.fail(processid, errors or [])
    typer.echo(f"Process {processid} closed as failed")
