"""The counts behind /metrics (colonies.storage.tally) stay equal to the rows, on every backend.

After every operation the in-memory counts are compared with a fresh count of the rows
(`Storage.tally_rows`): the whole storage contract runs again with a tally attached, then a sequence
that moves rows through every counted path the contract does not (workflows, generators, crons,
retention, removals, executor changes, rolled-back transactions).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import tests.test_storage_contract as contract
from colonies.client.core import func_spec
from colonies.clock import NS, to_datetime
from colonies.errors import Conflict
from colonies.model import (
    Colony,
    Cron,
    Executor,
    ExecutorState,
    Generator,
    Process,
    ProcessGraph,
    ProcessState,
    WorkflowSpec,
)
from colonies.storage.base import Storage
from colonies.storage.tally import COLONY, EXECUTOR, GRAPH, PROCESS, Tally
from colonies.workflows import build_graph
from tests.test_storage_contract import T0, TYPE, backend, hexid, proc, req  # noqa: F401

W, R, S, F, C = (int(s) for s in ProcessState)


async def fresh(store: Storage) -> Tally:
    counted, heard = await store.tally_rows()
    t = Tally()
    t.finish_seed(counted, heard)
    return t


async def assert_exact(store: Storage) -> None:
    assert store.tally is not None
    expect = await fresh(store)
    assert store.tally.counts == expect.counts
    assert store.tally.live == expect.live


class TestTallyFollowsTheContract(contract.TestStorageContract):
    """Every contract test again, with the counts checked against the rows at the end."""

    @pytest.fixture(autouse=True)
    async def _tallied(self, backend: Storage) -> AsyncIterator[None]:  # noqa: F811
        await backend.start_tally(Tally())
        yield
        await assert_exact(backend)


def graph_of(colony: str, *nodes: tuple[str, list[str]], etype: str = TYPE, now: int = T0
             ) -> tuple[list[Process], ProcessGraph]:
    specs = []
    for name, deps in nodes:
        f = func_spec("f", colony, etype, nodename=name, dependencies=deps)
        specs.append(f)
    return build_graph(None, WorkflowSpec(colonyname=colony, functionspecs=specs), None, "", now)  # type: ignore[arg-type]


def counts(t: Tally, kind: int, colony: str, etype: str = "") -> dict[int, int]:
    return {s: n for (k, c, e, s), n in t.counts.items() if k == kind and c == colony and e == etype}


async def test_every_counted_path(backend: Storage) -> None:  # noqa: F811
    t = Tally()
    await backend.add_colony(Colony(colonyid=hexid(1), name="c1"))
    await backend.add_processes([proc(T0, colony="c1")])  # before the tally: seeded
    await backend.start_tally(t)
    assert t.counts == {(COLONY, "c1", "", 0): 1, (PROCESS, "c1", TYPE, W): 1}

    await backend.add_colony(Colony(colonyid=hexid(2), name="c2"))
    with pytest.raises(Conflict):  # a failed write counts nothing
        await backend.add_colony(Colony(colonyid=hexid(3), name="c2"))
    e1 = Executor(executorid=hexid(10), executortype=TYPE, executorname="e1", colonyname="c1")
    await backend.add_executor(e1)
    await backend.set_executor_state("c1", "e1", ExecutorState.APPROVED)
    await backend.add_executor(Executor(executorid=hexid(11), executortype="gpu", executorname="e2", colonyname="c1"))
    await backend.reject_executor("c1", "e2", T0)
    await backend.change_executor_id("c1", hexid(10), hexid(12))
    await assert_exact(backend)
    assert counts(t, EXECUTOR, "c1", TYPE) == {ExecutorState.APPROVED: 1}
    assert set(t.live) == {hexid(11), hexid(12)}

    # standalone processes through claim, close, fail, cancel, expiry, re-queue and removal
    ps = [proc(T0 + i, colony="c1", maxexectime=5, maxretries=1) for i in range(6)]
    with pytest.raises(Conflict):  # a duplicate id in one transaction rolls the whole insert back
        await backend.add_processes([ps[0], ps[0]])
    await backend.add_processes(ps)
    claimed = [await backend.claim(req(colony="c1", executor_id=hexid(12)), T0 + 10) for _ in range(4)]
    assert all(claimed)
    await backend.finish(claimed[0].processid, hexid(12), True, ["ok"], None, T0 + 11)  # type: ignore[union-attr]
    await backend.finish(claimed[1].processid, hexid(12), False, None, ["no"], T0 + 11)  # type: ignore[union-attr]
    await backend.cancel(claimed[2].processid, "", T0 + 11)  # type: ignore[union-attr]
    await backend.expire(T0 + 20 * NS)  # claimed[3]: re-queued (retries 1 of 1)
    await assert_exact(backend)
    assert counts(t, PROCESS, "c1", TYPE) == {W: 4, S: 1, F: 1, C: 1}
    again = await backend.claim(req(colony="c1", executor_id=hexid(12)), T0 + 21 * NS)
    assert again is not None
    await backend.expire(T0 + 40 * NS)  # its second deadline: FAILED
    waiting = proc(T0, colony="c1", maxwaittime=1)
    await backend.add_processes([waiting])
    await backend.expire(T0 + 2 * NS)  # wait deadline: FAILED
    await assert_exact(backend)
    running = await backend.claim(req(colony="c1", executor_id=hexid(12)), T0 + 50 * NS)
    assert running is not None
    assert await backend.remove_executor("c1", "e1", T0 + 51 * NS) == [running.processid]  # re-queued
    await backend.remove_process(ps[5].processid)
    await backend.remove_all_processes("c1", F)
    await assert_exact(backend)
    assert counts(t, PROCESS, "c1", TYPE) == {W: 2, S: 1, C: 1}
    assert counts(t, EXECUTOR, "c1", TYPE) == {ExecutorState.UNREGISTERED: 1}
    assert set(t.live) == {hexid(11)}

    # workflows: claim, release, failure cascade, cancel, dynamic child, removal
    await backend.add_executor(Executor(executorid=hexid(20), executortype=TYPE, executorname="w",
                                        colonyname="c2", state=ExecutorState.APPROVED))
    wreq = req(name="w", colony="c2", executor_id=hexid(20))
    good, g1 = graph_of("c2", ("a", []), ("b", ["a"]))
    bad, g2 = graph_of("c2", ("a", []), ("b", ["a"]), ("c", ["a"]), etype="t2")
    cancelled, g3 = graph_of("c2", ("a", []), etype="t3")
    await backend.add_processes(good, g1)
    await backend.add_processes(bad, g2)
    await backend.add_processes(cancelled, g3)
    assert counts(t, GRAPH, "c2") == {W: 3}
    first = await backend.claim(wreq, T0)  # g1's root (oldest first)
    assert first is not None and first.processgraphid == g1.processgraphid
    await assert_exact(backend)
    assert counts(t, GRAPH, "c2") == {W: 2, R: 1}
    await backend.add_child(g1.processgraphid, first.processid, "", proc(T0, colony="c2"), False, T0)
    await backend.finish(first.processid, hexid(20), True, [1], None, T0 + 1)
    root2 = await backend.claim(req(name="w", colony="c2", executor_id=hexid(20), executor_type="t2"), T0 + 2)
    assert root2 is not None and root2.processgraphid == g2.processgraphid
    await backend.finish(root2.processid, hexid(20), False, None, ["x"], T0 + 3)  # cascades to b and c
    await backend.cancel_graph(g3.processgraphid, "", T0 + 4)
    await assert_exact(backend)
    assert counts(t, GRAPH, "c2") == {R: 1, F: 1, C: 1}
    while (p := await backend.claim(wreq, T0 + 5)) is not None:
        await backend.finish(p.processid, hexid(20), True, [], None, T0 + 6)
    await assert_exact(backend)
    assert counts(t, GRAPH, "c2") == {S: 1, F: 1, C: 1}
    await backend.remove_graph(g3.processgraphid)
    await backend.remove_all_graphs("c2", F)
    await assert_exact(backend)
    assert counts(t, GRAPH, "c2") == {S: 1}

    # generators, crons and retention
    spec = '{"colonyname": "c2", "functionspecs": [{"funcname": "f", "nodename": "n", "conditions": ' \
           '{"executortype": "t"}}]}'
    gen = Generator(generatorid=hexid(30), colonyname="c2", name="g", workflowspec=spec, trigger=1)
    await backend.add_generator(gen)
    await backend.pack_generator(gen.generatorid, "c2", "arg", T0)
    fired = await backend.fire_generator(gen.generatorid, 1, lambda args: graph_of("c2", ("n", [])), T0)
    assert len(fired) == 1
    cron = Cron(cronid=hexid(31), colonyname="c2", name="cr", workflowspec=spec, interval=1,
                nextrun=to_datetime(T0))
    await backend.add_cron(cron)
    cps, cg = graph_of("c2", ("n", []))
    assert await backend.fire_cron(cron.cronid, T0, T0 + NS, cps, cg, T0)
    await assert_exact(backend)
    assert counts(t, GRAPH, "c2") == {W: 2, S: 1}
    assert await backend.retain(T0 + 10**6 * NS) > 0  # the SUCCESS graph g1 and standalone successes
    await assert_exact(backend)
    assert counts(t, GRAPH, "c2") == {W: 2}

    # removing a colony takes everything in it
    await backend.remove_colony("c2")
    await assert_exact(backend)
    assert not [k for k in t.counts if k[1] == "c2"]
    assert hexid(20) not in t.live


async def test_executor_sign_of_life(backend: Storage) -> None:  # noqa: F811
    await backend.add_colony(Colony(colonyid=hexid(1), name="c1"))
    t = Tally()
    await backend.start_tally(t)
    await backend.add_executor(Executor(executorid=hexid(5), executortype=TYPE, executorname="e", colonyname="c1"))
    await backend.touch_executor(hexid(5), T0 + 7 * NS)
    assert t.heard == {hexid(5): T0 + 7 * NS}
    assert (await fresh(backend)).heard == {hexid(5): T0 + 7 * NS}  # as stored: a restart seeds the same
    await backend.touch_executor(hexid(99), T0)  # not an executor: not tracked
    await backend.remove_executor("c1", "e", T0)
    assert t.heard == {} and t.live == {}


def test_remote_changes_and_gaps() -> None:
    t = Tally()
    d = (PROCESS, "c", TYPE, W, 1, "")
    assert t.remote("r1", 1, [d], {})
    assert t.remote("r1", 1, [d], {})  # a repeat: ignored
    assert t.remote("r1", 2, [d], {})
    assert t.counts == {(PROCESS, "c", TYPE, W): 2}
    assert not t.remote("r1", 5, [d], {})  # 3 and 4 were lost: seed again
    t.begin_seed()
    t.remote("r2", 1, [d], {})  # held while the seed is read, applied on top of it
    t.finish_seed([(PROCESS, "c", TYPE, W, 10, "")], {})
    assert t.counts == {(PROCESS, "c", TYPE, W): 11}


def test_local_changes_are_forwarded_once() -> None:
    t = Tally()
    calls: list[int] = []
    t.forward = lambda: calls.append(1)
    t.apply([(COLONY, "c", "", 0, 1, "")])
    t.apply([(PROCESS, "c", TYPE, W, 1, "")])
    assert calls == [1]  # once per non-empty outbox
    out, heard = t.take_outbox()
    assert (len(out), heard, t.next_seq(), t.next_seq()) == (2, {}, 1, 2)
    t.apply([(PROCESS, "c", TYPE, W, -1, "")])
    assert calls == [1, 1] and t.take_outbox() == ([(PROCESS, "c", TYPE, W, -1, "")], {})
