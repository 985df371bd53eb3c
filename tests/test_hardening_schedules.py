"""Issue 10 items 4 and 12: crons and generators cannot stop the leader's loops, and the Go CLI's defaults work.

Add time refuses every value that would only fail later (when a cron or generator fires, on every tick);
a bad row already stored (written here straight through the storage interface, or raw SQL into a running
server's database) is logged, held back and skipped, while every other cron and generator keeps firing.
Both storage backends; the Go CLI's messages are sent byte for byte as its defaults make them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycolonies import Colonies

from colonies import cron
from colonies.clock import NS, FakeClock, to_datetime
from colonies.config import Config
from colonies.cron import to_ns
from colonies.errors import BadRequest
from colonies.loops import schedules as loops
from colonies.loops.runner import Runner
from colonies.model import Colony, Cron, Generator, User
from colonies.protocol import messages as m
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.server import handlers_schedules as h
from colonies.services import Services, new_id
from colonies.storage.base import ProcessQuery, Storage
from colonies.storage.sqlite import SqliteStorage
from tests import test_schedules_e2e as schedules_e2e
from tests.conftest import ColonyKeys, PgDatabase, ServerProc, setup_colony
from tests.inproc import decoded, signed
from tests.test_schedules_e2e import poll

T0 = 1_700_000_000 * NS
A, B = "alpha", "beta"  # two tenants
ZERO = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as the Go CLI sends it


class World:
    def __init__(self, s: Services, clock: FakeClock, users: dict[str, str]) -> None:
        self.s, self.clock, self.users = s, clock, users

    @property
    def storage(self) -> Storage:
        return self.s.storage


@pytest.fixture(params=["sqlite", "postgresql"])
async def w(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    storage: Storage
    if request.param == "postgresql":
        from colonies.storage.postgres import PostgresStorage

        db: PgDatabase = request.getfixturevalue("pg_database")
        storage, config = PostgresStorage(dsn=db.dsn), Config(db_type="postgresql")
    else:
        path = str(tmp_path / "h.db")
        storage, config = SqliteStorage(path), Config(db_path=path)
    await storage.open()
    clock = FakeClock(T0)
    users = {}
    for colony in (A, B):
        users[colony] = id_of(generate_prvkey())
        await storage.add_colony(Colony(colonyid=id_of(generate_prvkey()), name=colony))
        await storage.add_user(User(colonyname=colony, userid=users[colony], name=f"{colony}-user"))
    try:
        yield World(Services(config, storage, clock), clock, users)
    finally:
        await storage.close()


def spec_json(colony: str, **fields: Any) -> str:
    """A one-node workflow; `fields` go into its function spec (`conditions` merged)."""
    f: dict[str, Any] = {"nodename": "n", "funcname": "f", "conditions": {"executortype": "t"}}
    f["conditions"].update(fields.pop("conditions", {}))
    f.update(fields)
    return json.dumps({"colonyname": colony, "functionspecs": [f]})


# -- (a) add time: one clear 400 naming the field -----------------------------------------------------------
HUGE = 2**63
BAD_SPECS: list[tuple[dict[str, Any], str]] = [
    ({"maxretries": HUGE}, "maxretries"),
    ({"maxretries": -HUGE - 1}, "maxretries"),
    ({"priority": 10**12}, "priority"),
    ({"maxexectime": 2**62}, "maxexectime"),
    ({"maxwaittime": HUGE}, "maxwaittime"),
    ({"conditions": {"nodes": HUGE}}, "conditions.nodes"),
    ({"conditions": {"walltime": HUGE}}, "conditions.walltime"),
    ({"conditions": {"gpu": {"count": HUGE}}}, "conditions.gpu.count"),
    ({"conditions": {"mem": "999999999999999999Ti"}}, "conditions.mem"),
    ({"conditions": {"mem": "9000000000000Gi"}}, "conditions.mem"),
]


async def test_add_refuses_a_workflow_spec_that_would_fail_when_fired(w: World) -> None:
    for fields, field in BAD_SPECS:
        bad = spec_json(A, **fields)
        with pytest.raises(BadRequest, match=field):
            await h.add_generator(w.s, w.users[A], m.AddGeneratorMsg(
                generator=Generator(colonyname=A, name="g", workflowspec=bad, trigger=1)))
        with pytest.raises(BadRequest, match=field):
            await h.add_cron(w.s, w.users[A], m.AddCronMsg(
                cron=m.CronIn(colonyname=A, name="c", interval=10, workflowspec=bad)))
    assert await w.storage.list_generators(A, 10) == [] and await w.storage.list_crons(A, 10) == []


BAD_SCHEDULES: list[tuple[int, str, bool, str]] = [
    (10**10, "", False, "interval"),
    (HUGE, "", False, "interval"),
    (10**10, "", True, "interval"),
    (-1, "@every 3000000h", False, "cronexpression"),
    (-1, "@every " + "9" * 400 + "h", False, "cronexpression"),
    (-1, "", False, "cron expression"),  # the Go CLI's `cron add` without --cron or --interval (400 there too)
]


async def test_add_cron_refuses_a_schedule_out_of_range(w: World) -> None:
    for interval, expr, rnd, field in BAD_SCHEDULES:
        c = m.CronIn(colonyname=A, name="c", interval=interval, cronexpression=expr, random=rnd,
                     workflowspec=spec_json(A))
        with pytest.raises(BadRequest, match=field):
            await h.add_cron(w.s, w.users[A], m.AddCronMsg(cron=c))
    assert await w.storage.list_crons(A, 10) == []


async def test_add_generator_refuses_trigger_and_timeout_out_of_range(w: World) -> None:
    for trigger, timeout, field in ((HUGE, 0, "trigger"), (10**6, 0, "trigger"), (0, 0, "trigger"),
                                    (1, HUGE, "timeout"), (1, -HUGE - 1, "timeout")):
        g = Generator(colonyname=A, name="g", workflowspec=spec_json(A), trigger=trigger, timeout=timeout)
        with pytest.raises(BadRequest, match=field):
            await h.add_generator(w.s, w.users[A], m.AddGeneratorMsg(generator=g))
    assert await w.storage.list_generators(A, 10) == []


def test_next_run_never_leaves_int64() -> None:
    """What a stored row made before the bounds existed gets: a 400 for that cron, never an overflow."""
    for interval, expr in ((10**10, ""), (-1, "@every 3000000h")):
        with pytest.raises(BadRequest):
            cron.next_run(interval, expr, False, T0)
    assert cron.next_run(cron.MAX_AHEAD_S, "", True, T0) < 2**63  # the largest accepted interval fits
    assert cron.parse_duration("1.5h") == 5400 * NS and cron.parse_duration(".5s") == NS // 2


# -- (b) the loops: a bad stored item is logged, held back and skipped; the others fire -----------------------
async def _store_cron(w: World, colony: str, name: str, *, interval: int = 10, expr: str = "",
                      spec: str | None = None, nextrun: int = 0) -> str:
    cid = new_id()
    await w.storage.add_cron(Cron(cronid=cid, colonyname=colony, name=name, interval=interval,
                                  cronexpression=expr, workflowspec=spec or spec_json(colony),
                                  nextrun=to_datetime(nextrun), initiatorid=w.users[colony],
                                  initiatorname=f"{colony}-user"))
    return cid


async def _store_generator(w: World, colony: str, name: str, spec: str | None = None) -> str:
    gid = new_id()
    await w.storage.add_generator(Generator(generatorid=gid, colonyname=colony, name=name, trigger=1,
                                            workflowspec=spec or spec_json(colony), initiatorid=w.users[colony],
                                            initiatorname=f"{colony}-user"))
    await w.storage.pack_generator(gid, colony, "arg", w.clock.now_ns())
    return gid


async def test_bad_stored_crons_and_generators_do_not_stop_the_others(
        w: World, caplog: pytest.LogCaptureFixture) -> None:
    # Rows as the old add path let them through, stored first (so they come first), all in colony A.
    bad_crons = [
        await _store_cron(w, A, "huge-interval", interval=10**10),
        await _store_cron(w, A, "huge-every", interval=-1, expr="@every 3000000h"),
        await _store_cron(w, A, "huge-retries", spec=spec_json(A, maxretries=HUGE), nextrun=T0 - NS),
        await _store_cron(w, A, "not-json", spec="{not json", nextrun=T0 - NS),
    ]
    bad_generators = [await _store_generator(w, A, "huge-retries", spec_json(A, maxretries=HUGE)),
                      await _store_generator(w, A, "not-json", "{not json")]
    good_crons = [await _store_cron(w, colony, "good") for colony in (A, B)]
    good_generators = [await _store_generator(w, colony, "good") for colony in (A, B)]

    runner = Runner(w.clock.now_ns, lambda: True)
    runner.add("generators", 1, lambda now: loops.generators(w.s, now), leader_only=True)
    runner.add("crons", 1, lambda now: loops.crons(w.s, now), leader_only=True)

    def failures(item_id: str) -> int:
        return sum(item_id in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)

    caplog.set_level(logging.WARNING, "colonies.loops")
    await runner.tick_all()      # T0: generators fire, crons get their first nextrun
    w.clock.advance(11)
    await runner.tick_all()      # T0+11 s: the good crons fire
    w.clock.advance(11)
    await runner.tick_all()      # T0+22 s: and again; the bad ones are still held back
    assert [loop.failures for loop in runner.loops] == [0, 0]  # no step raised
    for cid in good_crons:
        c = await w.storage.get_cron(cid)
        assert c is not None and c.prevprocessgraphid and to_ns(c.lastrun) == T0 + 22 * NS
    for gid in good_generators:
        assert (await w.storage.get_generator(gid)).queuesize == 0  # type: ignore[union-attr]
    for colony in (A, B):
        found = await w.storage.list_processes(ProcessQuery(colony=colony, count=100))
        assert len(found) == 3  # one generator workflow and two cron workflows per colony
    for item in bad_crons + bad_generators:
        assert failures(item) == 1, item  # logged once, not on every tick
    for cid in bad_crons:
        c = await w.storage.get_cron(cid)
        assert c is not None and to_ns(c.nextrun) >= T0 + loops.RETRY_S * NS  # pushed forward
    for gid in bad_generators:
        assert (await w.storage.get_generator(gid)).queuesize == 1  # type: ignore[union-attr]  # kept

    w.clock.advance(loops.RETRY_S)
    await runner.tick_all()  # held back no longer: tried (and logged) once more
    assert [loop.failures for loop in runner.loops] == [0, 0]
    for item in bad_crons + bad_generators:
        assert failures(item) == 2, item


async def test_run_cron_of_a_bad_stored_cron_is_a_400(w: World) -> None:
    cid = await _store_cron(w, A, "huge-interval", interval=10**10, nextrun=T0 + NS)
    with pytest.raises(BadRequest, match="interval"):
        await h.run_cron(w.s, w.users[A], m.RunCronMsg(cronid=cid))


# -- item 12 and the Go CLI's defaults -----------------------------------------------------------------------
async def test_generator_timeout_zero_or_less_means_none_and_is_returned_as_sent(w: World) -> None:
    for name, timeout in (("minus-one", -1), ("zero", 0), ("minus-many", -3600)):
        g = await h.add_generator(w.s, w.users[A], m.AddGeneratorMsg(
            generator=Generator(colonyname=A, name=name, workflowspec=spec_json(A), trigger=2, timeout=timeout)))
        assert g.timeout == timeout  # what the original stores and returns
        await h.pack_generator(w.s, w.users[A], m.PackGeneratorMsg(generatorid=g.generatorid, arg="x"))
    await loops.generators(w.s, T0 + 10 * 365 * 86_400 * NS)  # ten years on: a lone arg never fires
    assert await w.storage.list_processes(ProcessQuery(colony=A, count=10)) == []


def _go_function_spec(colony: ColonyKeys) -> dict[str, Any]:
    """A function spec as the Go CLI re-encodes the user's file: every field, Go's zero values."""
    return {"nodename": "tick", "funcname": "tick", "args": None, "kwargs": None, "priority": 0, "maxwaittime": 0,
            "maxexectime": 0, "maxretries": 0,
            "conditions": {"colonyname": "", "executornames": None, "executortype": colony.executor_type,
                           "dependencies": None, "nodes": 0, "cpu": "", "processes": 0, "processespernode": 0,
                           "mem": "", "storage": "", "gpu": {"name": "", "mem": "", "count": 0, "nodecount": 0},
                           "walltime": 0},
            "label": "", "fs": {"mount": "", "snapshots": None, "dirs": None}, "env": None}


def _go_workflow(colony: ColonyKeys) -> str:
    return json.dumps({"colonyname": colony.name, "functionspecs": [_go_function_spec(colony)]},
                      separators=(",", ":"))


def _go_cron_msg(colony: ColonyKeys, name: str, expr: str = "", interval: int = -1, rnd: bool = False,
                 wait: bool = False) -> dict[str, Any]:
    """`colonies cron add --name N --spec F [--cron E] [--interval I] [--random] [--waitprevious]`:
    the flags default to --cron "", --interval -1, --random false, --waitprevious false."""
    return {"cron": {"cronid": "", "initiatorid": "", "initiatorname": "", "colonyname": colony.name, "name": name,
                     "cronexpression": expr, "interval": interval, "random": rnd, "nextrun": ZERO, "lastrun": ZERO,
                     "workflowspec": _go_workflow(colony), "prevprocessgraphid": "",
                     "waitforprevprocessgraph": wait, "checkerperiod": 0},
            "msgtype": "addcronmsg"}


def _go_generator_msg(colony: ColonyKeys, name: str, trigger: int, timeout: int = -1) -> dict[str, Any]:
    """`colonies generator add --name N --spec F --trigger T [--timeout S]`: --timeout defaults to -1."""
    return {"generator": {"generatorid": "", "initiatorid": "", "initiatorname": "", "colonyname": colony.name,
                          "name": name, "workflowspec": _go_workflow(colony), "trigger": trigger, "timeout": timeout,
                          "firstpack": ZERO, "lastrun": ZERO, "queuesize": 0, "checkerperiod": 0},
            "msgtype": "addgeneratormsg"}


def _rpc(srv: ServerProc, msg: dict[str, Any], prvkey: str) -> tuple[int, Any]:
    resp = httpx.post(f"{srv.url}/api", content=signed(msg, prvkey), timeout=10)
    _, payload, error = decoded(resp)
    assert error == (resp.status_code != 200), resp.text
    return resp.status_code, payload


def _cron_fired(pc: Colonies, cron_id: str, prvkey: str) -> str:
    """The cron's first workflow (polled with a deadline: the server's loop fires it)."""
    return poll(lambda: str(pc.get_cron(cron_id, prvkey)["prevprocessgraphid"]))


fast = schedules_e2e.fast  # a server whose cron and generator loops tick every 100 ms


@pytest.mark.e2e
def test_go_cli_generator_defaults(fast: ServerProc) -> None:
    colony = setup_colony(fast)
    status, g = _rpc(fast, _go_generator_msg(colony, "gen", trigger=2), colony.user_prvkey)
    assert status == 200 and g["timeout"] == -1 and g["trigger"] == 2  # -1 comes back, as from the original
    pc = Colonies("127.0.0.1", fast.port)
    spec = json.dumps({"colonyname": colony.name, "functionspecs": [_go_function_spec(colony)]})
    g2 = pc.add_generator({"colonyname": colony.name, "name": "py", "workflowspec": spec, "trigger": 1,
                           "timeout": -1}, colony.user_prvkey)
    assert g2["timeout"] == -1
    with fast.client(colony.user_prvkey) as ours:
        ours.pack_generator(g["generatorid"], "a1")
        ours.pack_generator(g["generatorid"], "a2")
        assert ours.get_generator(g["generatorid"]).timeout == -1
        p = ours.with_key(colony.executor_prvkey).assign(colony.name, 10)
    assert p.spec.args == ["a1", "a2"] and p.spec.funcname == "tick"


@pytest.mark.e2e
def test_go_cli_cron_defaults(fast: ServerProc) -> None:
    colony = setup_colony(fast)
    key = colony.user_prvkey
    status, every = _rpc(fast, _go_cron_msg(colony, "interval", interval=1), key)  # --interval 1, --cron ""
    assert status == 200, every
    assert (every["interval"], every["cronexpression"], every["random"], every["waitforprevprocessgraph"]) == \
        (1, "", False, False)
    status, expr = _rpc(fast, _go_cron_msg(colony, "expr", expr="0/1 * * * * *"), key)  # --interval -1
    assert status == 200 and expr["interval"] == -1 and expr["cronexpression"] == "0/1 * * * * *"
    status, rnd = _rpc(fast, _go_cron_msg(colony, "random", interval=3600, rnd=True, wait=True), key)
    assert status == 200 and rnd["random"] is True and rnd["waitforprevprocessgraph"] is True
    # As in the original: neither --cron nor --interval, or --random with a cron expression, is a 400.
    status, err = _rpc(fast, _go_cron_msg(colony, "neither"), key)
    assert status == 400 and "cron expression" in err["message"]
    status, err = _rpc(fast, _go_cron_msg(colony, "random-expr", expr="0/1 * * * * *", rnd=True), key)
    assert status == 400 and "random" in err["message"]
    # The crons the defaults made fire (both every second).
    pc = Colonies("127.0.0.1", fast.port)
    for c in (every, expr):
        _cron_fired(pc, c["cronid"], key)


@pytest.mark.e2e
def test_a_bad_row_in_a_running_servers_database_does_not_stop_other_colonies_crons(fast: ServerProc) -> None:
    victim, other = setup_colony(fast, "victim"), setup_colony(fast, "other")
    # Stored before add-time validation existed: an interval whose next run overflows int64 ns.
    with sqlite3.connect(fast.db_path) as db:
        db.execute("INSERT INTO crons (cron_id, colony_name, name, interval_s, workflow_spec) VALUES (?,?,?,?,?)",
                   (new_id(), victim.name, "poison", 10**10, _go_workflow(victim)))
    status, reply = _rpc(fast, _go_cron_msg(victim, "poison2", interval=10**10), victim.user_prvkey)
    assert status == 400 and "interval" in reply["message"]
    msg = _go_generator_msg(victim, "poison3", trigger=1)
    msg["generator"]["workflowspec"] = spec_json(victim.name, maxretries=HUGE)
    status, reply = _rpc(fast, msg, victim.user_prvkey)
    assert status == 400 and "maxretries" in reply["message"]
    pc = Colonies("127.0.0.1", fast.port)
    for colony in (victim, other):
        status, c = _rpc(fast, _go_cron_msg(colony, "good", interval=1), colony.user_prvkey)
        assert status == 200
        _cron_fired(pc, c["cronid"], colony.user_prvkey)
    assert "poison" in (fast.log_path.read_text() if fast.log_path else "")
