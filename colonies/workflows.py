"""Workflow (DAG) construction and the graph view (§5). Pure functions, no I/O.

`build_graph` turns a WorkflowSpec into WAITING processes plus a ProcessGraph. Workflows submitted by a
user, fired by a generator (roots get the packed args) and fired by a cron (roots get the previous
graph's leaf outputs as input) all go through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from colonies.clock import to_datetime
from colonies.errors import BadRequest
from colonies.model import (
    Edge,
    GraphNode,
    NodeData,
    NodeStyle,
    Position,
    Process,
    ProcessGraph,
    ProcessState,
    WorkflowSpec,
)
from colonies.security import Member, initiator_name
from colonies.server.handlers_processes import new_process, normalize_spec
from colonies.services import Services, new_id
from colonies.storage.base import GraphMember

_spec_decoder = msgspec.json.Decoder(WorkflowSpec)
# Per workflow, dynamic children included. A graph read grows with both (an edge is ~300 bytes on the
# wire), and the original's workflows have tens of nodes.
MAX_NODES = 1_000
MAX_EDGES = 10_000  # dependency edges (parent → child pairs)


def parse_workflow(text: str) -> WorkflowSpec:
    """A WorkflowSpec from JSON text (generators and crons store it as a string)."""
    try:
        return _spec_decoder.decode(text)
    except (msgspec.DecodeError, UnicodeError) as exc:
        raise BadRequest(f"invalid workflow spec: {exc}") from None


def check_dag(spec: WorkflowSpec) -> list[str]:
    """Validate node names and dependencies; returns the names in a topological order.
    Unknown dependency, duplicate or empty name, or a cycle: 400."""
    specs = spec.functionspecs or []
    if not specs:
        raise BadRequest("a workflow needs at least one function spec")
    if len(specs) > MAX_NODES:
        raise BadRequest(f"a workflow may have at most {MAX_NODES} nodes")
    names = [f.nodename for f in specs]
    if any(not n for n in names):
        raise BadRequest("every function spec in a workflow needs a nodename")
    if len(set(names)) != len(names):
        raise BadRequest("duplicate nodename in workflow")
    known = set(names)
    deps = {f.nodename: list(dict.fromkeys(f.conditions.dependencies or [])) for f in specs}
    edges = sum(len(parents) for parents in deps.values())
    if edges > MAX_EDGES:
        raise BadRequest(f"a workflow may have at most {MAX_EDGES} dependency edges (this one has {edges})")
    for node, parents in deps.items():
        for parent in parents:
            if parent not in known:
                raise BadRequest(f"node {node} depends on unknown node {parent}")
    order: list[str] = []
    indegree = {n: len(deps[n]) for n in names}
    children: dict[str, list[str]] = {n: [] for n in names}
    for node, parents in deps.items():
        for parent in parents:
            children[parent].append(node)
    ready = [n for n in names if indegree[n] == 0]
    while ready:
        node = ready.pop()
        order.append(node)
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(order) != len(names):
        raise BadRequest("workflow dependencies contain a cycle")
    return order


def build_graph(s: Services, spec: WorkflowSpec, member: Member | None, signer: str, now: int,
                root_args: list[str] | None = None, root_input: list[Any] | None = None
                ) -> tuple[list[Process], ProcessGraph]:
    """WAITING processes and their graph for `spec`. Only roots are assignable at first."""
    check_dag(spec)
    colony = spec.colonyname
    graph_id = new_id()
    by_name: dict[str, Process] = {}
    for f in spec.functionspecs or []:
        f = normalize_spec(f, colony=colony)
        if f.maxexectime == 0:
            f.maxexectime = -1
        p = new_process(s, f, member, signer, now)
        p.processgraphid = graph_id
        by_name[f.nodename] = p
    roots: list[str] = []
    for p in by_name.values():
        parents = p.spec.conditions.dependencies or []
        p.parents = [by_name[d].processid for d in dict.fromkeys(parents)]
        p.waitforparents = bool(parents)
        for d in dict.fromkeys(parents):
            by_name[d].children.append(p.processid)
        if not parents:
            roots.append(p.processid)
            if root_args is not None:
                p.spec.args = list(root_args)
                p.spec.kwargs = {}
            if root_input is not None:
                p.input = list(root_input)
    graph = ProcessGraph(
        processgraphid=graph_id,
        initiatorid=signer if member is not None else "",
        initiatorname=initiator_name(member) if member is not None else "",
        colonyname=colony,
        rootprocessids=roots,
        state=ProcessState.WAITING,
        submissiontime=to_datetime(now),
        processids=[p.processid for p in by_name.values()],
    )
    return list(by_name.values()), graph


def check_growth(members: list[GraphMember], new_edges: int) -> None:
    """A dynamic child may not take its graph past the limits (400)."""
    if len(members) + 1 > MAX_NODES:
        raise BadRequest(f"a workflow may have at most {MAX_NODES} nodes")
    edges = sum(len(m.parents) for m in members) + new_edges
    if edges > MAX_EDGES:
        raise BadRequest(f"a workflow may have at most {MAX_EDGES} dependency edges")


_COLORS = {0: ("#000", "#ffd700"), 1: ("#fff", "#1e90ff"), 2: ("#fff", "#2e8b57"), 3: ("#fff", "#dc143c"),
           4: ("#fff", "#808080")}


class Node(Protocol):
    """What the layout reads of a process: its id and its parents' ids."""

    @property
    def processid(self) -> str: ...
    @property
    def parents(self) -> list[str]: ...


def layers(members: Sequence[Node]) -> dict[str, int]:
    """Each process's layer: 0 for a root, else 1 + its deepest parent (longest path), computed in
    topological order without recursion. Parents outside the list are ignored; a process on a cycle
    (which submission and addchild cannot make) stays at layer 0."""
    ids = {m.processid for m in members}
    parents = {m.processid: [q for q in dict.fromkeys(m.parents) if q in ids] for m in members}
    children: dict[str, list[str]] = {pid: [] for pid in ids}
    for pid, ps in parents.items():
        for q in ps:
            children[q].append(pid)
    waiting = {pid: len(ps) for pid, ps in parents.items()}
    depth = dict.fromkeys(ids, 0)
    ready = [pid for pid, n in waiting.items() if n == 0]
    while ready:
        pid = ready.pop()
        for child in children[pid]:
            depth[child] = max(depth[child], depth[pid] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return depth


def graph_view(graph: ProcessGraph, members: list[GraphMember]) -> ProcessGraph:
    """Fill `nodes` and `edges` (a layered layout, computed at read time) for UIs and pycolonies."""
    depth = layers(members)
    columns: dict[int, int] = {}
    nodes: list[GraphNode] = []
    edges: list[Edge] = []
    for p in members:
        d = depth[p.processid]
        col = columns.get(d, 0)
        columns[d] = col + 1
        color, background = _COLORS.get(p.state, ("#000", "#fff"))
        kind = "input" if not p.parents else ("output" if not p.children else "")
        nodes.append(GraphNode(id=p.processid, data=NodeData(label=p.nodename),
                               position=Position(x=col * 200, y=d * 100), type=kind,
                               style=NodeStyle(color=color, background=background)))
        animated = p.state == ProcessState.RUNNING
        edges.extend(Edge(id=f"{p.processid}-{child}", source=p.processid, target=child, animated=animated)
                     for child in p.children)
    graph.nodes, graph.edges = nodes, edges
    return graph
