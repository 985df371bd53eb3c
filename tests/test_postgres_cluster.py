"""Cross-replica wakeups over PostgreSQL LISTEN/NOTIFY (colonies.cluster_events).

Bus level: a waiter parked on replica A's bus wakes when replica B publishes, checked exactly.
Server level: two real server processes share one database; an executor parked in assign on A is woken
by a submit on B, long before its assign timeout.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from colonies.cluster_events import MAX_PAYLOAD, decode, encode, encode_wake
from colonies.model import Conditions, FunctionSpec, Process, ProcessState
from colonies.scheduler import EventBus, Subscription
from colonies.storage.postgres import PostgresStorage
from tests.conftest import ColonyKeys, PgDatabase, ServerProc, make_server, setup_colony
from tests.test_storage_contract import proc

ASSIGN_TIMEOUT = 20


def waiting(colony: str = "c1", executortype: str = "t", names: list[str] | None = None) -> Process:
    return Process(processid="p" * 64, state=ProcessState.WAITING,
                   spec=FunctionSpec(conditions=Conditions(colonyname=colony, executortype=executortype,
                                                           executornames=names)))


def test_payload_round_trip_and_size_bound() -> None:
    replica, p = decode(encode("r1", waiting(names=["e1", "e2"])))
    assert isinstance(p, Process)
    assert replica == "r1" and p.state == ProcessState.WAITING and p.spec.conditions.executornames == ["e1", "e2"]
    huge = encode("r1", waiting(names=[f"executor-{i:05d}" for i in range(2000)]))
    assert len(huge.encode()) <= MAX_PAYLOAD
    _, p = decode(huge)
    assert isinstance(p, Process)
    assert p.spec.conditions.executornames is None and p.spec.conditions.locationname  # wakes every waiter
    assert decode(encode_wake("r2", "c1")) == ("r2", "c1")


@pytest.fixture
async def two_replicas(pg_database: PgDatabase) -> AsyncIterator[tuple[PostgresStorage, EventBus,
                                                                         PostgresStorage, EventBus]]:
    a, b = PostgresStorage(dsn=pg_database.dsn), PostgresStorage(dsn=pg_database.dsn)
    await a.open()
    await b.open()
    bus_a, bus_b = EventBus(), EventBus()
    ev_a, ev_b = await a.listen(bus_a), await b.listen(bus_b)
    try:
        yield a, bus_a, b, bus_b
    finally:
        await ev_a.stop()
        await ev_b.stop()
        await a.close()
        await b.close()


async def test_waiter_on_a_wakes_on_publish_at_b(two_replicas: tuple[PostgresStorage, EventBus,
                                                                     PostgresStorage, EventBus]) -> None:
    _, bus_a, _, bus_b = two_replicas
    latencies = []
    for _ in range(20):
        w = bus_a.park("c1", "t", "e1")
        other = bus_a.park("c1", "other-type", "e1")
        start = time.perf_counter()
        bus_b.publish(waiting())
        await asyncio.wait_for(asyncio.shield(w.future), 5)
        latencies.append(time.perf_counter() - start)
        assert not other.future.done()
        bus_a.unpark(w, consumed=True)
        bus_a.unpark(other, consumed=True)
    # B does not wake itself through its own notifications (it already published locally).
    assert bus_b.published == 20
    print(f"\nbus-level cross-replica wake: median {statistics.median(latencies) * 1000:.2f} ms,"
          f" max {max(latencies) * 1000:.2f} ms")
    assert statistics.median(latencies) < 0.5


async def test_colony_wake_on_b_wakes_waiters_on_a(two_replicas: tuple[PostgresStorage, EventBus,
                                                                        PostgresStorage, EventBus]) -> None:
    """A resume (or colony removal) on B wakes every waiter of that colony on A, and only those."""
    _, bus_a, _, bus_b = two_replicas
    mine = [bus_a.park("c1", "t", "e1"), bus_a.park("c1", "other-type", "e2")]
    other_colony = bus_a.park("c2", "t", "e3")
    bus_b.wake_colony("c1")
    for w in mine:
        await asyncio.wait_for(asyncio.shield(w.future), 5)
    await asyncio.sleep(0.2)
    assert not other_colony.future.done()
    for w in [*mine, other_colony]:
        bus_a.unpark(w, consumed=True)


async def test_subscriber_on_a_gets_the_full_process(two_replicas: tuple[PostgresStorage, EventBus,
                                                                         PostgresStorage, EventBus]) -> None:
    _, bus_a, b, bus_b = two_replicas
    p = proc()
    await b.add_processes([p])
    got: asyncio.Future[Process] = asyncio.get_running_loop().create_future()

    def deliver(q: Process) -> None:
        if not got.done():
            got.set_result(q)

    bus_a.subscribe(Subscription(colony="c1", executor_type="t", state=ProcessState.WAITING, callback=deliver,
                                 process_id=p.processid))
    bus_b.publish(p)
    full = await asyncio.wait_for(got, 5)
    assert full.processid == p.processid and full.spec.funcname == "f" and full.submissiontime == p.submissiontime


async def test_listen_connection_comes_back_after_it_is_killed(pg_database: PgDatabase) -> None:
    a, b = PostgresStorage(dsn=pg_database.dsn), PostgresStorage(dsn=pg_database.dsn)
    await a.open()
    await b.open()
    bus_a, bus_b = EventBus(), EventBus()
    ev_a, ev_b = await a.listen(bus_a), await b.listen(bus_b)
    try:
        assert ev_a._con is not None
        old = ev_a._con
        await a.pool.execute("SELECT pg_terminate_backend($1)", old.get_server_pid())
        deadline = time.monotonic() + 15
        while ev_a._con is None or ev_a._con is old:
            assert time.monotonic() < deadline, "LISTEN connection was not re-established"
            await asyncio.sleep(0.02)
        w = bus_a.park("c1", "t", "e1")
        bus_b.publish(waiting())
        await asyncio.wait_for(asyncio.shield(w.future), 5)
        bus_a.unpark(w, consumed=True)
    finally:
        await ev_a.stop()
        await ev_b.stop()
        await a.close()
        await b.close()


# -- two real server processes on one database --------------------------------------------------------------
@pytest.fixture
def replicas(tmp_path: Path, pg_database: PgDatabase) -> Iterator[tuple[ServerProc, ServerProc]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env = {**pg_database.server_env(), "COLONIES_ETCD_ENDPOINTS": ""}
    a = make_server(tmp_path / "a", env)
    b = make_server(tmp_path / "b", {**env, "COLONIES_SERVER_ID": a.env["COLONIES_SERVER_ID"]})
    b.server_prvkey = a.server_prvkey
    a.start()
    try:
        b.start()
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


@pytest.mark.e2e
def test_assign_parked_on_a_wakes_on_resume_at_b(replicas: tuple[ServerProc, ServerProc]) -> None:
    """Work submitted while the colony is paused is handed out as soon as B resumes it, also to an
    executor parked on A (not at the end of its long-poll)."""
    from colonies.client.core import func_spec

    a, b = replicas
    keys: ColonyKeys = setup_colony(a)
    with a.client(keys.executor_prvkey) as executor, b.client(keys.user_prvkey) as user, \
            b.client(keys.colony_prvkey) as owner:
        owner.pause(keys.name)
        submitted = user.submit(func_spec("f", keys.name, keys.executor_type))
        result: list[Process] = []
        t = threading.Thread(target=lambda: result.append(executor.assign(keys.name, ASSIGN_TIMEOUT)))
        t.start()
        time.sleep(1.0)  # parked on A; paused, so the waiting process is not handed out
        assert not result
        start = time.monotonic()
        owner.resume(keys.name)
        t.join(ASSIGN_TIMEOUT + 5)
        assert result and result[0].processid == submitted.processid
        assert time.monotonic() - start < ASSIGN_TIMEOUT / 4


@pytest.mark.e2e
def test_assign_parked_on_a_wakes_on_submit_at_b(replicas: tuple[ServerProc, ServerProc]) -> None:
    from colonies.client.core import func_spec

    a, b = replicas
    keys: ColonyKeys = setup_colony(a)
    latencies: list[float] = []
    with a.client(keys.executor_prvkey) as executor, b.client(keys.user_prvkey) as user:
        for _ in range(5):
            result: list[Process] = []
            t = threading.Thread(target=lambda out=result: out.append(executor.assign(keys.name, ASSIGN_TIMEOUT)))
            t.start()
            # A head start for the assign to park; nothing depends on it (a submit that wins the race
            # is simply claimed at once). The bus-level test above checks the parked case exactly.
            time.sleep(0.3)
            start = time.monotonic()
            submitted = user.submit(func_spec("f", keys.name, keys.executor_type))
            t.join(ASSIGN_TIMEOUT + 5)
            latencies.append(time.monotonic() - start)
            assert result and result[0].processid == submitted.processid
            executor.close(submitted.processid, ["ok"])
            assert user.get_process(submitted.processid).state == ProcessState.SUCCESS
    print(f"\nserver-level cross-replica wake (submit on B -> assign returns on A): median "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < ASSIGN_TIMEOUT / 4
