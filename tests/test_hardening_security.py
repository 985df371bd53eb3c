"""Issue 10, server security: revoked executors get no work (1), executor ids are unique and re-queues
stay in their colony (2), no id squatting on change*id (3), addfunctionmsg with another colony's
function id (9), and the attempt fence on late closes (11).

Handlers run in-process on a real SQLite file and on a real PostgreSQL database (both backends), with
a fake clock; two `Services` on one PostgreSQL database stand for two replicas. The fence is also
driven over real HTTP with our SDK against a server subprocess.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from colonies.client.core import func_spec
from colonies.clock import NS, FakeClock
from colonies.config import Config
from colonies.errors import BadRequest, ClientError, Forbidden, IdInUse
from colonies.loops import steps
from colonies.model import Attribute, Colony, Executor, ExecutorState, Function, Process, ProcessState, User
from colonies.protocol import messages as m
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.server import handlers_identity as ident
from colonies.server import handlers_processes as hp
from colonies.services import Services
from colonies.storage import rows
from colonies.storage.base import Storage
from colonies.storage.sqlite import SqliteStorage
from tests.conftest import ColonyKeys, PgDatabase, ServerProc
from tests.inproc import app_client, assert_error, new_key, post

T0 = 1_700_000_000 * NS
A, B = "colony-a", "colony-b"
POLL_S = 60          # long-poll timeout: a poll that is not ended by a revocation outlives the test
ENDS_WITHIN_S = 10   # bounded wait for what must happen "at once"


@dataclass
class Tenant:
    owner: str
    executor: str
    user: str
    executor_name: str = "exe"


@dataclass
class World:
    s: Services
    clock: FakeClock
    t: dict[str, Tenant] = field(default_factory=dict)


def _id() -> str:
    return id_of(generate_prvkey())


async def _open(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Storage, Config]:
    if kind == "postgresql":
        from colonies.storage.postgres import PostgresStorage

        db: PgDatabase = request.getfixturevalue("pg_database")
        storage: Storage = PostgresStorage(dsn=db.dsn)
        config = Config(db_type="postgresql")
    else:
        path = str(tmp_path / "sec.db")
        storage, config = SqliteStorage(path), Config(db_path=path)
    await storage.open()
    return storage, config


async def _populate(s: Services) -> dict[str, Tenant]:
    tenants = {}
    for colony in (A, B):
        t = Tenant(owner=_id(), executor=_id(), user=_id())
        await s.storage.add_colony(Colony(colonyid=t.owner, name=colony))
        await s.storage.add_user(User(colonyname=colony, userid=t.user, name=f"{colony}-user"))
        await ident.add_executor(s, t.owner, m.AddExecutorMsg(executor=Executor(
            executorid=t.executor, executortype="t", executorname=t.executor_name, colonyname=colony)))
        await ident.approve_executor(s, t.owner, m.ApproveExecutorMsg(colonyname=colony,
                                                                      executorname=t.executor_name))
        tenants[colony] = t
    return tenants


@pytest.fixture(params=["sqlite", "postgresql"])
async def w(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    storage, config = await _open(request.param, tmp_path, request)
    clock = FakeClock(T0)
    s = Services(config, storage, clock)
    try:
        yield World(s, clock, await _populate(s))
    finally:
        await storage.close()


async def submit(w: World, colony: str = A, **kw: Any) -> Process:
    return await hp.submit(w.s, w.t[colony].user, m.SubmitFuncSpecMsg(spec=func_spec("f", colony, "t", **kw)))


def assign_msg(colony: str = A, timeout: int = POLL_S) -> m.AssignProcessMsg:
    return m.AssignProcessMsg(colonyname=colony, timeout=timeout)


async def parked(s: Services, task: asyncio.Task[Any], n: int = 1) -> None:
    """Until `n` assign polls are parked on `s` (event-loop turns, bounded)."""
    deadline = time.monotonic() + ENDS_WITHIN_S
    while s.bus.waiting() < n:
        assert not task.done(), task
        assert time.monotonic() < deadline, "the assign did not park"
        await asyncio.sleep(0.005)


# -- 1. revoked executors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("revoke", ["reject", "remove"])
async def test_a_parked_assign_ends_at_once_when_its_executor_is_revoked(w: World, revoke: str) -> None:
    a = w.t[A]
    poll = asyncio.create_task(hp.assign(w.s, a.executor, assign_msg()))
    await parked(w.s, poll)
    if revoke == "reject":
        await ident.reject_executor(w.s, a.owner, m.RejectExecutorMsg(colonyname=A, executorname=a.executor_name))
    else:
        await ident.remove_executor(w.s, a.owner, m.RemoveExecutorMsg(colonyname=A, executorname=a.executor_name))
    with pytest.raises(Forbidden, match="rejected or removed"):
        await asyncio.wait_for(poll, ENDS_WITHIN_S)
    # Work submitted afterwards stays in the queue.
    p = await submit(w)
    with pytest.raises(Forbidden):
        await hp.assign(w.s, a.executor, assign_msg(timeout=-1))
    got = await w.s.storage.get_process(p.processid)
    assert got is not None and got.state == ProcessState.WAITING


async def test_revocation_ends_only_that_executors_polls(w: World) -> None:
    a = w.t[A]
    other = _id()
    await ident.add_executor(w.s, a.owner, m.AddExecutorMsg(executor=Executor(
        executorid=other, executortype="t", executorname="other", colonyname=A)))
    await ident.approve_executor(w.s, a.owner, m.ApproveExecutorMsg(colonyname=A, executorname="other"))
    revoked = asyncio.create_task(hp.assign(w.s, a.executor, assign_msg()))
    kept = asyncio.create_task(hp.assign(w.s, other, assign_msg()))
    await parked(w.s, kept, 2)
    await ident.reject_executor(w.s, a.owner, m.RejectExecutorMsg(colonyname=A, executorname=a.executor_name))
    with pytest.raises(Forbidden):
        await asyncio.wait_for(revoked, ENDS_WITHIN_S)
    p = await submit(w)
    got = await asyncio.wait_for(kept, ENDS_WITHIN_S)
    assert got.processid == p.processid and got.assignedexecutorid == other


async def test_claim_refuses_an_executor_whose_cached_membership_is_stale(w: World) -> None:
    """Replica B's guard still caches the executor as approved (the fake clock never expires the
    cache); the owner rejects it through replica A's services. B's claim checks approval in storage
    and hands nothing out."""
    a = w.t[A]
    replica_b = Services(w.s.config, w.s.storage, w.clock)  # same database, its own cache and bus
    await replica_b.guard.executor(a.executor, A)  # cached: approved
    await ident.reject_executor(w.s, a.owner, m.RejectExecutorMsg(colonyname=A, executorname=a.executor_name))
    p = await submit(w)
    with pytest.raises(Forbidden, match="not an approved executor"):
        await hp.assign(replica_b, a.executor, assign_msg(timeout=-1))
    got = await w.s.storage.get_process(p.processid)
    assert got is not None and got.state == ProcessState.WAITING and not got.assignedexecutorid


async def test_rejecting_an_executor_requeues_its_running_work(w: World) -> None:
    a = w.t[A]
    p = await submit(w)
    claimed = await hp.assign(w.s, a.executor, assign_msg(timeout=-1))
    assert claimed.processid == p.processid
    await ident.reject_executor(w.s, a.owner, m.RejectExecutorMsg(colonyname=A, executorname=a.executor_name))
    got = await w.s.storage.get_process(p.processid)
    assert got is not None and got.state == ProcessState.WAITING and got.retries == 0
    assert [e.event for e in await w.s.storage.process_events(p.processid)][-1] == "requeued"


async def test_reject_unknown_executor_is_a_400(w: World) -> None:
    with pytest.raises(BadRequest, match="not found"):
        await ident.reject_executor(w.s, w.t[A].owner, m.RejectExecutorMsg(colonyname=A, executorname="nobody"))


@pytest.mark.parametrize("revoke", ["reject", "remove"])
async def test_revocation_on_one_replica_ends_polls_parked_on_another(
        request: pytest.FixtureRequest, pg_database: PgDatabase, revoke: str) -> None:
    from colonies.storage.postgres import PostgresStorage

    stores = [PostgresStorage(dsn=pg_database.dsn), PostgresStorage(dsn=pg_database.dsn)]
    for st in stores:
        await st.open()
    clock = FakeClock(T0)
    ra, rb = (Services(Config(db_type="postgresql"), st, clock) for st in stores)
    events = [await stores[0].listen(ra.bus), await stores[1].listen(rb.bus)]
    try:
        t = (await _populate(ra))[A]
        await rb.guard.executor(t.executor, A)  # B caches the membership
        poll = asyncio.create_task(hp.assign(rb, t.executor, assign_msg()))
        await parked(rb, poll)
        if revoke == "reject":
            await ident.reject_executor(ra, t.owner, m.RejectExecutorMsg(colonyname=A, executorname=t.executor_name))
        else:
            await ident.remove_executor(ra, t.owner, m.RemoveExecutorMsg(colonyname=A, executorname=t.executor_name))
        # Whether the poll was still in its first claim (which checks approval in storage) or already
        # waiting for a wake (which the revocation event fires), it ends now with 403.
        with pytest.raises(Forbidden):
            await asyncio.wait_for(poll, ENDS_WITHIN_S)
        # The revocation event also drops B's membership cache (the fake clock never expires it).
        deadline = time.monotonic() + ENDS_WITHIN_S
        while True:
            try:
                await rb.guard.executor(t.executor, A)
            except Forbidden:
                break
            assert time.monotonic() < deadline, "replica B still caches the revoked executor"
            await asyncio.sleep(0.01)
    finally:
        for ev in events:
            await ev.stop()
        for st in stores:
            await st.close()


# -- 2. executor ids are unique; re-queues stay in their colony ---------------------------------------------
async def test_an_executor_id_of_another_colony_is_refused(w: World) -> None:
    a, b = w.t[A], w.t[B]
    with pytest.raises(IdInUse) as err:
        await ident.add_executor(w.s, b.owner, m.AddExecutorMsg(executor=Executor(
            executorid=a.executor, executortype="t", executorname="squat", colonyname=B)))
    assert err.value.status == 409
    with pytest.raises(IdInUse):  # nor twice in one colony under another name
        await ident.add_executor(w.s, a.owner, m.AddExecutorMsg(executor=Executor(
            executorid=a.executor, executortype="t", executorname="again", colonyname=A)))
    # Once removed (UNREGISTERED) the id may be registered again.
    await ident.remove_executor(w.s, a.owner, m.RemoveExecutorMsg(colonyname=A, executorname=a.executor_name))
    await ident.add_executor(w.s, b.owner, m.AddExecutorMsg(executor=Executor(
        executorid=a.executor, executortype="t", executorname="moved", colonyname=B)))


async def _legacy_duplicate(storage: Storage, colony: str, name: str, executor_id: str) -> None:
    """An executor row sharing another colony's executor id, as a database from before ids were
    unique may hold (the add path refuses it now, so it is written directly)."""
    sql = f"INSERT INTO executors ({rows.EXECUTOR_COLS}) VALUES " + "({})"
    values = (executor_id, "t", name, colony, int(ExecutorState.APPROVED), False, T0, 0, "", None, None, "", 0)
    n = len(rows.EXECUTOR_COLS.split(","))
    assert n == len(values), "rows.EXECUTOR_COLS changed: give the new columns a value here"
    if isinstance(storage, SqliteStorage):
        storage.db.execute(sql.format(",".join("?" * n)), values)
    else:
        await storage.pool.execute(sql.format(",".join(f"${i}" for i in range(1, n + 1))), *values)  # type: ignore[attr-defined]


async def test_removing_an_executor_requeues_only_its_own_colonys_work(w: World) -> None:
    a, b = w.t[A], w.t[B]
    p = await submit(w)
    assert (await hp.assign(w.s, a.executor, assign_msg(timeout=-1))).processid == p.processid
    await _legacy_duplicate(w.s.storage, B, "dup", a.executor)
    await ident.remove_executor(w.s, b.owner, m.RemoveExecutorMsg(colonyname=B, executorname="dup"))
    got = await w.s.storage.get_process(p.processid)
    assert got is not None and got.state == ProcessState.RUNNING and got.assignedexecutorid == a.executor
    await hp.close_successful(w.s, a.executor, m.CloseSuccessfulMsg(processid=p.processid, out=["ok"]))


async def test_stale_cleanup_requeues_only_the_stale_colonys_work(w: World) -> None:
    a = w.t[A]
    p = await submit(w)
    assert (await hp.assign(w.s, a.executor, assign_msg(timeout=-1))).processid == p.processid
    await _legacy_duplicate(w.s.storage, B, "dup", a.executor)
    await w.s.storage.touch_executor(a.executor, w.clock.now_ns())  # A's row is alive; B's row long silent:
    if isinstance(w.s.storage, SqliteStorage):
        w.s.storage.db.execute("UPDATE executors SET last_heard = 1 WHERE colony_name = ?", (B,))
    else:
        await w.s.storage.pool.execute("UPDATE executors SET last_heard = 1 WHERE colony_name = $1", B)  # type: ignore[attr-defined]
    await steps.stale_executors(w.s, w.clock.now_ns())
    assert (await w.s.storage.get_executor(B, "dup")).state == ExecutorState.UNREGISTERED  # type: ignore[union-attr]
    got = await w.s.storage.get_process(p.processid)
    assert got is not None and got.state == ProcessState.RUNNING


async def test_stale_cleanup_ends_the_removed_executors_parked_polls(w: World) -> None:
    """The stale-executor loop removes like an owner does: a poll parked by that executor ends at once."""
    a = w.t[A]
    poll = asyncio.create_task(hp.assign(w.s, a.executor, assign_msg()))
    await parked(w.s, poll)
    if isinstance(w.s.storage, SqliteStorage):
        w.s.storage.db.execute("UPDATE executors SET last_heard = 1 WHERE colony_name = ?", (A,))
    else:
        await w.s.storage.pool.execute("UPDATE executors SET last_heard = 1 WHERE colony_name = $1", A)  # type: ignore[attr-defined]
    await steps.stale_executors(w.s, w.clock.now_ns())
    with pytest.raises(Forbidden):
        await asyncio.wait_for(poll, ENDS_WITHIN_S)


# -- 3. change*id refuses an id in use ---------------------------------------------------------------------
async def test_change_executor_id_refuses_an_id_in_use(w: World) -> None:
    a, b = w.t[A], w.t[B]
    rejected = _id()
    await ident.add_executor(w.s, a.owner, m.AddExecutorMsg(executor=Executor(
        executorid=rejected, executortype="t", executorname="bad", colonyname=A)))
    await ident.reject_executor(w.s, a.owner, m.RejectExecutorMsg(colonyname=A, executorname="bad"))
    for taken in (a.executor, b.executor, a.user):  # same colony, another colony, a user of the colony
        with pytest.raises(IdInUse) as err:
            await ident.change_executor_id(w.s, rejected, m.ChangeExecutorIdMsg(colonyname=A, executorid=taken))
        assert err.value.status == 409
    e = await w.s.storage.get_executor(A, "bad")
    assert e is not None and e.executorid == rejected
    fresh = _id()
    await ident.change_executor_id(w.s, rejected, m.ChangeExecutorIdMsg(colonyname=A, executorid=fresh))
    assert (await w.s.storage.get_executor(A, "bad")).executorid == fresh  # type: ignore[union-attr]


async def test_change_user_id_refuses_an_id_in_use(w: World) -> None:
    a = w.t[A]
    other = _id()
    await ident.add_user(w.s, a.owner, m.AddUserMsg(user=User(colonyname=A, userid=other, name="other")))
    for taken in (a.user, a.executor):
        with pytest.raises(IdInUse):
            await ident.change_user_id(w.s, other, m.ChangeUserIdMsg(colonyname=A, userid=taken))
    assert (await w.s.storage.get_user(A, "other")).userid == other  # type: ignore[union-attr]
    fresh = _id()
    await ident.change_user_id(w.s, other, m.ChangeUserIdMsg(colonyname=A, userid=fresh))
    assert (await w.s.storage.get_user(A, "other")).userid == fresh  # type: ignore[union-attr]


async def test_change_colony_id_refuses_a_members_id(w: World) -> None:
    a = w.t[A]
    for taken in (a.user, a.executor):
        with pytest.raises(IdInUse):
            await ident.change_colony_id(w.s, a.owner, m.ChangeColonyIdMsg(colonyname=A, colonyid=taken))
    assert (await w.s.storage.get_colony(A)).colonyid == a.owner  # type: ignore[union-attr]
    fresh = _id()
    await ident.change_colony_id(w.s, a.owner, m.ChangeColonyIdMsg(colonyname=A, colonyid=fresh))
    assert (await w.s.storage.get_colony(A)).colonyid == fresh  # type: ignore[union-attr]


async def test_change_server_id_refuses_an_id_in_use(w: World) -> None:
    server = _id()
    await w.s.storage.set_server_id(server)
    for taken in (w.t[A].user, w.t[B].executor):
        with pytest.raises(IdInUse):
            await ident.change_server_id(w.s, server, m.ChangeServerIdMsg(serverid=taken))
    assert await w.s.storage.get_server_id() == server
    fresh = _id()
    await ident.change_server_id(w.s, server, m.ChangeServerIdMsg(serverid=fresh))
    assert await w.s.storage.get_server_id() == fresh


# -- 9. addfunctionmsg with another colony's function id ----------------------------------------------------
async def test_add_function_with_another_colonys_function_id_is_no_oracle(w: World) -> None:
    a, b = w.t[A], w.t[B]
    fa = await hp.add_function(w.s, a.executor, m.AddFunctionMsg(fun=Function(
        colonyname=A, executorname=a.executor_name, funcname="echo")))
    fb = await hp.add_function(w.s, b.executor, m.AddFunctionMsg(fun=Function(
        functionid=fa.functionid, colonyname=B, executorname=b.executor_name, funcname="echo")))
    assert fb.functionid != fa.functionid  # the server chooses ids; nothing tells the caller about A's
    assert [f.functionid for f in await w.s.storage.list_functions(B, "")] == [fb.functionid]
    assert (await w.s.storage.get_function(fa.functionid)).colonyname == A  # type: ignore[union-attr]


# -- 11. the attempt fence -----------------------------------------------------------------------------------
async def _timed_out_and_reassigned(w: World) -> tuple[Process, Process]:
    """A process that overran maxexectime, was re-queued and went to the same executor again."""
    a = w.t[A]
    await submit(w, maxexectime=5, maxretries=3)
    first = await hp.assign(w.s, a.executor, assign_msg(timeout=-1))
    w.clock.advance(10)
    await steps.deadlines(w.s, w.clock.now_ns())
    second = await hp.assign(w.s, a.executor, assign_msg(timeout=-1))
    assert second.processid == first.processid and (first.retries, second.retries) == (0, 1)
    return first, second


async def test_the_late_attempts_close_is_refused(w: World) -> None:
    a = w.t[A]
    first, _ = await _timed_out_and_reassigned(w)
    pid = first.processid
    with pytest.raises(Forbidden, match="stale attempt"):
        await hp.close_successful(w.s, a.executor, m.CloseSuccessfulMsg(processid=pid, out=["late"], attempt=0))
    with pytest.raises(Forbidden, match="stale attempt"):
        await hp.close_failed(w.s, a.executor, m.CloseFailedMsg(processid=pid, errors=["late"], attempt=0))
    with pytest.raises(Forbidden, match="stale attempt"):
        await hp.set_output(w.s, a.executor, m.SetOutputMsg(processid=pid, out=["late"], attempt=0))
    with pytest.raises(Forbidden, match="stale attempt"):
        await hp.add_attribute(w.s, a.executor, m.AddAttributeMsg(attribute=Attribute(targetid=pid, key="k", value="v", attributetype=1),
                                                                     attempt=0))
    got = await w.s.storage.get_process(pid)
    assert got is not None and got.state == ProcessState.RUNNING and got.output == []
    await hp.close_successful(w.s, a.executor, m.CloseSuccessfulMsg(processid=pid, out=["current"], attempt=1))
    got = await w.s.storage.get_process(pid)
    assert got is not None and got.state == ProcessState.SUCCESS and got.output == ["current"]


async def test_without_an_attempt_the_close_is_accepted_as_before(w: World) -> None:
    """Clients that do not send `attempt` (pycolonies, the Go CLI) keep today's behaviour."""
    a = w.t[A]
    first, _ = await _timed_out_and_reassigned(w)
    await hp.close_successful(w.s, a.executor, m.CloseSuccessfulMsg(processid=first.processid, out=["any"]))
    got = await w.s.storage.get_process(first.processid)
    assert got is not None and got.state == ProcessState.SUCCESS


