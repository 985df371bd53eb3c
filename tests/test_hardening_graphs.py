"""Deep and wide workflows (issue 10 item 6), on a real server over loopback.

A 450-node chain is read over pycolonies (`getprocessgraphmsg`, `getprocessgraphsmsg`; the recursive
layout answered 500) and failed from its third node (the cascade reaches every node). Workflows past
the documented limits (1,000 nodes, 10,000 dependency edges, dynamic children included) get 400. While one
colony reads its large workflows, another colony's request is served before those reads finish.
Every server test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from pycolonies import Colonies

from colonies.errors import ClientError
from colonies.model import FunctionSpec, WorkflowSpec
from colonies.protocol import envelope
from colonies.storage.base import GraphMember
from colonies.workflows import MAX_EDGES, MAX_NODES, layers
from tests.conftest import ColonyKeys, PgDatabase, ServerProc, make_server, setup_colony


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProc]:
    env: dict[str, str] = {}
    if request.param == "postgresql":
        db: PgDatabase = request.getfixturevalue("pg_database")
        env = {**db.server_env(), "COLONIES_ETCD_ENDPOINTS": ""}
    srv = make_server(tmp_path, env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def workflow(colony: ColonyKeys, deps: list[list[int]], args: list[Any] | None = None) -> dict[str, Any]:
    """A workflow spec (wire JSON): node i is `n{i}` and depends on the nodes listed in deps[i]."""
    return {"colonyname": colony.name, "functionspecs": [
        {"nodename": f"n{i}", "funcname": "f", "args": args or [], "maxexectime": -1, "maxretries": 0,
         "env": {}, "channels": [],
         "conditions": {"colonyname": colony.name, "executortype": colony.executor_type,
                        "dependencies": [f"n{j}" for j in d]}}
        for i, d in enumerate(deps)]}


def chain(n: int) -> list[list[int]]:
    return [[i - 1] if i else [] for i in range(n)]


def submit(server: ServerProc, colony: ColonyKeys, deps: list[list[int]], args: list[Any] | None = None) -> str:
    with server.client(colony.user_prvkey) as c:
        spec = msgspec.convert(workflow(colony, deps, args), WorkflowSpec)
        return c.submit_workflow(spec).processgraphid


def test_layers_of_a_deep_chain_need_no_recursion() -> None:
    n = 20_000  # far past Python's recursion limit, and past MAX_NODES: the layout itself has no bound
    members = [GraphMember(f"p{i}", f"n{i}", 0, [f"p{i - 1}"] if i else [], [f"p{i + 1}"] if i < n - 1 else [])
               for i in range(n)]
    depth = layers(members)
    assert depth["p0"] == 0 and depth[f"p{n - 1}"] == n - 1
    # Longest path decides: a node with a short and a long way from the root sits below the long one.
    diamond = [GraphMember("a", "a", 0, [], ["b", "d"]), GraphMember("b", "b", 0, ["a"], ["c"]),
               GraphMember("c", "c", 0, ["b"], ["d"]), GraphMember("d", "d", 0, ["a", "c"], [])]
    assert layers(diamond) == {"a": 0, "b": 1, "c": 2, "d": 3}
    # A cycle (which submission refuses) and a parent outside the graph do not hang or raise.
    odd = [GraphMember("x", "x", 0, ["y", "gone"], ["y"]), GraphMember("y", "y", 0, ["x"], ["x"])]
    assert layers(odd) == {"x": 0, "y": 0}


def test_deep_chain_reads_and_fails_over_pycolonies(server: ServerProc, colony: ColonyKeys) -> None:
    n = 450
    graph_id = submit(server, colony, chain(n))
    c = Colonies("127.0.0.1", server.port)
    g = c.get_processgraph(graph_id, colony.user_prvkey)
    assert len(g.nodes) == n and len(g.edges) == n - 1
    assert sorted(node.position.y for node in g.nodes) == [100 * i for i in range(n)]
    listed = c.get_processgraphs(colony.name, 10, colony.user_prvkey, state=0)
    assert [x["processgraphid"] for x in listed] == [graph_id]
    # As in the original, the list carries the process ids but no layout.
    assert len(listed[0]["processids"]) == n and listed[0]["nodes"] == [] and listed[0]["edges"] == []

    # Outputs flow down the chain; a failure deep in it reaches every node.
    for out in (["o0"], ["o1"]):
        p = c.assign(colony.name, 5, colony.executor_prvkey)
        c.close(p.processid, out, colony.executor_prvkey)
    third = c.assign(colony.name, 5, colony.executor_prvkey)
    assert third.spec.nodename == "n2" and third.input == ["o1"]
    c.fail(third.processid, ["boom"], colony.executor_prvkey)
    g = c.get_processgraph(graph_id, colony.user_prvkey)
    assert g.state == 3
    colors = {n.data["label"]: n.style["background"] for n in g.nodes}
    success, failed = "#2e8b57", "#dc143c"
    assert colors == {f"n{i}": success if i < 2 else failed for i in range(n)}


def test_workflow_limits_give_400(server: ServerProc, colony: ColonyKeys) -> None:
    user = server.client(colony.user_prvkey)

    def refused(deps: list[list[int]]) -> str:
        with pytest.raises(ClientError) as err:
            user.submit_workflow(msgspec.convert(workflow(colony, deps), WorkflowSpec))
        assert err.value.status == 400
        return err.value.message

    with user:
        # Every node on all earlier ones: 150 nodes, 11,175 edges (the case had 1,000 nodes).
        assert f"at most {MAX_EDGES} dependency edges" in refused([list(range(i)) for i in range(150)])
        assert f"at most {MAX_NODES} nodes" in refused(chain(MAX_NODES + 1))
        dense = [list(range(max(0, i - 10), i)) for i in range(MAX_NODES - 1)]  # room for a child
        dense[-1] += list(range(MAX_EDGES - sum(map(len, dense))))  # exactly MAX_EDGES
        assert f"at most {MAX_EDGES} dependency edges" in refused([*dense[:-1], [*dense[-1], 500]])
        assert user.get_processgraphs(colony.name) in (None, [])

    # At the limits exactly: accepted. A dynamic child would then pass them: 400.
    wide: list[list[int]] = [[]] + [[0]] * (MAX_NODES - 1)
    pyc = Colonies("127.0.0.1", server.port)
    for deps, limit in ((wide, f"at most {MAX_NODES} nodes"), (dense, f"at most {MAX_EDGES} dependency edges")):
        graph_id = submit(server, colony, deps)
        root = pyc.assign(colony.name, 5, colony.executor_prvkey)
        assert root.processgraphid == graph_id
        with server.client(colony.executor_prvkey) as ex, pytest.raises(ClientError) as err:
            ex.add_child(graph_id, root.processid, FunctionSpec(nodename="extra", funcname="f"))
        assert err.value.status == 400 and limit in err.value.message


def _http_request(port: int, body: bytes) -> bytes:
    head = (f"POST /api HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def test_other_colony_is_served_during_big_reads(server: ServerProc, colony: ColonyKeys) -> None:
    """Eight reads of all of one colony's workflows (20 graphs of 1,000 processes each) are sent at once;
    meanwhile another colony's user asks for its colony, one request after another, until the server has
    started answering every read (time to first byte, so the transfer of the replies is not counted).
    Several of those requests are answered before the first read is, and a typical one takes a small
    part of the reads' time. Before the fix the reads ran without yielding: the first request arriving
    meanwhile waited for all eight."""
    other = setup_colony(server, "other")
    deps = [[j for j in (i - 10, i - 20, i - 30) if j >= 0] for i in range(MAX_NODES)]  # 100 layers deep
    for _ in range(20):
        submit(server, colony, deps, args=["x" * 40] * 4)
    big = _http_request(server.port, envelope.encode_request(
        {"msgtype": "getprocessgraphsmsg", "colonyname": colony.name, "count": 100, "state": 0},
        colony.user_prvkey))
    small = envelope.encode_request({"msgtype": "getcolonymsg", "colonyname": other.name}, other.user_prvkey)

    async def run() -> tuple[list[float], list[tuple[float, float]]]:
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            assert (await http.post("/api", content=small)).status_code == 200  # connected, warm
            conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(8)]
            t0 = loop.time()
            for _, writer in conns:
                writer.write(big)

            async def first_byte(reader: asyncio.StreamReader) -> float:
                assert await reader.read(1) == b"H"
                return loop.time() - t0

            reads = [asyncio.create_task(first_byte(reader)) for reader, _ in conns]
            smalls: list[tuple[float, float]] = []  # (answered at, waited)
            while not all(r.done() for r in reads):  # bounded: every read is answered
                sent = loop.time()
                assert (await http.post("/api", content=small)).status_code == 200
                smalls.append((loop.time() - t0, loop.time() - sent))
            ttfb = list(await asyncio.gather(*reads))
            for _, writer in conns:
                writer.close()
            return ttfb, smalls

    ttfb, smalls = asyncio.run(run())
    waits = [w for _, w in smalls]
    before = sum(at < min(ttfb) for at, _ in smalls)
    seen = (f"the reads were answered after {min(ttfb):.3f} to {max(ttfb):.3f} s; the other colony's "
            f"{len(smalls)} requests ({before} before the first read) waited {statistics.median(waits):.3f} s "
            f"(median), {max(waits):.3f} s at most")
    assert before >= 2, seen
    assert statistics.median(waits) < 0.25 * max(ttfb), seen


def test_big_list_reply_is_processids_not_layouts(server: ServerProc, colony: ColonyKeys) -> None:
    """Listing 1,000-process workflows sends their process ids, not their layouts (~300 bytes an edge)."""
    deps = [list(range(max(0, i - 10), i)) for i in range(MAX_NODES)]
    for _ in range(3):
        submit(server, colony, deps)
    body = envelope.encode_request({"msgtype": "getprocessgraphsmsg", "colonyname": colony.name, "count": 100,
                                    "state": 0}, colony.user_prvkey)
    r = httpx.post(f"{server.url}/api", content=body, timeout=60)
    _, payload, error = envelope.decode_reply(r.content)
    graphs = json.loads(payload)
    assert not error and len(graphs) == 3
    assert len(r.content) < 1_000_000  # with a layout each, over 13 MB
    assert all(len(g["processids"]) == MAX_NODES and g["edges"] == [] for g in graphs)


def test_cli_draws_a_deep_chain_without_recursion() -> None:
    """`colonies workflow get` lays out with the server's iterative layers (its own recursed: 400+ nodes
    raised RecursionError)."""
    from types import SimpleNamespace

    from colonies.cli.dag import levels

    n = 5_000
    chain = [SimpleNamespace(processid=f"p{i}", parents=[f"p{i - 1}"] if i else []) for i in range(n)]
    out = levels(chain[::-1])  # leaf first: a recursive walk goes n deep
    assert len(out) == n and out[-1][0].processid == f"p{n - 1}"
