"""Workflows end to end with pycolonies: data flow along a diamond, a failing parent, a dynamic child."""

from __future__ import annotations

import pytest
from pycolonies import Colonies, ColoniesConnectionError, Workflow, func_spec

from colonies.client import Client
from colonies.errors import ClientError
from tests.conftest import ColonyKeys, ServerProc


def _spec(name: str, colony: ColonyKeys, deps: list[str], args: list[str] | None = None):  # type: ignore[no-untyped-def]
    f = func_spec(name, args or [], colony.name, colony.executor_type)
    f.nodename = name
    f.conditions.dependencies = deps
    return f


def _run_one(c: Colonies, colony: ColonyKeys, out_of: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    p = c.assign(colony.name, 5, colony.executor_prvkey)
    c.close(p.processid, out_of[p.spec.nodename], colony.executor_prvkey)
    return p


def test_diamond_data_flows_from_parents(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    wf = Workflow(colonyname=colony.name, functionspecs=[
        _spec("a", colony, []), _spec("b", colony, ["a"]), _spec("c", colony, ["a"]),
        _spec("d", colony, ["b", "c"]),
    ])
    graph = c.submit_workflow(wf, colony.user_prvkey)
    assert len(graph.rootprocessids) == 1
    outs = {"a": ["A"], "b": ["B"], "c": ["C"], "d": ["D"]}
    seen = {}
    first = _run_one(c, colony, outs)
    assert first.spec.nodename == "a"
    for _ in range(2):
        p = _run_one(c, colony, outs)
        seen[p.spec.nodename] = p
        assert p.input == ["A"]
    assert set(seen) == {"b", "c"}
    d = c.assign(colony.name, 5, colony.executor_prvkey)
    assert d.spec.nodename == "d"
    # Input is the parents' outputs concatenated in parent order (b, then c).
    assert d.input == ["B", "C"]
    c.close(d.processid, ["D"], colony.executor_prvkey)
    g = c.get_processgraph(graph.processgraphid, colony.user_prvkey)
    assert g.state == 2
    assert len(g.nodes) == 4 and len(g.edges) == 4


def test_failing_parent_fails_the_graph(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    wf = Workflow(colonyname=colony.name, functionspecs=[_spec("a", colony, []), _spec("b", colony, ["a"])])
    graph = c.submit_workflow(wf, colony.user_prvkey)
    p = c.assign(colony.name, 5, colony.executor_prvkey)
    c.fail(p.processid, ["boom"], colony.executor_prvkey)
    g = c.get_processgraph(graph.processgraphid, colony.user_prvkey)
    assert g.state == 3
    for pid in g.processids:
        assert c.get_process(pid, colony.user_prvkey).state == 3
    with pytest.raises(ColoniesConnectionError):
        c.assign(colony.name, 1, colony.executor_prvkey)


def test_dynamic_child_runs_after_parent(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    wf = Workflow(colonyname=colony.name, functionspecs=[_spec("a", colony, []), _spec("z", colony, ["a"])])
    graph = c.submit_workflow(wf, colony.user_prvkey)
    a = c.assign(colony.name, 5, colony.executor_prvkey)
    child_spec = func_spec("child", [], colony.name, colony.executor_type)
    child = c.add_child(graph.processgraphid, a.processid, "", child_spec, "child", True, colony.executor_prvkey)
    assert child["waitforparents"] is True
    c.close(a.processid, ["from-a"], colony.executor_prvkey)
    nxt = c.assign(colony.name, 5, colony.executor_prvkey)
    assert nxt.spec.nodename == "child"
    assert nxt.input == ["from-a"]
    c.close(nxt.processid, ["from-child"], colony.executor_prvkey)
    z = c.assign(colony.name, 5, colony.executor_prvkey)
    assert z.spec.nodename == "z"
    assert z.input == ["from-child"]


def test_invalid_workflows_are_400(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    bad = [
        [_spec("a", colony, ["b"]), _spec("b", colony, ["a"])],  # cycle
        [_spec("a", colony, ["nope"])],  # unknown dependency
        [_spec("a", colony, []), _spec("a", colony, [])],  # duplicate name
    ]
    for specs in bad:
        with pytest.raises(ColoniesConnectionError):
            c.submit_workflow(Workflow(colonyname=colony.name, functionspecs=specs), colony.user_prvkey)


def test_cancel_then_remove_workflow(server: ServerProc, colony: ColonyKeys) -> None:
    c = Colonies("127.0.0.1", server.port)
    wf = Workflow(colonyname=colony.name, functionspecs=[_spec("a", colony, []), _spec("b", colony, ["a"])])
    graph = c.submit_workflow(wf, colony.user_prvkey)
    with Client("127.0.0.1", server.port, prvkey=colony.user_prvkey) as ours:
        ours.cancel_processgraph(graph.processgraphid)
        assert ours.get_processgraph(graph.processgraphid).state == 4
        ours.remove_processgraph(graph.processgraphid)
        with pytest.raises(ClientError) as err:
            ours.get_processgraph(graph.processgraphid)
        assert err.value.status == 404
        for pid in graph.processids:
            with pytest.raises(ClientError):
                ours.get_process(pid)