async def test_storage_finish_and_set_output_honour_the_attempt(w: World) -> None:
    a = w.t[A]
    _, second = await _timed_out_and_reassigned(w)
    pid, now = second.processid, w.clock.now_ns()
    assert not await w.s.storage.set_output(pid, a.executor, ["x"], attempt=0)
    assert await w.s.storage.set_output(pid, a.executor, ["y"], attempt=1)
    assert await w.s.storage.finish(pid, a.executor, True, ["x"], None, now, attempt=0) is None
    done = await w.s.storage.finish(pid, a.executor, True, ["y"], None, now, attempt=1)
    assert done is not None and done.process is not None and done.process.state == ProcessState.SUCCESS


@pytest.mark.e2e
def test_sdk_close_with_a_stale_attempt_is_refused_over_http(server: ServerProc, colony: ColonyKeys) -> None:
    """Item 11 as reported: the same executor identity holds the re-queued process again (a second
    slot); the first attempt's late close, sent with `attempt=`, gets 403."""
    with server.client(colony.executor_prvkey) as exe, server.client(colony.user_prvkey) as user:
        p = user.submit(func_spec("f", colony.name, colony.executor_type, maxexectime=1, maxretries=3))
        first = exe.assign(colony.name, 5)
        assert first.processid == p.processid
        deadline = time.monotonic() + ENDS_WITHIN_S  # the server's deadline loop runs every 200 ms
        while user.get_process(p.processid).state != ProcessState.WAITING:
            assert time.monotonic() < deadline, "the process was not re-queued"
            time.sleep(0.05)
        second = exe.assign(colony.name, 5)
        assert second.processid == p.processid and second.retries == first.retries + 1
        with pytest.raises(ClientError) as err:
            exe.close(p.processid, ["stale"], attempt=first.retries)
        assert err.value.status == 403
        exe.close(p.processid, ["fresh"], attempt=second.retries)
        done = user.get_process(p.processid)
        assert done.state == ProcessState.SUCCESS and done.output == ["fresh"]


def test_an_id_in_use_is_a_409_on_the_wire(tmp_path: Path) -> None:
    server, owner_a, owner_b, exe = new_key(), new_key(), new_key(), new_key()
    with app_client(tmp_path, server_prvkey=server) as tc:
        for colony, owner in ((A, owner_a), (B, owner_b)):
            assert post(tc, {"msgtype": "addcolonymsg", "colony": {"colonyid": id_of(owner), "name": colony}},
                        server).status_code == 200
        executor = {"executorid": id_of(exe), "executortype": "t", "executorname": "e", "colonyname": A}
        assert post(tc, {"msgtype": "addexecutormsg", "executor": executor}, owner_a).status_code == 200
        resp = post(tc, {"msgtype": "addexecutormsg", "executor": {**executor, "colonyname": B}}, owner_b)
        assert "already registered" in assert_error(resp, 409)
