"""`colonies workflow ...`: submit DAGs from JSON, list, draw, cancel, remove."""

from __future__ import annotations

from typing import Annotated, Any

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
    PrvKey,
    client,
    console,
    group,
    load_json_file,
    owner_client,
    print_json,
    show,
    state_text,
    table,
    ts,
    warn_if_unserved,
)

workflow_app = group("Workflows (DAGs of processes).")

GraphId = Annotated[
    str, typer.Option("--workflowid", "--processgraphid", "-i", help="Workflow (process graph) id.")
]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait.")]


def workflow_from_json(obj: Any, colony: str) -> Any:
    """The original's formats: a JSON array of FunctionSpecs, or a WorkflowSpec object."""
    from colonies.cli.function import spec_from_json
    from colonies.model import WorkflowSpec

    if isinstance(obj, list):
        specs = obj
    elif isinstance(obj, dict) and "functionspecs" in obj:
        specs = obj.get("functionspecs") or []
        colony = obj.get("colonyname") or colony
    else:
        raise CLIError("a workflow must be a JSON array of function specs or an object with functionspecs")
    if not specs:
        raise CLIError("the workflow has no function specs")
    fs = [spec_from_json(s, colony) for s in specs]
    return WorkflowSpec(colonyname=colony or fs[0].conditions.colonyname, functionspecs=fs)


@workflow_app.command("submit")
def workflow_submit(
    spec_path: Annotated[str, typer.Option("--spec", help="A workflow JSON file.")],
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for every process (progress bar).")] = False,
    timeout: Timeout = 120.0,
) -> None:
    """Submit a workflow: a JSON array of FunctionSpecs, or a WorkflowSpec object."""
    wf = workflow_from_json(load_json_file(spec_path), colony)
    with client(prvkey) as c:
        warn_if_unserved(c, wf.colonyname, [s.conditions.executortype for s in wf.functionspecs])
        graph = c.submit_workflow(wf)
        if wait:
            from colonies.cli.process import wait_final

            gid = graph.processgraphid

            def hint(pending: list[Any]) -> str:
                return (f"{len(pending)} of {len(graph.processids)} processes of workflow {gid} not finished; "
                        f"it was not cancelled: `colonies workflow get -i {gid}` shows it, "
                        f"`colonies workflow cancel -i {gid}` cancels it")

            ps = wait_final(c, list(graph.processids), timeout, progress=True, spinner="Workflow",
                            graph_hint=hint)
            graph = c.get_processgraph(graph.processgraphid)
    show(
        graph,
        as_json,
        lambda g: (
            f"Workflow {g.processgraphid} submitted ({len(g.processids)} processes)"
            if not wait
            else f"Workflow {g.processgraphid} {STATES.get(g.state, g.state)}"
        ),
    )
    if wait and any(p.state != 2 for p in ps):
        raise typer.Exit(1)


def _graphs_table(gs: list[Any], title: str, full: bool = False) -> Any:
    rows = [
        (
            g.processgraphid,
            len(g.processids),
            g.initiatorname,
            state_text(g.state),
            ts(g.submissiontime),
            ts(g.starttime),
            ts(g.endtime),
        )
        for g in gs
    ]
    return table(
        title,
        ["ProcessGraphId", "Processes", "Initiator", "State", "Submitted", "Started", "Ended"],
        rows,
        full=full,
        optional=("Started",),
    )


def _ps_command(state: int, name: str, doc: str) -> None:
    def cmd(
        colony: Colony = "", prvkey: PrvKey = "", count: Count = 100, as_json: Json = False, full: Full = False
    ) -> None:
        with client(prvkey) as c:
            gs = c.get_processgraphs(colony, state, count) or []
        show(gs, as_json, lambda xs: _graphs_table(xs, f"{STATES[state].capitalize()} workflows", full))

    cmd.__doc__ = doc
    workflow_app.command(name)(cmd)


for _name, _state, _word in PS_COMMANDS:
    _ps_command(_state, _name, f"List {_word} workflows.")


@workflow_app.command("get")
def workflow_get(
    graphid: GraphId,
    prvkey: PrvKey = "",
    as_json: Json = False,
    as_mermaid: Annotated[
        bool, typer.Option("--mermaid", help="Print the DAG as a Mermaid flowchart.")
    ] = False,
    as_dot: Annotated[bool, typer.Option("--dot", help="Print the DAG as Graphviz dot.")] = False,
) -> None:
    """Draw a workflow's DAG, each node coloured by its state (or export it)."""
    from colonies.cli import dag

    with client(prvkey) as c:
        graph = c.get_processgraph(graphid)
        processes = [c.get_process(pid) for pid in graph.processids]
    if as_json:
        print_json({"processgraph": graph, "processes": processes})
    elif as_mermaid:
        typer.echo(dag.mermaid(processes), nl=False)
    elif as_dot:
        typer.echo(dag.dot(processes), nl=False)
    else:
        console().print(dag.render(graph, processes))


@workflow_app.command("cancel")
def workflow_cancel(graphid: GraphId, prvkey: PrvKey = "") -> None:
    """Cancel a workflow and its unfinished processes."""
    with client(prvkey) as c:
        c.cancel_processgraph(graphid)
    typer.echo(f"Workflow {graphid} cancelled")


@workflow_app.command("remove")
def workflow_remove(graphid: GraphId, prvkey: PrvKey = "") -> None:
    """Remove a workflow and its processes."""
    with client(prvkey) as c:
        c.remove_processgraph(graphid)
    typer.echo(f"Workflow {graphid} removed")


@workflow_app.command("removeall")
def workflow_removeall(
    colony: Colony = "",
    colony_prvkey: ColonyPrvKey = "",
    state: Annotated[str, typer.Option("--state", help="Only in this state (default all).")] = "all",
) -> None:
    """Remove all workflows of a colony that are not running (colony owner)."""
    from colonies.cli.common import state_code

    with owner_client(colony_prvkey) as c:
        c.remove_all_processgraphs(colony, state_code(state))
    typer.echo(f"Removed {state} workflows of colony {colony}")
