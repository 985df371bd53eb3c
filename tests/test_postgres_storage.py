"""PostgreSQL-only storage properties: migrations, and what several replicas do to one database at once.

The shared behaviour is in test_storage_contract.py; these need real concurrency (separate connections).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest

from colonies.clock import NS
from colonies.errors import StorageError
from colonies.model import ProcessState
from colonies.storage.migrate import latest_version
from colonies.storage.postgres import PostgresStorage
from tests.conftest import PgDatabase
from tests.test_storage_contract import T0, proc, req


@pytest.fixture
async def pg(pg_database: PgDatabase) -> AsyncIterator[PostgresStorage]:
    store = PostgresStorage(dsn=pg_database.dsn, max_size=12)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _schema(dsn: str) -> list[tuple[str, ...]]:
    con = await asyncpg.connect(dsn, statement_cache_size=0)
    try:
        cols = await con.fetch("SELECT table_name, column_name, data_type, coalesce(column_default, '')"
                               " FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2")
        idx = await con.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
        return [tuple(r) for r in cols] + [tuple(r) for r in idx]
    finally:
        await con.close()


async def test_migrations_twice_is_a_no_op(pg: PostgresStorage, pg_database: PgDatabase) -> None:
    before = await _schema(pg_database.dsn)
    assert await pg.schema_version() == latest_version("postgresql")
    again = PostgresStorage(dsn=pg_database.dsn)
    await again.open()
    await again.close()
    assert await _schema(pg_database.dsn) == before
    assert await pg.pool.fetchval("SELECT count(*) FROM schema_version") == len(
        [v for v in range(1, latest_version("postgresql") + 1)])


async def test_concurrent_first_open_migrates_once(pg_database: PgDatabase) -> None:
    stores = [PostgresStorage(dsn=pg_database.dsn, min_size=1, max_size=2) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert await stores[0].pool.fetchval("SELECT count(*) FROM schema_version") == latest_version("postgresql")
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_newer_database_is_refused(pg: PostgresStorage, pg_database: PgDatabase) -> None:
    await pg.pool.execute("INSERT INTO schema_version (version) VALUES ($1)", latest_version("postgresql") + 1)
    newer = PostgresStorage(dsn=pg_database.dsn)
    with pytest.raises(StorageError, match="newer"):
        await newer.open()
    assert newer._pool is None


async def test_claim_walks_an_index_in_priority_order(pg: PostgresStorage) -> None:
    """No sort and no scan of the table: the first row of an index ordered by priority_time is taken, so
    claim does not slow down as the queue grows (the planner may pick the partial queue index or
    processes_by_state_prio; both are ordered by priority_time within (colony, state))."""
    await pg.add_processes([proc(T0 + i, executortype=f"t{i % 5}") for i in range(500)])
    await pg.pool.execute("ANALYZE processes")
    async with pg.pool.acquire() as con:
        await con.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in await con.fetch(
            "EXPLAIN SELECT process_id FROM processes WHERE colony_name = 'c1' AND executor_type = 't'"
            " AND state = 0 AND NOT wait_for_parents AND NOT targeted ORDER BY priority_time LIMIT 1"
            " FOR UPDATE SKIP LOCKED"))
    assert "Index Scan using processes_" in plan and "Sort" not in plan and "Seq Scan" not in plan, plan


async def test_concurrent_claims_take_each_process_once(pg: PostgresStorage) -> None:
    n, workers = 400, 8
    await pg.add_processes([proc(T0 + i) for i in range(n)] +
                           [proc(T0 + n + i, executornames=["e1"]) for i in range(40)])
    taken: list[str] = []

    async def worker(k: int) -> None:
        for _ in range(n + 100):
            p = await pg.claim(req("e1", executor_id=f"x{k}"), T0 + NS)
            if p is None:
                return
            taken.append(p.processid)

    await asyncio.wait_for(asyncio.gather(*(worker(k) for k in range(workers))), 120)
    assert len(taken) == n + 40 and len(set(taken)) == n + 40
    events = await pg.pool.fetchval("SELECT count(*) FROM process_events WHERE event = 'assigned'")
    assert events == n + 40


async def test_parallel_parents_release_their_child(pg: PostgresStorage) -> None:
    """Two parents closing at once, on different connections: the child is released exactly once."""
    from colonies.clock import to_datetime
    from colonies.model import ProcessGraph

    for round_ in range(10):
        a, b, c = proc(T0), proc(T0 + 1), proc(T0 + 2)
        gid = f"g{round_}"
        for p in (a, b, c):
            p.processgraphid = gid
        a.children = b.children = [c.processid]
        c.parents, c.waitforparents = [a.processid, b.processid], True
        graph = ProcessGraph(processgraphid=gid, colonyname="c1", rootprocessids=[a.processid, b.processid],
                             state=0, submissiontime=to_datetime(T0), processids=[a.processid, b.processid,
                                                                                  c.processid])
        await pg.add_processes([a, b, c], graph)
        x = await pg.claim(req("e1", executor_id="ea"), T0 + 1)
        y = await pg.claim(req("e1", executor_id="eb"), T0 + 1)
        assert x is not None and y is not None
        done = await asyncio.gather(pg.finish(x.processid, "ea", True, [1], None, T0 + 2),
                                    pg.finish(y.processid, "eb", True, [2], None, T0 + 2))
        released = [o.processid for d in done if d for o in d.others]
        assert released == [c.processid]
        child = await pg.claim(req("e1", executor_id="ec"), T0 + 3)
        assert child is not None and child.processid == c.processid and sorted(child.input or []) == [1, 2]
        await pg.finish(child.processid, "ec", True, None, None, T0 + 4)
        g = await pg.get_graph(gid)
        assert g is not None and g.state == ProcessState.SUCCESS


async def test_expire_on_several_replicas_handles_each_process_once(pg: PostgresStorage,
                                                                   pg_database: PgDatabase) -> None:
    replicas = [PostgresStorage(dsn=pg_database.dsn, min_size=1, max_size=2) for _ in range(3)]
    await asyncio.gather(*(r.open() for r in replicas))
    try:
        ps = [proc(T0 + i, maxexectime=1, maxretries=3) for i in range(60)]
        await pg.add_processes(ps)
        for _ in ps:
            assert await pg.claim(req(), T0) is not None
        results = await asyncio.gather(*(r.expire(T0 + 5 * NS, limit=25) for r in replicas * 3))
        changed = [p.processid for res in results for p in res]
        assert sorted(changed) == sorted(p.processid for p in ps)
        for p in ps:
            got = await pg.get_process(p.processid)
            assert got is not None and got.state == ProcessState.WAITING and got.retries == 1
    finally:
        await asyncio.gather(*(r.close() for r in replicas))
