"""Generators, crons, logs and retention in-process: storage, handlers and loop steps with explicit `now`."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from colonies import cron
from colonies.clock import NS, FakeClock, to_datetime
from colonies.config import Config
from colonies.cron import to_ns
from colonies.errors import BadRequest, Conflict, Forbidden, NotFound
from colonies.loops import schedules as loops
from colonies.model import (
    Colony,
    Conditions,
    Executor,
    ExecutorState,
    FunctionSpec,
    Generator,
    Log,
    Process,
    ProcessState,
    User,
)
from colonies.protocol import messages as m
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.server import handlers_schedules as h
from colonies.server.handlers_processes import new_process, normalize_spec
from colonies.services import Services
from colonies.storage.base import ClaimRequest, ProcessQuery
from colonies.storage.sqlite import SqliteStorage

COLONY = "sched"
T0 = 1_700_000_000 * NS


@dataclass
class World:
    s: Services
    clock: FakeClock
    user: str
    executor: str
    path: str

    @property
    def now(self) -> int:
        return self.clock.now_ns()

    async def processes(self, state: int = -1) -> list[Process]:
        return await self.s.storage.list_processes(ProcessQuery(colony=COLONY, state=state, count=1000))

    def new_process(self) -> Process:
        spec = normalize_spec(FunctionSpec(funcname="f", conditions=Conditions(colonyname=COLONY,
                                                                                executortype="test")))
        return new_process(self.s, spec, None, "", self.now)

    async def run_next(self, output: list[Any] | None = None, success: bool = True) -> Process:
        """Claim the next process as the executor and close it."""
        p = await self.s.storage.claim(ClaimRequest(COLONY, self.executor, "exec", "test"), self.now)
        assert p is not None
        await self.s.storage.finish(p.processid, self.executor, success, output, None if success else ["x"],
                                    self.now)
        return p


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    path = str(tmp_path / "s.db")
    storage = SqliteStorage(path)
    await storage.open()
    clock = FakeClock(T0)
    s = Services(Config(db_path=path), storage, clock)
    user, executor = id_of(generate_prvkey()), id_of(generate_prvkey())
    await storage.add_colony(Colony(colonyid=id_of(generate_prvkey()), name=COLONY))
    await storage.add_user(User(colonyname=COLONY, userid=user, name="alice"))
    await storage.add_executor(Executor(executorid=executor, executortype="test", executorname="exec",
                                        colonyname=COLONY, state=ExecutorState.APPROVED,
                                        commissiontime=to_datetime(T0)))
    yield World(s, clock, user, executor, path)
    await storage.close()


def workflow(*nodes: tuple[str, list[str]], colony: str = COLONY) -> str:
    specs = [{"nodename": n, "funcname": n, "conditions": {"executortype": "test", "dependencies": deps}}
             for n, deps in nodes]
    return json.dumps({"colonyname": colony, "functionspecs": specs})


# -- schedule computation ---------------------------------------------------------------------------------
def test_cron_validation() -> None:
    with pytest.raises(BadRequest):
        cron.validate(0, "", False, T0)
    with pytest.raises(BadRequest):
        cron.validate(-1, "0 * * * * *", True, T0)  # random only with an interval
    with pytest.raises(BadRequest):
        cron.validate(-1, "* * * * *", False, T0)  # 5 fields: seconds are mandatory
    for bad in ("@every", "@every 5x", "61 * * * * *", "TZ=No/Where 0 * * * * *", "0 0 0 30 2 *"):
        with pytest.raises(BadRequest):
            cron.parse(bad)
    cron.validate(10, "", True, T0)
    cron.validate(-1, "@every 1h30m", False, T0)


def test_next_run() -> None:
    assert cron.next_run(5, "", False, T0, None) == T0 + 5 * NS
    assert cron.next_run(-1, "TZ=UTC */10 * * * * *", False, T0 + 1, None) == T0 + 10 * NS
    assert cron.next_run(-1, "TZ=UTC 0 30 * * * *", False, T0, None) == T0 + 1000 * NS  # 22:13:20 → 22:30
    assert cron.next_run(-1, "@hourly", False, T0, None) % (60 * NS) == 0
    assert cron.next_run(-1, "@every 1m30s", False, T0 + 5, None) == T0 + 90 * NS
    assert cron.parse_duration("1.5h") == 5400 * NS


def test_random_interval_runs_once_per_window_at_a_random_time() -> None:
    rng = random.Random(7)
    window = 60 * NS
    offsets = set()
    now = T0
    for _ in range(50):
        nxt = cron.next_run(60, "", True, now, rng)
        assert nxt // window == now // window + 1  # in the next window, exactly one run per window
        offsets.add(nxt % window)
        assert nxt % 1000 == 0
        now = nxt
    assert len(offsets) > 40  # really random


# -- generators ----------------------------------------------------------------------------------------------
async def add_generator(w: World, trigger: int = 2, timeout: int = 0, name: str = "gen") -> str:
    msg = m.AddGeneratorMsg(generator=Generator(colonyname=COLONY, name=name, trigger=trigger, timeout=timeout,
                                                  workflowspec=workflow(("a", []), ("b", ["a"]))))
    g = await h.add_generator(w.s, w.user, msg)
    return g.generatorid


async def pack(w: World, gid: str, *args: str) -> None:
    for a in args:
        await h.pack_generator(w.s, w.user, m.PackGeneratorMsg(generatorid=gid, arg=a))


async def test_add_generator_validates(w: World) -> None:
    spec = workflow(("a", []))
    for bad in (Generator(colonyname=COLONY, name="g", trigger=0, workflowspec=spec),
                Generator(colonyname=COLONY, name="g", trigger=1, workflowspec="{not json"),
                Generator(colonyname=COLONY, name="g", trigger=1, workflowspec=workflow(("a", ["zz"]))),
                Generator(colonyname=COLONY, name="g", trigger=1, workflowspec=workflow(("a", []), colony="x"))):
        with pytest.raises(BadRequest):
            await h.add_generator(w.s, w.user, m.AddGeneratorMsg(generator=bad))
    with pytest.raises(Forbidden):
        await h.add_generator(w.s, id_of(generate_prvkey()), m.AddGeneratorMsg(
            generator=Generator(colonyname=COLONY, name="g", trigger=1, workflowspec=spec)))
    await add_generator(w)
    with pytest.raises(Conflict):  # (colony, name) is unique: a 400
        await add_generator(w)


async def test_generator_fires_every_trigger_args_fifo(w: World) -> None:
    gid = await add_generator(w, trigger=2)
    await pack(w, gid, "a0", "a1", "a2", "a3", "a4")
    g = await h.get_generator(w.s, w.user, m.GetGeneratorMsg(generatorid=gid))
    assert g.queuesize == 5 and g.checkerperiod == 1000 and to_ns(g.firstpack) == T0
    await loops.generators(w.s, w.now)
    roots = sorted((p for p in await w.processes() if not p.waitforparents), key=lambda p: p.spec.args or [])
    assert [p.spec.args for p in roots] == [["a0", "a1"], ["a2", "a3"]]
    assert all(p.spec.kwargs == {} and p.initiatorname == "alice" for p in roots)
    assert len(await w.s.storage.list_graphs(COLONY, -1, 100)) == 2
    g = await h.get_generator(w.s, w.user, m.GetGeneratorMsg(generatorid=gid))
    assert g.queuesize == 1 and to_ns(g.lastrun) == T0
    await loops.generators(w.s, w.now)  # one arg, no timeout: nothing
    assert len(await w.s.storage.list_graphs(COLONY, -1, 100)) == 2


async def test_generator_timeout_fires_what_is_queued(w: World) -> None:
    gid = await add_generator(w, trigger=10, timeout=5)
    await pack(w, gid, "x", "y")
    await loops.generators(w.s, w.now + 5 * NS)  # not yet: must be strictly after
    assert await w.processes() == []
    await loops.generators(w.s, w.now + 6 * NS)
    roots = [p for p in await w.processes() if not p.waitforparents]
    assert [p.spec.args for p in roots] == [["x", "y"]]
    assert (await w.s.storage.get_generator(gid)).queuesize == 0  # type: ignore[union-attr]


async def test_generator_failed_build_loses_no_args(w: World) -> None:
    gid = await add_generator(w, trigger=2)
    await pack(w, gid, "a", "b")

    def broken(args: list[str]) -> Any:
        raise BadRequest("boom")

    with pytest.raises(BadRequest):
        await w.s.storage.fire_generator(gid, 2, broken, w.now)
    assert (await w.s.storage.get_generator(gid)).queuesize == 2  # type: ignore[union-attr]
    # Asking for more args than are queued (another fire got there first) does nothing.
    assert await w.s.storage.fire_generator(gid, 3, broken, w.now) == []


async def test_generator_args_survive_a_restart(w: World) -> None:
    gid = await add_generator(w, trigger=3)
    await pack(w, gid, "1", "2", "3", "4")
    await w.s.storage.close()
    await w.s.storage.open()
    await loops.generators(w.s, w.now)
    await w.s.storage.close()
    await w.s.storage.open()
    await loops.generators(w.s, w.now)
    roots = [p for p in await w.processes() if not p.waitforparents]
    assert [p.spec.args for p in roots] == [["1", "2", "3"]]
    assert (await w.s.storage.get_generator(gid)).queuesize == 1  # type: ignore[union-attr]


async def test_generator_resolve_list_remove(w: World) -> None:
    gid = await add_generator(w)
    await pack(w, gid, "q")
    g = await h.resolve_generator(w.s, w.user, m.ResolveGeneratorMsg(colonyname=COLONY, generatorname="gen"))
    assert g.generatorid == gid
    assert [x.name for x in await h.get_generators(w.s, w.user, m.GetGeneratorsMsg(colonyname=COLONY))] == ["gen"]
    await h.remove_generator(w.s, w.user, m.RemoveGeneratorMsg(generatorid=gid))
    with pytest.raises(NotFound):
        await h.get_generator(w.s, w.user, m.GetGeneratorMsg(generatorid=gid))
    assert await w.s.storage.generators_due() == []  # queued args went with it


# -- crons -------------------------------------------------------------------------------------------------
async def add_cron(w: World, interval: int = 10, expr: str = "", wait: bool = False, misspelt: bool = False,
                   spec: str | None = None) -> str:
    c = m.CronIn(colonyname=COLONY, name="cron", interval=interval, cronexpression=expr,
                 workflowspec=spec or workflow(("a", []), ("b", ["a"]), ("c", ["a"])))
    if misspelt:
        c.waitforprevprocessgrap = wait
    else:
        c.waitforprevprocessgraph = wait
    return (await h.add_cron(w.s, w.user, m.AddCronMsg(cron=c))).cronid


async def test_add_cron_validates(w: World) -> None:
    for interval, expr, rnd in ((0, "", False), (-1, "nope", False), (-1, "0 * * * * *", True)):
        c = m.CronIn(colonyname=COLONY, name="c", interval=interval, cronexpression=expr, random=rnd,
                     workflowspec=workflow(("a", [])))
        with pytest.raises(BadRequest):
            await h.add_cron(w.s, w.user, m.AddCronMsg(cron=c))
    cid = await add_cron(w, wait=True, misspelt=True)  # pycolonies' key is accepted
    got = await h.get_cron(w.s, w.user, m.GetCronMsg(cronid=cid))
    assert got.waitforprevprocessgraph and got.checkerperiod == 1000 and got.initiatorname == "alice"


async def test_cron_first_tick_only_schedules_then_fires_once_after_downtime(w: World) -> None:
    cid = await add_cron(w, interval=10)
    await loops.crons(w.s, w.now)
    c = await w.s.storage.get_cron(cid)
    assert c is not None and to_ns(c.nextrun) == T0 + 10 * NS and c.prevprocessgraphid == ""
    assert await w.processes() == []
    await loops.crons(w.s, T0 + 10 * NS)  # only when now > nextrun
    assert await w.processes() == []
    down = T0 + 1000 * NS  # the server was down for 100 intervals
    await loops.crons(w.s, down)
    await loops.crons(w.s, down)
    graphs = await w.s.storage.list_graphs(COLONY, -1, 100)
    assert len(graphs) == 1  # no catch-up storm
    c = await w.s.storage.get_cron(cid)
    assert c is not None and to_ns(c.nextrun) == down + 10 * NS and to_ns(c.lastrun) == down
    assert c.prevprocessgraphid == graphs[0].processgraphid


async def test_cron_feeds_leaf_outputs_and_waits_for_previous_graph(w: World) -> None:
    cid = await add_cron(w, interval=10, wait=True)
    await loops.crons(w.s, w.now)
    w.clock.advance(11)
    await loops.crons(w.s, w.now)
    first = (await w.s.storage.get_cron(cid)).prevprocessgraphid  # type: ignore[union-attr]
    w.clock.advance(11)
    await loops.crons(w.s, w.now)  # previous graph still WAITING: no fire
    assert (await w.s.storage.get_cron(cid)).prevprocessgraphid == first  # type: ignore[union-attr]
    outs: dict[str, list[object]] = {"a": ["A"], "b": ["B"], "c": ["C"]}
    for _ in range(3):
        p = await w.s.storage.claim(ClaimRequest(COLONY, w.executor, "exec", "test"), w.now)
        assert p is not None
        await w.s.storage.finish(p.processid, w.executor, True, outs[p.spec.nodename], None, w.now)
    assert (await w.s.storage.get_graph(first)).state == ProcessState.SUCCESS  # type: ignore[union-attr]
    await loops.crons(w.s, w.now)
    second = (await w.s.storage.get_cron(cid)).prevprocessgraphid  # type: ignore[union-attr]
    assert second != first
    root = [p for p in await w.processes(ProcessState.WAITING) if not p.waitforparents]
    assert len(root) == 1 and root[0].processgraphid == second
    assert root[0].input == ["B", "C"]  # the leaves' outputs, in graph order


async def test_fire_cron_is_fenced(w: World) -> None:
    cid = await add_cron(w, interval=10)
    await loops.crons(w.s, w.now)
    stale = await w.s.storage.get_cron(cid)
    assert stale is not None
    w.clock.advance(11)
    assert await loops.fire_cron(w.s, stale, w.now)
    assert not await loops.fire_cron(w.s, stale, w.now)  # same expected nextrun: fenced out
    assert len(await w.s.storage.list_graphs(COLONY, -1, 100)) == 1


async def test_run_cron_checks_membership_first(w: World) -> None:
    cid = await add_cron(w, interval=3600)
    with pytest.raises(Forbidden):
        await h.run_cron(w.s, id_of(generate_prvkey()), m.RunCronMsg(cronid=cid))
    assert await w.processes() == []
    c = await h.run_cron(w.s, w.user, m.RunCronMsg(cronid=cid))
    graphs = await w.s.storage.list_graphs(COLONY, -1, 100)
    assert len(graphs) == 1 and c.prevprocessgraphid == graphs[0].processgraphid
    assert to_ns(c.nextrun) == w.now + 3600 * NS
    crons = await h.get_crons(w.s, w.user, m.GetCronsMsg(colonyname=COLONY))
    assert [x.cronid for x in crons] == [cid]
    await h.remove_cron(w.s, w.user, m.RemoveCronMsg(cronid=cid))
    with pytest.raises(NotFound):
        await h.run_cron(w.s, w.user, m.RunCronMsg(cronid=cid))


async def test_expression_cron(w: World) -> None:
    cid = await add_cron(w, interval=-1, expr="TZ=UTC */30 * * * * *")
    await loops.crons(w.s, T0)
    assert to_ns((await w.s.storage.get_cron(cid)).nextrun) == T0 + 10 * NS  # type: ignore[union-attr]
    await loops.crons(w.s, T0 + 11 * NS)
    assert to_ns((await w.s.storage.get_cron(cid)).nextrun) == T0 + 40 * NS  # type: ignore[union-attr]
    assert len(await w.s.storage.list_graphs(COLONY, -1, 100)) == 1


# -- logs ---------------------------------------------------------------------------------------------------
async def test_logs(w: World) -> None:
    p = w.new_process()
    await w.s.storage.add_processes([p])
    with pytest.raises(Forbidden):  # not assigned yet
        await h.add_log(w.s, w.executor, m.AddLogMsg(processid=p.processid, message="x"))
    await w.s.storage.claim(ClaimRequest(COLONY, w.executor, "exec", "test"), w.now)
    with pytest.raises(Forbidden):  # a user is not the assigned executor
        await h.add_log(w.s, w.user, m.AddLogMsg(processid=p.processid, message="x"))
    with pytest.raises(BadRequest):
        await h.add_log(w.s, w.executor, m.AddLogMsg(processid=p.processid, message="x" * (64 * 1024 + 1)))
    stamps = []
    for i in range(5):
        w.clock.advance(1)
        stamps.append(w.now)
        await h.add_log(w.s, w.executor, m.AddLogMsg(processid=p.processid, message=f"line {i}"))
    await h.add_executor_log(w.s, w.executor, m.AddExecutorLogMsg(colonyname=COLONY, executorname="exec",
                                                                  message="standalone"))
    with pytest.raises(Forbidden):
        await h.add_executor_log(w.s, w.user, m.AddExecutorLogMsg(colonyname=COLONY, executorname="exec",
                                                                  message="nope"))

    async def get(**kw: Any) -> list[str]:
        msg = m.GetLogsMsg(colonyname=COLONY, **kw)
        return [log.message for log in await h.get_logs(w.s, w.user, msg)]

    assert await get(processid=p.processid, count=2) == ["line 0", "line 1"]
    assert await get(processid=p.processid, count=2, latest=True) == ["line 3", "line 4"]
    assert await get(processid=p.processid, count=10, since=stamps[2]) == ["line 3", "line 4"]
    assert await get(executorname="exec", count=10) == [f"line {i}" for i in range(5)] + ["standalone"]
    logs = await h.get_logs(w.s, w.user, m.GetLogsMsg(colonyname=COLONY, processid=p.processid, count=1))
    assert logs[0].timestamp == stamps[0] and logs[0].executorname == "exec"
    with pytest.raises(BadRequest):
        await get(processid=p.processid, count=501)
    await w.s.storage.finish(p.processid, w.executor, True, None, None, w.now)
    with pytest.raises(BadRequest):  # no longer RUNNING
        await h.add_log(w.s, w.executor, m.AddLogMsg(processid=p.processid, message="late"))

    async def search(text: str, days: int = 1, count: int = 100) -> list[str]:
        msg = m.SearchLogsMsg(colonyname=COLONY, text=text, days=days, count=count)
        return [log.message for log in await h.search_logs(w.s, w.user, msg)]

    assert await search("line") == [f"line {i}" for i in range(5)]
    assert await search("line", count=2) == ["line 3", "line 4"]
    assert await search("LINE") == []
    for days, count in ((31, 10), (1, 101)):
        with pytest.raises(BadRequest):
            await search("line", days, count)


# -- retention ---------------------------------------------------------------------------------------------
async def test_retention_keeps_failed_and_recent_work(w: World) -> None:
    old_ok, old_failed = w.new_process(), w.new_process()
    await w.s.storage.add_processes([old_ok, old_failed])
    await w.run_next(["ok"])
    await w.run_next(success=False)
    gid = await add_generator(w, trigger=1)
    await pack(w, gid, "g")
    await loops.generators(w.s, w.now)  # a two-node graph
    await w.run_next()
    await w.run_next()
    await w.s.storage.add_log(Log(colonyname=COLONY, executorname="exec", message="old", timestamp=w.now))
    w.clock.advance(100)
    recent = w.new_process()
    await w.s.storage.add_processes([recent])
    await w.run_next()
    await w.s.storage.add_log(Log(colonyname=COLONY, executorname="exec", message="new", timestamp=w.now))
    w.s = Services(w.s.config.with_(retention_policy_s=50), w.s.storage, w.clock)
    await loops.retention(w.s, w.now)
    left = {p.processid for p in await w.processes()}
    assert left == {old_failed.processid, recent.processid}
    assert await w.s.storage.list_graphs(COLONY, -1, 100) == []
    logs = await w.s.storage.get_logs(COLONY, "", "exec", 100, 0, False)
    assert [log.message for log in logs] == ["new"]


def test_loops_registered_on_the_leader(tmp_path: Path) -> None:
    from colonies.server.app import create_app

    def names(cfg: Config) -> dict[str, tuple[float, bool]]:
        app = create_app(cfg, SqliteStorage(str(tmp_path / "x.db")), run_loops=False)
        return {lp.name: (lp.period_s, lp.leader_only) for lp in app.state.runner.loops}

    loops_ = names(Config(generator_period_ms=250, cron_period_ms=500))
    assert loops_["generators"] == (0.25, True) and loops_["crons"] == (0.5, True)
    assert "retention" not in loops_
    assert names(Config(retention=True))["retention"] == (60, True)


def test_a_huge_queue_fires_in_bounded_ticks() -> None:
    g = Generator(trigger=1, queuesize=5000)
    assert len(loops.due_batches(g, T0)) == loops.MAX_FIRES_PER_TICK
