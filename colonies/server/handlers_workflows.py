"""Handlers: workflows (process graphs) (§5)."""

from __future__ import annotations

import asyncio
from typing import Any

from colonies.errors import BadRequest, Forbidden, NotFound
from colonies.model import ProcessGraph, ProcessState
from colonies.protocol import messages as m
from colonies.server.handlers_processes import new_process, normalize_spec
from colonies.server.handlers_types import Handler
from colonies.services import Services
from colonies.workflows import build_graph, check_growth, graph_view


async def submit_workflow(s: Services, signer: str, msg: m.SubmitWorkflowSpecMsg) -> ProcessGraph:
    member = await s.guard.member(signer, msg.spec.colonyname)
    processes, graph = build_graph(s, msg.spec, member, signer, s.now())
    await s.storage.add_processes(processes, graph, actor=signer)
    for p in processes:
        if not p.waitforparents:
            s.bus.publish(p)
    return graph


async def _graph_as_member(s: Services, signer: str, graph_id: str) -> ProcessGraph:
    graph = await s.storage.get_graph(graph_id)
    if graph is None:
        raise NotFound(f"process graph {graph_id} not found")
    await s.guard.member(signer, graph.colonyname)
    return graph


async def with_view(s: Services, graph: ProcessGraph) -> ProcessGraph:
    """The graph with its layout. Reads only what the layout needs (never the processes' args, inputs or
    outputs); the graph's size is bounded at submission (MAX_NODES, MAX_EDGES)."""
    members = await s.storage.graph_members(graph.processgraphid)
    await asyncio.sleep(0)  # the reads and the layout are each bounded; let other requests run between them
    return graph_view(graph, members)


async def get_graph(s: Services, signer: str, msg: m.GetProcessGraphMsg) -> ProcessGraph:
    return await with_view(s, await _graph_as_member(s, signer, msg.processgraphid))


async def get_graphs(s: Services, signer: str, msg: m.GetProcessGraphsMsg) -> list[ProcessGraph]:
    """As in the original, the list carries `processids` but no layout (empty `nodes` and `edges`):
    `getprocessgraphmsg` draws one graph."""
    await s.guard.member(signer, msg.colonyname)
    if not 0 <= msg.count <= 100:
        raise BadRequest("count must be between 0 and 100")
    if not -1 <= msg.state <= 4:
        raise BadRequest("invalid state")
    return await s.storage.list_graphs(msg.colonyname, msg.state, msg.count)


async def remove_graph(s: Services, signer: str, msg: m.RemoveProcessGraphMsg) -> dict[str, Any]:
    graph = await _graph_as_member(s, signer, msg.processgraphid)
    if graph.state == ProcessState.RUNNING:
        raise BadRequest("a RUNNING workflow cannot be removed; cancel it first")
    await s.storage.remove_graph(msg.processgraphid)
    return {}


async def remove_all_graphs(s: Services, signer: str, msg: m.RemoveAllProcessGraphsMsg) -> dict[str, Any]:
    await s.guard.colony_owner(signer, msg.colonyname)
    if msg.state == ProcessState.RUNNING or not -1 <= msg.state <= 4:
        raise BadRequest("cannot remove RUNNING workflows")
    await s.storage.remove_all_graphs(msg.colonyname, msg.state)
    return {}


async def cancel_graph(s: Services, signer: str, msg: m.CancelProcessGraphMsg) -> dict[str, Any]:
    graph = await _graph_as_member(s, signer, msg.processgraphid)
    if graph.state in (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED):
        raise BadRequest(f"workflow is {ProcessState(graph.state).name}, it cannot be cancelled")
    s.bus.publish_all(await s.storage.cancel_graph(msg.processgraphid, signer, s.now()))
    return {}


async def add_child(s: Services, signer: str, msg: m.AddChildMsg) -> Any:
    parent = await s.storage.get_process(msg.parentprocessid, attributes=False)
    if parent is None:
        raise NotFound(f"process {msg.parentprocessid} not found")
    member = await s.guard.member(signer, parent.spec.conditions.colonyname)
    if parent.assignedexecutorid != signer or parent.state != ProcessState.RUNNING:
        raise Forbidden("access denied, only the executor running the parent may add children")
    if not parent.processgraphid or parent.processgraphid != msg.processgraphid:
        raise BadRequest("the parent process does not belong to that workflow")
    if msg.childprocessid:
        child = await s.storage.get_process(msg.childprocessid, attributes=False)
        if child is None or child.processgraphid != msg.processgraphid:
            raise BadRequest("childprocessid is not in that workflow")
        if child.state != ProcessState.WAITING:
            raise BadRequest("childprocessid has already started")
    # Checked before the insert's transaction: concurrent addchild calls on one graph (only its running
    # executors may make them) can pass the limits by at most one child each.
    new_edges = 2 if msg.childprocessid and not msg.insert else 1
    check_growth(await s.storage.graph_members(msg.processgraphid), new_edges)
    spec = normalize_spec(msg.spec, colony=parent.spec.conditions.colonyname)
    if spec.maxexectime == 0:
        spec.maxexectime = -1
    # The original leaves a dynamic child without an initiator; we record the executor that added it.
    p = new_process(s, spec, member, signer, s.now())
    return await s.storage.add_child(msg.processgraphid, parent.processid, msg.childprocessid, p,
                                     msg.insert, s.now())


HANDLERS: dict[str, Handler] = {
    "submitworkflowspecmsg": submit_workflow,
    "getprocessgraphmsg": get_graph,
    "getprocessgraphsmsg": get_graphs,
    "removeprocessgraphmsg": remove_graph,
    "removeallprocessgraphsmsg": remove_all_graphs,
    "cancelprocessgraphmsg": cancel_graph,
    "addchildmsg": add_child,
}
